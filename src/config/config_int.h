/* config/config_int.h: what config.c shares with the generated default-config
 * source, the kubeconfig reader, the fuzz targets and the unit tests. Not for
 * other modules. */
#ifndef CA_CONFIG_CONFIG_INT_H
#define CA_CONFIG_CONFIG_INT_H

#include <stddef.h>

#include "config/config.h"

/* config/collect-agent.yaml, generated at build time by scripts/embed.py. */
extern const char ca_config_default_yaml_text[];
extern const size_t ca_config_default_yaml_text_len;

/* Apply the YAML document data[0..len) on top of cfg (which must hold
 * defaults, or be zeroed), then validate. name labels error messages (a
 * file name). Unknown keys are warned about through ca_log. Same errors as
 * ca_config_load; cfg must be fini'd by the caller in both cases. */
enum ca_err ca_config_load_from_memory(struct ca_config *cfg, const char *data, size_t len,
                                       const char *name, char *err, size_t errlen);

#endif
