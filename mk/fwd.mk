# fwd.mk: the CPU reference forward pass (docs/forward.md).
#   make test-fwd            its unit tests and the Python-reference checks
#   make test-fwd SANITIZE=1 the same under ASan/UBSan
.PHONY: test-fwd
test-fwd: all
	@BUILD=$(BUILD) TESTS='^unit/test_(ops|kv|forward)$$|^ref/' tests/run.sh
