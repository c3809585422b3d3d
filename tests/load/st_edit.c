/* st_edit: rewrite a safetensors file with one tensor changed, using hmoe's writer. For
 * the loader's error-path tests (tests/load/cli_test.sh).
 *
 *   st_edit IN OUT reshape NAME D0,D1   same bytes, new 2-D shape (must hold as many bytes)
 *   st_edit IN OUT drop NAME            without NAME
 *   st_edit IN OUT dtype NAME DTYPE     same bytes and shape, another dtype of equal size
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmoe_err.h"
#include "hmoe_st.h"

int main(int argc, char **argv)
{
	struct hmoe_st_file *f;
	struct hmoe_tensor *ts;
	int n = 0, found = 0, ret;

	if (argc < 5 || (strcmp(argv[3], "drop") && argc < 6)) {
		fprintf(stderr, "usage: st_edit IN OUT reshape NAME D0,D1 | drop NAME | "
			"dtype NAME DTYPE\n");
		return 2;
	}
	if (hmoe_st_open(&f, argv[1])) {
		fprintf(stderr, "st_edit: %s\n", hmoe_last_error());
		return 2;
	}
	ts = calloc((size_t)f->n_tensors + 1, sizeof(*ts));
	for (int i = 0; i < f->n_tensors; i++) {
		struct hmoe_tensor t = f->tensors[i];

		if (!strcmp(t.name, argv[4])) {
			found = 1;
			if (!strcmp(argv[3], "drop"))
				continue;
			if (!strcmp(argv[3], "reshape")) {
				long long d0, d1;

				if (sscanf(argv[5], "%lld,%lld", &d0, &d1) != 2) {
					fprintf(stderr, "st_edit: bad shape %s\n", argv[5]);
					return 2;
				}
				t.ndim = 2;
				t.shape[0] = d0;
				t.shape[1] = d1;
			} else if (!strcmp(argv[3], "dtype")) {
				int dt = hmoe_dtype_parse(argv[5]);

				if (dt < 0 || hmoe_dtype_size((enum hmoe_dtype)dt) !=
						      hmoe_dtype_size(t.dtype)) {
					fprintf(stderr, "st_edit: dtype %s unknown or of another size\n",
						argv[5]);
					return 2;
				}
				t.dtype = (enum hmoe_dtype)dt;
			}
		}
		ts[n++] = t;
	}
	if (!found) {
		fprintf(stderr, "st_edit: no tensor %s in %s\n", argv[4], argv[1]);
		return 2;
	}
	ret = hmoe_st_write(argv[2], ts, n, NULL);
	if (ret)
		fprintf(stderr, "st_edit: %s\n", hmoe_last_error());
	free(ts);
	hmoe_st_close(f);
	return ret ? 1 : 0;
}
