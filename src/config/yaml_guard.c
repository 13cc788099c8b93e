/* config/yaml_guard.c: what libyaml's document loader does not refuse, for
 * the config file and the kubeconfig (config_int.h). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "config/config_int.h"

enum ca_err ca_config_yaml_check_depth(const char *data, size_t len, const char *name, char *err,
                                       size_t errlen)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	enum ca_err rc = CA_OK;
	int depth = 0;
	if (!yaml_parser_initialize(&parser))
		return CA_ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	for (;;) {
		if (!yaml_parser_parse(&parser, &ev))
			break; /* the loader reports syntax errors with its own words */
		yaml_event_type_t t = ev.type;
		if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) {
			if (++depth > CA_CONFIG_YAML_MAX_DEPTH) {
				ca_set_err(err, errlen, "%s: line %lu: nested more than %d levels deep; a config "
				           "is a few levels deep", name, (unsigned long)ev.start_mark.line + 1,
				           CA_CONFIG_YAML_MAX_DEPTH);
				rc = CA_EINVAL;
			}
		} else if (t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) {
			depth--;
		}
		yaml_event_delete(&ev);
		if (rc != CA_OK || t == YAML_STREAM_END_EVENT)
			break;
	}
	yaml_parser_delete(&parser);
	return rc;
}

enum ca_err ca_config_yaml_check_keys(yaml_document_t *doc, yaml_node_t *map, const char *name,
                                      char *err, size_t errlen)
{
	yaml_node_pair_t *start = map->data.mapping.pairs.start, *top = map->data.mapping.pairs.top;
	/* Mappings in a config are a handful of keys: quadratic is fine, and
	 * the depth and size caps bound it. */
	for (yaml_node_pair_t *p = start; p < top; p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		if (!k || k->type != YAML_SCALAR_NODE)
			continue;
		for (yaml_node_pair_t *q = start; q < p; q++) {
			yaml_node_t *o = yaml_document_get_node(doc, q->key);
			if (o && o->type == YAML_SCALAR_NODE && o->data.scalar.length == k->data.scalar.length &&
			    memcmp(o->data.scalar.value, k->data.scalar.value, k->data.scalar.length) == 0) {
				ca_set_err(err, errlen, "%s: line %lu: key \"%.*s\" appears twice in the same "
				           "mapping (first at line %lu); allowed: each key once", name,
				           (unsigned long)k->start_mark.line + 1,
				           (int)(k->data.scalar.length < 100 ? k->data.scalar.length : 100),
				           (const char *)k->data.scalar.value, (unsigned long)o->start_mark.line + 1);
				return CA_EINVAL;
			}
		}
	}
	return CA_OK;
}
