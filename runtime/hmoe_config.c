/* placeholder: replaced by the loader work */
#include "hmoe_config.h"
#include "hmoe_err.h"
int hmoe_config_load(struct hmoe_config *cfg, const char *path) { (void)cfg; return hmoe_err(HMOE_EINTERNAL, "%s: config loading not built yet", path); }
int hmoe_config_parse(struct hmoe_config *cfg, const char *json, const char *what) { (void)cfg; (void)json; return hmoe_err(HMOE_EINTERNAL, "%s: not built yet", what); }
int hmoe_config_save(const struct hmoe_config *cfg, const char *path) { (void)cfg; return hmoe_err(HMOE_EINTERNAL, "%s: not built yet", path); }
