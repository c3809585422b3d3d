/* placeholder: replaced by the tokenizer work */
#include "hmoe_tok.h"
#include "hmoe_err.h"
int hmoe_tok_load(struct hmoe_tok **out, const char *p) { (void)out; return hmoe_err(HMOE_EINTERNAL, "%s: tokenizer not built yet", p); }
int hmoe_tok_load_dir(struct hmoe_tok **out, const char *p) { (void)out; return hmoe_err(HMOE_EINTERNAL, "%s: tokenizer not built yet", p); }
void hmoe_tok_free(struct hmoe_tok *t) { (void)t; }
int hmoe_tok_n_vocab(const struct hmoe_tok *t) { (void)t; return 0; }
int hmoe_tok_id(const struct hmoe_tok *t, const char *s) { (void)t; (void)s; return -1; }
int hmoe_tok_bos(const struct hmoe_tok *t) { (void)t; return -1; }
int hmoe_tok_eos(const struct hmoe_tok *t) { (void)t; return -1; }
int hmoe_tok_is_special(const struct hmoe_tok *t, int id) { (void)t; (void)id; return 0; }
int hmoe_tok_encode(const struct hmoe_tok *t, const char *x, size_t n, int **ids, int *k) { (void)t; (void)x; (void)n; (void)ids; (void)k; return hmoe_err(HMOE_EINTERNAL, "not built yet"); }
int hmoe_tok_decode(const struct hmoe_tok *t, const int *ids, int n, int s, char **x) { (void)t; (void)ids; (void)n; (void)s; (void)x; return hmoe_err(HMOE_EINTERNAL, "not built yet"); }
void hmoe_tok_stream_init(struct hmoe_tok_stream *s, const struct hmoe_tok *t, int k) { s->tok = t; s->skip_special = k; s->n_pending = 0; }
int hmoe_tok_stream_push(struct hmoe_tok_stream *s, int id, char *o, size_t c) { (void)s; (void)id; (void)o; (void)c; return hmoe_err(HMOE_EINTERNAL, "not built yet"); }
int hmoe_tok_stream_flush(struct hmoe_tok_stream *s, char *o, size_t c) { (void)s; (void)o; (void)c; return 0; }
