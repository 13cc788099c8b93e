/* kube/credentials.c: where the agent's Kubernetes credentials come from.
 *
 * Precedence (kube_int.h): the kubeconfig named by options (--kubeconfig or
 * kubernetes.kubeconfig), then $KUBECONFIG, then the in-cluster service
 * account, then ~/.kube/config. Each source is tried only when it is
 * present; a source that is present but broken is an error, never a reason
 * to fall through to the next one, so the agent cannot silently end up
 * talking to a different cluster than the one the operator named.
 *
 * $KUBECONFIG is a ':'-separated list. kubectl merges all of its files;
 * merging is NOT supported here: the first file of the list that exists is
 * used on its own.
 *
 * Leaf code: never logs; every failure writes one sentence into err. */
#include "core/file.h"
#include "kube/kube_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/kubeconfig.h"
#include "core/buf.h"

#define DEFAULT_SERVICE_ACCOUNT_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define MAX_NAMESPACE_FILE ((size_t)4 << 10)

static enum ca_err dup_str(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return CA_OK;
	*out = strdup(s);
	return *out ? CA_OK : CA_ENOMEM;
}

/* Copy len bytes and add a NUL, so PEM data can also be used as a string. */
static enum ca_err dup_mem(const char *s, size_t len, char **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (!s)
		return CA_OK;
	if (len == SIZE_MAX)
		return CA_ENOMEM;
	char *p = malloc(len + 1);
	if (!p)
		return CA_ENOMEM;
	memcpy(p, s, len);
	p[len] = '\0';
	*out = p;
	*out_len = len;
	return CA_OK;
}

static bool path_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static size_t trim_trailing_space(char *s, size_t len)
{
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n' ||
	                   s[len - 1] == '\r' || s[len - 1] == '\v' || s[len - 1] == '\f'))
		s[--len] = '\0';
	return len;
}

/* ------------------------------------------------------------------------ */

/* A token goes into an HTTP header: a CR or LF in it would end the header
 * and let the rest write others. One line of printable bytes. (Token files
 * go through ca_read_secret, which applies the same rule; this is for a
 * token written inline in a kubeconfig.) */
