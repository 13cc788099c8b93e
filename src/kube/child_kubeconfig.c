/* kube/child_kubeconfig.c: the kubeconfig handed to kubectl in the command
 * sandbox (see ca_kube_child_kubeconfig in kube.h). Every value is written
 * as a double-quoted scalar with JSON escapes, which YAML reads the same,
 * so no byte of a path or token can break the document's structure. */
#include <stdio.h>
#include <string.h>

#include "core/base64.h"
#include "kube/kube.h"
#include "kube/kube_int.h"

static enum ca_err append_b64(struct ca_buf *out, const char *data, size_t len)
{
	enum ca_err rc = ca_buf_append(out, "\"", 1);
	if (rc == CA_OK)
		rc = ca_base64_append(out, data, len);
	if (rc == CA_OK)
		rc = ca_buf_append(out, "\"\n", 2);
	return rc;
}

static enum ca_err field(struct ca_buf *out, const char *indent_key, const char *value)
{
	enum ca_err rc = ca_buf_append_str(out, indent_key);
	if (rc == CA_OK)
		rc = ca_buf_append_json_string(out, value);
	if (rc == CA_OK)
		rc = ca_buf_append(out, "\n", 1);
	return rc;
}

/* A PEM given inline goes as *-data; one given by path goes as that path. */
static enum ca_err pem(struct ca_buf *out, const char *key, const char *file, const char *data, size_t len)
{
	char k[64];
	enum ca_err rc = CA_OK;
	if (data && len) {
		snprintf(k, sizeof k, "    %s-data: ", key);
		rc = ca_buf_append_str(out, k);
		if (rc == CA_OK)
			rc = append_b64(out, data, len);
	} else if (file && *file) {
		snprintf(k, sizeof k, "    %s: ", key);
		rc = field(out, k, file);
	}
	return rc;
}

enum ca_err ca_kube_child_kubeconfig(const struct ca_kube *kube, struct ca_buf *out, char *err, size_t errlen)
{
	return ca_kube_credentials_kubeconfig(ca_kube_credentials_of(kube), out, err, errlen);
}

enum ca_err ca_kube_credentials_kubeconfig(const struct ca_kube_credentials *c, struct ca_buf *out, char *err,
                                           size_t errlen)
{
	if (c->username || c->password) {
		ca_set_err(err, errlen, "the agent uses basic auth (%s), which is never handed to commands",
		           c->source ? c->source : "kubeconfig");
		return CA_EUNSUPPORTED;
	}
	size_t was = out->len;
	enum ca_err rc = ca_buf_append_str(out, "apiVersion: v1\nkind: Config\nclusters:\n- name: agent\n  cluster:\n");
	if (rc == CA_OK)
		rc = field(out, "    server: ", c->server ? c->server : "");
	if (rc == CA_OK)
		rc = pem(out, "certificate-authority", c->ca_file, c->ca_pem, c->ca_pem_len);
	if (rc == CA_OK && c->tls_server_name && *c->tls_server_name)
		rc = field(out, "    tls-server-name: ", c->tls_server_name);
	if (rc == CA_OK && c->insecure_skip_tls_verify)
		rc = ca_buf_append_str(out, "    insecure-skip-tls-verify: true\n");
	if (rc == CA_OK)
		rc = ca_buf_append_str(out, "users:\n- name: agent\n  user:\n");
	if (rc == CA_OK && c->token_file && *c->token_file)
		rc = field(out, "    tokenFile: ", c->token_file);
	else if (rc == CA_OK && c->token && *c->token)
		rc = field(out, "    token: ", c->token);
	if (rc == CA_OK)
		rc = pem(out, "client-certificate", c->client_cert_file, c->client_cert_pem, c->client_cert_pem_len);
	if (rc == CA_OK)
		rc = pem(out, "client-key", c->client_key_file, c->client_key_pem, c->client_key_pem_len);
	if (rc == CA_OK)
		rc = ca_buf_append_str(out, "contexts:\n- name: agent\n  context:\n    cluster: agent\n    user: agent\n"
		                            "current-context: agent\npreferences: {}\n");
	if (rc != CA_OK) {
		out->len = was;
		if (out->data)
			out->data[was] = '\0';
		ca_set_err(err, errlen, "cannot write the kubeconfig for a command: %s", ca_strerror(rc));
	}
	return rc;
}
