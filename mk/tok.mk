# tok: the tokenizer's reference checker (tests/tok/tok_check.c), used by tests/tok/ref_test.sh.
TOK_CHECK := $(BUILD)/tests/tok/tok_check

all: $(TOK_CHECK)

$(TOK_CHECK): tests/tok/tok_check.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)