static bool header_safe(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

enum ca_err ca_kube_credentials_refresh_token(struct ca_kube_credentials *c, bool force,
                                              char *why, size_t whylen)
{
	if (why && whylen)
		why[0] = '\0';
	if (!c->token_file)
		return c->token ? CA_OK : CA_ENOTFOUND;
	struct stat st;
	if (stat(c->token_file, &st) != 0) {
		ca_set_err(why, whylen, "%s", errno == ENOENT ? "no such file" : strerror(errno));
		return errno == ENOENT ? CA_ENOTFOUND : CA_EIO;
	}
	int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if (!force && c->token && mtime == c->token_mtime_ns)
		return CA_OK;

	/* The one secret reader refuses an empty file (maybe caught
	 * mid-rotation) and control bytes (a CR/LF would inject headers); on
	 * every failure the old token, if any, stays in use. */
	char *data = NULL;
	enum ca_err rc = ca_read_secret(c->token_file, CA_SECRET_LINE, &data, NULL, &mtime, why, whylen);
	if (rc != CA_OK)
		return rc;
	ca_free_secret(c->token);
	c->token = data;
	c->token_mtime_ns = mtime;
	return CA_OK;
}

void ca_kube_credentials_fini(struct ca_kube_credentials *c)
{
	if (!c)
		return;
	free(c->server);
	free(c->source);
	free(c->namespace_);
	free(c->tls_server_name);
	free(c->ca_file);
	free(c->ca_pem);
	free(c->client_cert_file);
	free(c->client_key_file);
	free(c->client_cert_pem);
	ca_free_secret_n(c->client_key_pem, c->client_key_pem_len);
	ca_free_secret(c->token);
	free(c->token_file);
	ca_free_secret(c->username);
	ca_free_secret(c->password);
	memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------------ */

static enum ca_err from_kubeconfig(const char *path, const char *context,
                                   struct ca_kube_credentials *out, char *err, size_t errlen)
{
	struct ca_kubeconfig kc;
	struct ca_buf b;
	enum ca_err rc;

	memset(&kc, 0, sizeof kc);
	ca_buf_init(&b, 0);
	rc = ca_kubeconfig_load(path, context && *context ? context : NULL, &kc, err, errlen);
	if (rc != CA_OK)
		goto out; /* err says which file and what is wrong */
	if (!kc.server || !*kc.server) {
		rc = CA_EINVAL;
		ca_set_err(err, errlen, "kubeconfig %s: the cluster of context %s has no server",
		        path, kc.context_name ? kc.context_name : "(current)");
		goto out;
	}

	rc = CA_ENOMEM;
	if (dup_str(kc.server, &out->server) != CA_OK)
		goto out;
	size_t n = strlen(out->server);
	while (n > 0 && out->server[n - 1] == '/')
		out->server[--n] = '\0';
	if (ca_buf_printf(&b, "kubeconfig %s (context %s)", path,
	                  kc.context_name ? kc.context_name : "(current)") != CA_OK)
		goto out;
	out->source = ca_buf_take(&b, NULL);
	if (!out->source)
		goto out;
	if (dup_str(kc.namespace_ && *kc.namespace_ ? kc.namespace_ : "default",
	            &out->namespace_) != CA_OK ||
	    dup_str(kc.tls_server_name, &out->tls_server_name) != CA_OK ||
	    dup_str(kc.certificate_authority, &out->ca_file) != CA_OK ||
	    dup_mem(kc.certificate_authority_data, kc.certificate_authority_data_len,
	            &out->ca_pem, &out->ca_pem_len) != CA_OK ||
	    dup_str(kc.client_certificate, &out->client_cert_file) != CA_OK ||
	    dup_str(kc.client_key, &out->client_key_file) != CA_OK ||
	    dup_mem(kc.client_certificate_data, kc.client_certificate_data_len,
	            &out->client_cert_pem, &out->client_cert_pem_len) != CA_OK ||
	    dup_mem(kc.client_key_data, kc.client_key_data_len,
	            &out->client_key_pem, &out->client_key_pem_len) != CA_OK ||
	    dup_str(kc.username, &out->username) != CA_OK ||
	    dup_str(kc.password, &out->password) != CA_OK)
		goto out;
	out->insecure_skip_tls_verify = kc.insecure_skip_tls_verify;

	/* As client-go: when both are given, the token file wins (it is
	 * re-read as it rotates); the inline token is the fallback while the
	 * file cannot be read. */
	if (kc.token_file) {
		if (dup_str(kc.token_file, &out->token_file) != CA_OK)
			goto out;
		char why[128];
		rc = ca_kube_credentials_refresh_token(out, true, why, sizeof why);
		if (rc == CA_ENOMEM)
			goto out;
		if (rc != CA_OK && !kc.token) {
			ca_set_err(err, errlen, "kubeconfig %s: cannot use tokenFile %s: %s", path,
			           kc.token_file, why);
			rc = CA_EINVAL;
			goto out;
		}
		rc = CA_ENOMEM;
	}
	if (!out->token && kc.token) {
		if (dup_str(kc.token, &out->token) != CA_OK)
			goto out;
		size_t token_len = trim_trailing_space(out->token, strlen(out->token));
		if (!header_safe(out->token, token_len)) {
			ca_set_err(err, errlen, "kubeconfig %s: the user's token holds control characters "
			           "(a token is one line)", path);
			rc = CA_EINVAL;
			goto out;
		}
	}
	rc = CA_OK;
out:
	if (rc == CA_ENOMEM)
		ca_set_err(err, errlen, "kubeconfig %s: out of memory", path);
	ca_buf_fini(&b);
	ca_kubeconfig_fini(&kc);
	return rc;
}

static enum ca_err in_cluster(const char *host, const char *port, const char *dir,
                              struct ca_kube_credentials *out, char *err, size_t errlen)
{
	enum ca_err rc = CA_EINVAL;
	struct ca_buf b;
	char *ns = NULL;
	size_t ns_len = 0;

	ca_buf_init(&b, 0);
	char *end = NULL;
	errno = 0;
	long p = strtol(port, &end, 10);
	if (errno != 0 || end == port || *end != '\0' || p < 1 || p > 65535) {
		ca_set_err(err, errlen, "KUBERNETES_SERVICE_PORT=%s is not a port number (1-65535)",
		        port);
		goto out;
	}
	rc = CA_ENOMEM;
	/* An IPv6 service address needs brackets in a URL (client-go uses
	 * net.JoinHostPort for the same reason). */
	bool v6 = strchr(host, ':') != NULL && host[0] != '[';
	if (ca_buf_printf(&b, "https://%s%s%s:%ld", v6 ? "[" : "", host, v6 ? "]" : "", p) != CA_OK)
		goto out;
	out->server = ca_buf_take(&b, NULL);
	if (!out->server || dup_str("in-cluster", &out->source) != CA_OK)
		goto out;

	if (ca_buf_printf(&b, "%s/token", dir) != CA_OK)
		goto out;
	out->token_file = ca_buf_take(&b, NULL);
	if (!out->token_file)
		goto out;
	char why[128];
	rc = ca_kube_credentials_refresh_token(out, true, why, sizeof why);
	if (rc != CA_OK) {
		ca_set_err(err, errlen, "service account token %s: %s", out->token_file,
		           rc == CA_ENOMEM ? "out of memory" : why);
		goto out;
	}

	rc = CA_ENOMEM;
	if (ca_buf_printf(&b, "%s/ca.crt", dir) != CA_OK)
		goto out;
	/* Without ca.crt the client falls back to the system CAs, as client-go
	 * does; the TLS handshake then says what is wrong. */
	if (path_exists(b.data)) {
		out->ca_file = ca_buf_take(&b, NULL);
		if (!out->ca_file)
			goto out;
	}
	ca_buf_reset(&b);

	if (ca_buf_printf(&b, "%s/namespace", dir) != CA_OK)
		goto out;
	rc = ca_read_file(b.data, MAX_NAMESPACE_FILE, &ns, &ns_len, NULL, NULL, 0);
	if (rc == CA_ENOMEM)
		goto out;
	if (rc == CA_OK) {
		ns_len = trim_trailing_space(ns, ns_len);
		size_t lead = strspn(ns, " \t\r\n");
		if (lead)
			memmove(ns, ns + lead, ns_len - lead + 1);
	}
	if (rc != CA_OK || !ns[0]) {
		free(ns);
		ns = NULL;
		rc = CA_ENOMEM;
		if (dup_str("default", &ns) != CA_OK)
			goto out;
	}
	out->namespace_ = ns;
	ns = NULL;
	rc = CA_OK;
out:
	if (rc == CA_ENOMEM)
		ca_set_err(err, errlen, "in-cluster credentials: out of memory");
	free(ns);
	ca_buf_fini(&b);
	return rc;
}

/* ------------------------------------------------------------------------ */

enum ca_err ca_kube_credentials_find(const struct ca_kube_options *opts,
                                     struct ca_kube_credentials *out,
                                     char *err, size_t errlen)
{
	enum ca_err rc = CA_ENOTFOUND;
	const char *context = opts ? opts->context : NULL;
	char path[PATH_MAX];
	bool token_missing = false;

	memset(out, 0, sizeof *out);
	if (err && errlen)
		err[0] = '\0';

	/* 1. Named explicitly: it must be there. */
	if (opts && opts->kubeconfig && *opts->kubeconfig) {
		if (!path_exists(opts->kubeconfig)) {
			ca_set_err(err, errlen,
			        "kubeconfig file %s (from --kubeconfig or kubernetes.kubeconfig) "
			        "cannot be read: %s",
			        opts->kubeconfig, strerror(errno));
			rc = CA_ENOTFOUND;
			goto out;
		}
		rc = from_kubeconfig(opts->kubeconfig, context, out, err, errlen);
		goto out;
	}

	/* 2. $KUBECONFIG: the first listed file that exists (no merging). */
	const char *list = getenv("KUBECONFIG");
	for (const char *s = list; s && *s;) {
		const char *colon = strchr(s, ':');
		size_t n = colon ? (size_t)(colon - s) : strlen(s);
		if (n > 0 && n < sizeof path) {
			memcpy(path, s, n);
			path[n] = '\0';
			if (path_exists(path)) {
				rc = from_kubeconfig(path, context, out, err, errlen);
				goto out;
			}
		}
		s = colon ? colon + 1 : s + n;
	}

	/* 3. In-cluster, when the pod environment and its token are there. */
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	if (host && *host && port && *port) {
		const char *dir = opts && opts->service_account_dir && *opts->service_account_dir
		                          ? opts->service_account_dir
		                          : DEFAULT_SERVICE_ACCOUNT_DIR;
		int n = snprintf(path, sizeof path, "%s/token", dir);
		if (n > 0 && (size_t)n < sizeof path && path_exists(path)) {
			rc = in_cluster(host, port, dir, out, err, errlen);
			goto out;
		}
		token_missing = true;
	}

	/* 4. ~/.kube/config. */
	const char *home = getenv("HOME");
	if (home && *home) {
		int n = snprintf(path, sizeof path, "%s/.kube/config", home);
		if (n > 0 && (size_t)n < sizeof path && path_exists(path)) {
			rc = from_kubeconfig(path, context, out, err, errlen);
			goto out;
		}
	}

	rc = CA_ENOTFOUND;
	if (token_missing) {
		const char *dir = opts && opts->service_account_dir && *opts->service_account_dir
		                          ? opts->service_account_dir
		                          : DEFAULT_SERVICE_ACCOUNT_DIR;
		ca_set_err(err, errlen,
		        "no Kubernetes credentials: set --kubeconfig, KUBECONFIG, or run in a pod "
		        "with a service account (KUBERNETES_SERVICE_HOST is set but %s/token is "
		        "missing)",
		        dir);
	} else {
		ca_set_err(err, errlen,
		        "no Kubernetes credentials: set --kubeconfig, KUBECONFIG, or run in a pod "
		        "with a service account");
	}
out:
	if (rc != CA_OK)
		ca_kube_credentials_fini(out);
	return rc;
}
