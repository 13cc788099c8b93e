/* config/kubeconfig.c: the subset of a kubeconfig the agent can use.
 *
 * Reads clusters, contexts, users and current-context the way kubectl does
 * (first entry of a name wins, relative paths resolve against the file's
 * directory) and stops at what collect-agent cannot do (exec plugins and
 * auth providers) with a sentence that says so. Never logs. */
#include "core/file.h"
#include "config/kubeconfig.h"
#include "config/config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "core/base64.h"
#include "core/buf.h"

#define MAX_KUBECONFIG_BYTES ((size_t)4 << 20) /* certificates inline make them a few KiB each */

struct kctx {
	yaml_document_t *doc;
	const char *name;     /* the file, for messages */
	const char *base_dir; /* NULL: leave relative paths alone */
	char *err;
	size_t errlen;
	size_t budget;        /* mapping pairs we may still look at (alias fan-out guard) */
};

void ca_kubeconfig_fini(struct ca_kubeconfig *kc)
{
	if (!kc)
		return;
	free(kc->context_name);
	free(kc->namespace_);
	free(kc->server);
	free(kc->tls_server_name);
	free(kc->certificate_authority);
	free(kc->certificate_authority_data);
	ca_free_secret_n(kc->token, kc->token ? strlen(kc->token) : 0);
	free(kc->token_file);
	free(kc->client_certificate);
	free(kc->client_certificate_data);
	free(kc->client_key);
	ca_free_secret_n(kc->client_key_data, kc->client_key_data_len);
	free(kc->username);
	ca_free_secret_n(kc->password, kc->password ? strlen(kc->password) : 0);
	memset(kc, 0, sizeof *kc);
}

/* ------------------------------------------------------------------------ */
/* Base64 (RFC 4648 standard alphabet), as certificate-authority-data and
 * friends carry PEM. Whitespace is skipped (editors wrap long lines);
 * padding is optional but nothing may follow it. The output is at most
 * 3/4 of the input plus a NUL, so its size is bounded by the file cap. */

static enum ca_err b64_decode(const char *in, size_t inlen, char **out, size_t *outlen)
{
	if (inlen > MAX_KUBECONFIG_BYTES)
		return CA_ETOOBIG;
	char *buf = malloc(inlen / 4 * 3 + 4);
	if (!buf)
		return CA_ENOMEM;
	size_t o = 0, pads = 0, n = 0;
	uint32_t acc = 0;
	for (size_t i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		if (c == '=') {
			pads++;
			continue;
		}
		int v = ca_base64_value(c);
		if (v < 0 || pads)
			goto bad;
		acc = acc << 6 | (uint32_t)v;
		if (++n % 4 == 0) {
			buf[o++] = (char)(acc >> 16);
			buf[o++] = (char)(acc >> 8);
			buf[o++] = (char)acc;
			acc = 0;
		}
	}
	switch (n % 4) {
	case 0:
		if (pads)
			goto bad;
		break;
	case 1:
		goto bad;
	case 2:
		if (pads != 0 && pads != 2)
			goto bad;
		buf[o++] = (char)(acc >> 4);
		break;
	case 3:
		if (pads != 0 && pads != 1)
			goto bad;
		buf[o++] = (char)(acc >> 10);
		buf[o++] = (char)(acc >> 2);
		break;
	}
	buf[o] = '\0';
	*out = buf;
	*outlen = o;
	return CA_OK;
bad:
	ca_free_secret_n(buf, inlen / 4 * 3 + 4);
	return CA_EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Document access                                                          */

static bool is_null(const yaml_node_t *n)
{
	if (!n)
		return true;
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *v = (const char *)n->data.scalar.value;
	return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0;
}

/* The value of key in map, NULL when absent or map is not a mapping. */
static yaml_node_t *map_get(struct kctx *c, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		if (c->budget == 0)
			return NULL;
		c->budget--;
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(c->doc, p->value);
	}
	return NULL;
}

/* Read an optional string field. *out is NULL when absent or null. where
 * names the entry ("user \"u\"") for messages. */
static enum ca_err get_str(struct kctx *c, yaml_node_t *map, const char *key, const char *where,
                           const char **out)
{
	yaml_node_t *n = map_get(c, map, key);
	*out = NULL;
	if (is_null(n))
		return CA_OK;
	if (n->type != YAML_SCALAR_NODE) {
		ca_set_err(c->err, c->errlen, "%s: %s: %s at line %lu is not a single value", c->name, where,
		        key, (unsigned long)n->start_mark.line + 1);
		return CA_EINVAL;
	}
	if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length) {
		ca_set_err(c->err, c->errlen, "%s: %s: %s contains a NUL byte", c->name, where, key);
		return CA_EINVAL;
	}
	*out = (const char *)n->data.scalar.value;
	return CA_OK;
}

