/* config/config_int.h: what config.c shares with the generated default-config
 * source, the kubeconfig reader, the fuzz targets and the unit tests. Not for
 * other modules. */
#ifndef CA_CONFIG_CONFIG_INT_H
#define CA_CONFIG_CONFIG_INT_H

#include <stddef.h>
#include <yaml.h> /* internal header: only config/ and its tests see libyaml */

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

/* YAML the loader must refuse before (or while) building a document:
 * nesting deeper than CA_CONFIG_YAML_MAX_DEPTH (libyaml has no limit; a
 * document nested 100,000 deep took a minute to load), and a key twice in
 * one mapping (libyaml keeps both; which one would win is a guess). name
 * labels the messages. CA_EINVAL with err set; CA_ENOMEM. */
#define CA_CONFIG_YAML_MAX_DEPTH 32
enum ca_err ca_config_yaml_check_depth(const char *data, size_t len, const char *name, char *err,
                                       size_t errlen);
enum ca_err ca_config_yaml_check_keys(yaml_document_t *doc, yaml_node_t *map, const char *name,
                                      char *err, size_t errlen);

#endif
