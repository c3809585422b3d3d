# mk/kmod.mk: the kernel module and its QEMU tests.
#   make kmod [KDIR=/path/to/kernel/build]   builds hmoe.ko (in the tree, via Kbuild)
#   make test-kmod                           boots Debian's kernel in QEMU and runs
#                                            tests/kmod inside (about 1-2 minutes, TCG)
# KDIR defaults to the headers of Debian 12's kernel (linux-headers-amd64), not the
# running kernel's, which on build machines is often something else.
KDIR ?= $(firstword $(wildcard /lib/modules/6.1.*-amd64/build) \
	  $(wildcard /lib/modules/$(shell uname -r)/build))

# The runtime's kmod client (runtime/hmoe_kmod.c) talks to the driver through libdrm.
PKG_CFLAGS += $(shell pkg-config --cflags libdrm 2>/dev/null)
LDLIBS += -ldrm

.PHONY: kmod kmod-clean test-kmod
kmod:
	@test -n "$(KDIR)" -a -d "$(KDIR)" || \
		{ echo "make kmod: no kernel build tree (KDIR='$(KDIR)'); install linux-headers-amd64 or pass KDIR=" >&2; exit 2; }
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

kmod-clean:
	@test -z "$(KDIR)" || $(MAKE) -C $(KDIR) M=$(CURDIR) clean

test-kmod: $(HMOE)
	@scripts/deps.sh kmod
	@BUILD=$(BUILD) KDIR=$(KDIR) tests/kmod/run_vm.sh