static enum ca_err dup_to(char **dst, const char *s)
{
	if (!s)
		return CA_OK;
	*dst = strdup(s);
	return *dst ? CA_OK : CA_ENOMEM;
}

/* A file path field, resolved against the kubeconfig's directory. */
static enum ca_err get_path(struct kctx *c, yaml_node_t *map, const char *key, const char *where,
                            char **dst)
{
	const char *v;
	enum ca_err rc = get_str(c, map, key, where, &v);
	if (rc != CA_OK || !v || !*v)
		return rc;
	if (v[0] == '/' || !c->base_dir || !*c->base_dir)
		return dup_to(dst, v);
	struct ca_buf b;
	ca_buf_init(&b, 0);
	size_t dl = strlen(c->base_dir);
	rc = ca_buf_printf(&b, "%s%s%s", c->base_dir, c->base_dir[dl - 1] == '/' ? "" : "/", v);
	if (rc == CA_OK) {
		*dst = ca_buf_take(&b, NULL);
		rc = *dst ? CA_OK : CA_ENOMEM;
	}
	ca_buf_fini(&b);
	return rc;
}

static enum ca_err get_b64(struct kctx *c, yaml_node_t *map, const char *key, const char *where,
                           char **dst, size_t *dst_len)
{
	const char *v;
	enum ca_err rc = get_str(c, map, key, where, &v);
	if (rc != CA_OK || !v || !*v)
		return rc;
	rc = b64_decode(v, strlen(v), dst, dst_len);
	if (rc == CA_EINVAL || rc == CA_ETOOBIG) {
		ca_set_err(c->err, c->errlen, "%s: %s: %s is not valid base64", c->name, where, key);
		return CA_EINVAL;
	}
	return rc;
}

/* The inner mapping (under inner_key) of the first entry of list whose name
 * is name; NULL when there is none. */
static yaml_node_t *find_named(struct kctx *c, yaml_node_t *list, const char *name,
                               const char *inner_key)
{
	if (!list || list->type != YAML_SEQUENCE_NODE)
		return NULL;
	for (yaml_node_item_t *it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
		yaml_node_t *entry = yaml_document_get_node(c->doc, *it);
		yaml_node_t *n = map_get(c, entry, "name");
		if (n && n->type == YAML_SCALAR_NODE && n->data.scalar.length == strlen(name) &&
		    strcmp((const char *)n->data.scalar.value, name) == 0)
			return map_get(c, entry, inner_key);
	}
	return NULL;
}

static enum ca_err check_list(struct kctx *c, yaml_node_t *list, const char *key)
{
	if (is_null(list) || list->type == YAML_SEQUENCE_NODE)
		return CA_OK;
	ca_set_err(c->err, c->errlen, "%s: %s at line %lu is not a list", c->name, key,
	        (unsigned long)list->start_mark.line + 1);
	return CA_EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Parse                                                                    */

static enum ca_err resolve(struct kctx *c, yaml_node_t *root, const char *context,
                           struct ca_kubeconfig *out)
{
	enum ca_err rc;
	char where[400];
	const char *ctx_name = context;
	yaml_node_t *clusters = map_get(c, root, "clusters");
	yaml_node_t *contexts = map_get(c, root, "contexts");
	yaml_node_t *users = map_get(c, root, "users");

	if ((rc = check_list(c, clusters, "clusters")) != CA_OK ||
	    (rc = check_list(c, contexts, "contexts")) != CA_OK ||
	    (rc = check_list(c, users, "users")) != CA_OK)
		return rc;
	if (!ctx_name || !*ctx_name) {
		if ((rc = get_str(c, root, "current-context", "top level", &ctx_name)) != CA_OK)
			return rc;
		if (!ctx_name || !*ctx_name) {
			ca_set_err(c->err, c->errlen, "%s: no context was given and current-context is not set",
			        c->name);
			return CA_EINVAL;
		}
	}
	if ((rc = dup_to(&out->context_name, ctx_name)) != CA_OK)
		return rc;

	yaml_node_t *ctx = find_named(c, contexts, ctx_name, "context");
	if (!ctx || ctx->type != YAML_MAPPING_NODE) {
		ca_set_err(c->err, c->errlen, "%s: context \"%s\" not found", c->name, ctx_name);
		return CA_EINVAL;
	}
	snprintf(where, sizeof where, "context \"%.200s\"", ctx_name);
	const char *cluster_name, *user_name, *ns;
	if ((rc = get_str(c, ctx, "cluster", where, &cluster_name)) != CA_OK ||
	    (rc = get_str(c, ctx, "user", where, &user_name)) != CA_OK ||
	    (rc = get_str(c, ctx, "namespace", where, &ns)) != CA_OK)
		return rc;
	if (ns && *ns && (rc = dup_to(&out->namespace_, ns)) != CA_OK)
		return rc;
	if (!cluster_name || !*cluster_name) {
		ca_set_err(c->err, c->errlen, "%s: context \"%s\" names no cluster", c->name, ctx_name);
		return CA_EINVAL;
	}

