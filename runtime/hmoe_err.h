/* hmoe_err: one error convention for all of libhmoe.
 *
 * A function that can fail returns 0 on success or a negative HMOE_E* code, after
 * recording one human-readable message that names the thing that failed (file, tensor,
 * field, device). The CLI prints that message as one line and maps the code to an exit
 * status: bad user input (flags, files, JSON, checkpoints) exits 2, everything else 1.
 * The message lives in thread-local storage, so worker threads do not clobber it.
 */
#ifndef HMOE_ERR_H
#define HMOE_ERR_H

enum hmoe_errcode {
	HMOE_OK = 0,
	HMOE_EINPUT = 1,   /* bad input: flags, files, JSON, tensors, shapes */
	HMOE_ENOMEM = 2,   /* allocation failed */
	HMOE_EIO = 3,      /* read/write/mmap failed */
	HMOE_EDEVICE = 4,  /* a device (GPU, card, driver) failed or is missing */
	HMOE_EINTERNAL = 5 /* a bug: an invariant did not hold */
};

#if defined(__GNUC__)
#define HMOE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define HMOE_PRINTF(a, b)
#endif

/* Records the message and returns -code, so callers write `return hmoe_err(...)`. */
int hmoe_err(int code, const char *fmt, ...) HMOE_PRINTF(2, 3);
/* Prefixes the current message with more context ("loading model: " + old message). */
int hmoe_err_ctx(int ret, const char *fmt, ...) HMOE_PRINTF(2, 3);
const char *hmoe_last_error(void);
void hmoe_clear_error(void);

#endif
