/* kube/kube_int.h: what the files of the kube module share.
 *
 * credentials.c finds and holds the credentials; client.c (curl) applies
 * them to each transfer; reflector.c drives transfers through client.c. */
#ifndef CA_KUBE_KUBE_INT_H
#define CA_KUBE_KUBE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "kube/kube.h"

struct ca_kube_credentials {
	char *server;            /* "https://host:port", no trailing slash */
	char *source;            /* for logs: "in-cluster" or "kubeconfig PATH (context NAME)" */
	char *namespace_;        /* default namespace */
	char *tls_server_name;   /* SNI/verify name override or NULL */
	bool insecure_skip_tls_verify;
	char *ca_file;           /* PEM file path, or NULL */
	char *ca_pem;            /* PEM bytes (inline data), or NULL */
	size_t ca_pem_len;
	char *client_cert_file, *client_key_file;  /* paths or NULL */
	char *client_cert_pem, *client_key_pem;    /* inline PEM or NULL */
	size_t client_cert_pem_len, client_key_pem_len;
	char *token;             /* current bearer token (secret), or NULL */
	char *token_file;        /* re-read on 401 and when it changes, or NULL */
	int64_t token_mtime_ns;  /* of token_file when last read */
	char *username, *password; /* basic auth, or NULL */
};

/* Precedence as kubectl: opts->kubeconfig, $KUBECONFIG (first existing
 * file of the list), in-cluster (KUBERNETES_SERVICE_HOST/PORT + service
 * account dir), ~/.kube/config. Errors as ca_kube_new(). */
enum ca_err ca_kube_credentials_find(const struct ca_kube_options *opts,
                                     struct ca_kube_credentials *out,
                                     char *err, size_t errlen);
/* Re-read token_file if set, with the one secret reader (core/file.h).
 * force: even when its mtime has not changed. Returns CA_OK when a token is
 * loaded (changed or not); otherwise the old token stays in use and why
 * (may be NULL) says what is wrong with the file (CA_EINVAL: empty or
 * holding control bytes; CA_ENOTFOUND; CA_EIO; CA_ETOOBIG). */
enum ca_err ca_kube_credentials_refresh_token(struct ca_kube_credentials *c, bool force,
                                              char *why, size_t whylen);
void ca_kube_credentials_fini(struct ca_kube_credentials *c);
/* ca_kube_child_kubeconfig (kube.h) for these credentials. */
enum ca_err ca_kube_credentials_kubeconfig(const struct ca_kube_credentials *c, struct ca_buf *out, char *err,
                                           size_t errlen);
/* The credentials a client holds. Borrowed; loop thread. */
const struct ca_kube_credentials *ca_kube_credentials_of(const struct ca_kube *kube);

#endif