	/* cluster */
	yaml_node_t *cl = find_named(c, clusters, cluster_name, "cluster");
	if (!cl || cl->type != YAML_MAPPING_NODE) {
		ca_set_err(c->err, c->errlen, "%s: cluster \"%s\" (of context \"%s\") not found", c->name,
		        cluster_name, ctx_name);
		return CA_EINVAL;
	}
	snprintf(where, sizeof where, "cluster \"%.200s\"", cluster_name);
	if ((rc = ca_config_yaml_check_keys(c->doc, cl, c->name, c->err, c->errlen)) != CA_OK)
		return rc;
	const char *server, *tls_name, *insecure, *proxy;
	if ((rc = get_str(c, cl, "server", where, &server)) != CA_OK ||
	    (rc = get_str(c, cl, "tls-server-name", where, &tls_name)) != CA_OK ||
	    (rc = get_str(c, cl, "insecure-skip-tls-verify", where, &insecure)) != CA_OK ||
	    (rc = get_str(c, cl, "proxy-url", where, &proxy)) != CA_OK)
		return rc;
	if (proxy && *proxy) {
		/* Ignoring it would send the token straight to the server when
		 * the operator meant it to go through the proxy (or fail in a
		 * way that points nowhere). */
		ca_set_err(c->err, c->errlen, "%s: %s: proxy-url is not supported by collect-agent; remove "
		           "it, or set HTTPS_PROXY in the agent's environment", c->name, where);
		return CA_EUNSUPPORTED;
	}
	if (!server || !*server) {
		ca_set_err(c->err, c->errlen, "%s: cluster \"%s\" has no server", c->name, cluster_name);
		return CA_EINVAL;
	}
	if ((rc = dup_to(&out->server, server)) != CA_OK)
		return rc;
	if (tls_name && *tls_name && (rc = dup_to(&out->tls_server_name, tls_name)) != CA_OK)
		return rc;
	if (insecure) {
		if (strcmp(insecure, "true") == 0 || strcmp(insecure, "True") == 0)
			out->insecure_skip_tls_verify = true;
		else if (strcmp(insecure, "false") != 0 && strcmp(insecure, "False") != 0) {
			ca_set_err(c->err, c->errlen,
			        "%s: %s: insecure-skip-tls-verify is not a boolean; allowed: true, false",
			        c->name, where);
			return CA_EINVAL;
		}
	}
	if ((rc = get_path(c, cl, "certificate-authority", where, &out->certificate_authority)) != CA_OK ||
	    (rc = get_b64(c, cl, "certificate-authority-data", where, &out->certificate_authority_data,
	                  &out->certificate_authority_data_len)) != CA_OK)
		return rc;

