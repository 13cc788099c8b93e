/* config/kubeconfig.h: reads a kubeconfig file (YAML) into plain data.
 *
 * Lives in config/ because config/ is the one module that includes yaml.h;
 * the kube module turns the result into credentials. Resolves the context
 * (the named one or current-context), its cluster and its user. Relative
 * file paths in the kubeconfig are resolved against the file's directory,
 * as kubectl does. Any thread; never logs. */
#ifndef CA_CONFIG_KUBECONFIG_H
#define CA_CONFIG_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

struct ca_kubeconfig {
	char *context_name;
	char *namespace_;                /* context namespace or NULL */
	char *server;                    /* https://host:port */
	char *tls_server_name;           /* cluster.tls-server-name or NULL */
	bool insecure_skip_tls_verify;
	char *certificate_authority;     /* file path or NULL */
	char *certificate_authority_data; /* decoded PEM bytes or NULL */
	size_t certificate_authority_data_len;
	char *token;                     /* user.token or NULL (secret) */
	char *token_file;                /* user.tokenFile or NULL */
	char *client_certificate;        /* file path or NULL */
	char *client_certificate_data;   /* decoded PEM or NULL */
	size_t client_certificate_data_len;
	char *client_key;
	char *client_key_data;           /* decoded PEM or NULL (secret) */
	size_t client_key_data_len;
	char *username, *password;       /* basic auth (secret) or NULL */
	bool has_exec;                   /* user.exec: unsupported, reported */
	bool has_auth_provider;          /* user.auth-provider: unsupported */
};

/* Load path and resolve context (NULL or "" = current-context). On error
 * returns CA_EIO (unreadable), CA_EINVAL (bad YAML, missing context/cluster/
 * user, bad base64) or CA_EUNSUPPORTED (exec plugin or auth-provider in the
 * chosen user, with nothing else to authenticate with) and writes a sentence
 * naming the file and what is wrong into err. */
enum ca_err ca_kubeconfig_load(const char *path, const char *context,
                               struct ca_kubeconfig *out, char *err, size_t errlen);
/* Parse from memory (fuzzing, tests); base_dir resolves relative paths. */
enum ca_err ca_kubeconfig_parse(const char *data, size_t len, const char *base_dir,
                                const char *context, struct ca_kubeconfig *out,
                                char *err, size_t errlen);
/* Frees every member (secrets are zeroed first); leaves *kc zeroed. */
void ca_kubeconfig_fini(struct ca_kubeconfig *kc);

#endif
