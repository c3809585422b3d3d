/* hmoe_jsonl: reading JSON-lines files (one JSON object per non-blank line), the format
 * of `hmoe eval --jsonl` problem sets and `hmoe generate --prompts` request files.
 *
 * hmoe_jsonl_read opens the file, skips blank lines, and hands each line's parsed object
 * with its 1-based line number to the caller's function, in file order. A line with a
 * NUL byte or that is not a JSON object, an unreadable file, a read error, or a file
 * without any object is an HMOE_EINPUT (HMOE_EIO for read errors) error naming the file
 * and line; `what` is the message for a file without objects (after "PATH: ").
 * A negative return of on_object stops the reading and is returned as is.
 */
#ifndef HMOE_JSONL_H
#define HMOE_JSONL_H

#include <cjson/cJSON.h>

int hmoe_jsonl_read(const char *path, const char *what,
		    int (*on_object)(void *arg, const cJSON *obj, long line), void *arg);

/* 1 when s holds only spaces, tabs and line ends. */
int hmoe_jsonl_blank(const char *s);

#endif