	/* user: a context without one talks to the server anonymously */
	if (!user_name || !*user_name)
		return CA_OK;
	yaml_node_t *u = find_named(c, users, user_name, "user");
	if (!u || (u->type != YAML_MAPPING_NODE && !is_null(u))) {
		ca_set_err(c->err, c->errlen, "%s: user \"%s\" (of context \"%s\") not found", c->name,
		        user_name, ctx_name);
		return CA_EINVAL;
	}
	snprintf(where, sizeof where, "user \"%.200s\"", user_name);
	const char *token, *username, *password;
	if ((rc = get_str(c, u, "token", where, &token)) != CA_OK ||
	    (rc = get_str(c, u, "username", where, &username)) != CA_OK ||
	    (rc = get_str(c, u, "password", where, &password)) != CA_OK)
		return rc;
	if ((token && *token && (rc = dup_to(&out->token, token)) != CA_OK) ||
	    (username && *username && (rc = dup_to(&out->username, username)) != CA_OK) ||
	    (password && *password && (rc = dup_to(&out->password, password)) != CA_OK))
		return rc;
	if ((rc = get_path(c, u, "tokenFile", where, &out->token_file)) != CA_OK ||
	    (rc = get_path(c, u, "client-certificate", where, &out->client_certificate)) != CA_OK ||
	    (rc = get_path(c, u, "client-key", where, &out->client_key)) != CA_OK ||
	    (rc = get_b64(c, u, "client-certificate-data", where, &out->client_certificate_data,
	                  &out->client_certificate_data_len)) != CA_OK ||
	    (rc = get_b64(c, u, "client-key-data", where, &out->client_key_data,
	                  &out->client_key_data_len)) != CA_OK)
		return rc;
	out->has_exec = !is_null(map_get(c, u, "exec"));
	out->has_auth_provider = !is_null(map_get(c, u, "auth-provider"));
	bool has_cert = (out->client_certificate || out->client_certificate_data) &&
	                (out->client_key || out->client_key_data);
	bool usable = out->token || out->token_file || has_cert || out->username;
	if (!usable && out->has_exec) {
		ca_set_err(c->err, c->errlen,
		        "%s: user \"%s\" uses an exec credential plugin, which collect-agent does not support; use a token or client certificate",
		        c->name, user_name);
		return CA_EUNSUPPORTED;
	}
	if (!usable && out->has_auth_provider) {
		ca_set_err(c->err, c->errlen,
		        "%s: user \"%s\" uses an auth-provider, which collect-agent does not support; use a token or client certificate",
		        c->name, user_name);
		return CA_EUNSUPPORTED;
	}
	return CA_OK;
}

static enum ca_err parse_named(const char *data, size_t len, const char *name, const char *base_dir,
                               const char *context, struct ca_kubeconfig *out, char *err,
                               size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	bool have_doc = false;
	enum ca_err rc = CA_EINVAL;

	memset(out, 0, sizeof *out);
	if (len > MAX_KUBECONFIG_BYTES) {
		ca_set_err(err, errlen, "%s: larger than %zu bytes", name, MAX_KUBECONFIG_BYTES);
		return CA_EINVAL;
	}
	if ((rc = ca_config_yaml_check_depth(data, len, name, err, errlen)) != CA_OK)
		return rc;
	rc = CA_EINVAL;
	if (!yaml_parser_initialize(&parser))
		return CA_ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	if (!yaml_parser_load(&parser, &doc)) {
		if (parser.error == YAML_MEMORY_ERROR) {
			rc = CA_ENOMEM;
		} else {
			ca_set_err(err, errlen, "%s: YAML syntax error at line %lu, column %lu: %s", name,
			        (unsigned long)parser.problem_mark.line + 1,
			        (unsigned long)parser.problem_mark.column + 1,
			        parser.problem ? parser.problem : "malformed document");
		}
		goto out;
	}
	have_doc = true;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (!root || root->type != YAML_MAPPING_NODE) {
		ca_set_err(err, errlen, "%s: not a kubeconfig (the top level is not a mapping)", name);
		goto out;
	}
	if ((rc = ca_config_yaml_check_keys(&doc, root, name, err, errlen)) != CA_OK)
		goto out;
	rc = CA_EINVAL;
	size_t nodes = (size_t)(doc.nodes.top - doc.nodes.start);
	struct kctx c = { .doc = &doc, .name = name, .base_dir = base_dir, .err = err, .errlen = errlen,
		          .budget = nodes * 16 + 4096 };
	rc = resolve(&c, root, context, out);
	if (c.budget == 0) {
		/* Aliases let a small file fan out into a huge walk. */
		ca_set_err(err, errlen, "%s: too many references to walk; is it really a kubeconfig?", name);
		rc = CA_EINVAL;
	}
out:
	if (rc != CA_OK)
		ca_kubeconfig_fini(out);
	if (have_doc)
		yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return rc;
}

enum ca_err ca_kubeconfig_parse(const char *data, size_t len, const char *base_dir,
                                const char *context, struct ca_kubeconfig *out, char *err,
                                size_t errlen)
{
	return parse_named(data, len, "kubeconfig", base_dir, context, out, err, errlen);
}

enum ca_err ca_kubeconfig_load(const char *path, const char *context, struct ca_kubeconfig *out,
                               char *err, size_t errlen)
{
	enum ca_err rc;
	char *data = NULL, *dir = NULL;
	size_t len = 0;
	char why[128];

	memset(out, 0, sizeof *out);
	/* A kubeconfig may hold tokens and keys: read it like a secret (wiped
	 * from freed memory), but it is YAML of many lines, so not with the
	 * one-line secret rules. */
	rc = ca_read_file(path, MAX_KUBECONFIG_BYTES, &data, &len, NULL, why, sizeof why);
	if (rc != CA_OK) {
		ca_set_err(err, errlen, "%s: cannot read the kubeconfig: %s", path, why);
		return rc == CA_ETOOBIG ? CA_EINVAL : rc == CA_ENOMEM ? rc : CA_EIO;
	}
	const char *slash = strrchr(path, '/');
	dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
	if (!dir) {
		rc = CA_ENOMEM;
		goto out;
	}
	rc = parse_named(data, len, path, dir, context, out, err, errlen);
out:
	ca_free_secret_n(data, len + 1);
	free(dir);
	return rc;
}
