/* placeholder: replaced by the tokenizer work */
#include "hmoe_chat.h"
#include "hmoe_err.h"
int hmoe_chat_render(const struct hmoe_chat_msg *m, int n, int g, char **o) { (void)m; (void)n; (void)g; (void)o; return hmoe_err(HMOE_EINTERNAL, "not built yet"); }
