# load: the safetensors editing helper used by the loader's CLI tests (tests/load/).
ST_EDIT := $(BUILD)/tests/load/st_edit

all: $(ST_EDIT)

$(ST_EDIT): tests/load/st_edit.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)
