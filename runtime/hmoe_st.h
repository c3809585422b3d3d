/* hmoe_st: safetensors files, read (memory-mapped, validated) and written.
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"k": "v", ...},            (optional, string values)
 *    "NAME": {"dtype": "F8_E4M3", "shape": [d0, d1], "data_offsets": [begin, end]}, ...}
 * then the data area; offsets are relative to the start of the data area, in bytes.
 *
 * hmoe_st_open validates everything before any byte of data is used: header length within
 * the file, JSON well-formed and of the right types, dtypes known, shapes non-negative,
 * offsets inside the data area and equal to shape * dtype size, no two tensors overlapping,
 * no name twice. A failure is HMOE_EINPUT with a message naming the file and the tensor.
 *
 * Tensor data lives in a read-only mapping and is not necessarily aligned to its element
 * size (the format does not promise it); files written by hmoe_st_write are aligned.
 */
#ifndef HMOE_ST_H
#define HMOE_ST_H

#include <stddef.h>
#include <stdint.h>

#include "hmoe_model.h"

/* Headers larger than this are rejected as corrupt (the 671B model's are ~100 KiB). */
#define HMOE_ST_MAX_HEADER (100u << 20)

struct hmoe_st_file {
	char *path;
	const uint8_t *map;            /* whole file, read-only; NULL for an empty data area */
	size_t size;                   /* bytes of the file */
	int owns_map;                  /* 1: munmap on close; 0: caller's buffer */
	const uint8_t *data;           /* data area (map + 8 + header length) */
	size_t data_size;              /* bytes of the data area */
	struct hmoe_tensor *tensors;   /* [n_tensors], sorted by name */
	int n_tensors;
	char *strings;                 /* storage for the tensor names */
};

/* Maps and validates the file at path. */
int hmoe_st_open(struct hmoe_st_file **out, const char *path);
/* Validates an in-memory image (size bytes at buf, kept alive by the caller until close);
 * `what` names it in errors. Used by tests to fuzz the parser without files. */
int hmoe_st_open_mem(struct hmoe_st_file **out, const void *buf, size_t size, const char *what);
void hmoe_st_close(struct hmoe_st_file *f);

/* Binary search by name; NULL if absent. */
const struct hmoe_tensor *hmoe_st_find(const struct hmoe_st_file *f, const char *name);

/* Parses a safetensors dtype spelling ("BF16"); -1 if unknown. */
int hmoe_dtype_parse(const char *s);
/* Elements of a tensor's shape (1 for a scalar); -1 on overflow. */
int64_t hmoe_tensor_numel(const struct hmoe_tensor *t);
/* "[192, 96]" into buf (for messages). */
const char *hmoe_shape_str(const struct hmoe_tensor *t, char *buf, size_t size);

/* Writes n tensors (name, dtype, ndim, shape, data, nbytes) to path as a safetensors file
 * with an optional __metadata__ object given as its JSON text ("{\"format\":\"pt\"}", or
 * NULL). Tensors are laid out by dtype size, largest first, then by name, header padded to
 * 8 bytes, so every tensor is aligned to its element size; the same input gives the same
 * bytes. nbytes must equal shape * dtype size; names must be unique. */
int hmoe_st_write(const char *path, const struct hmoe_tensor *tensors, int n,
		  const char *metadata_json);

#endif
