/* Unit tests for the credential lookup of the kube module (kube_int.h):
 * precedence, in-cluster service account, token rotation, kubeconfig
 * files. Everything lives in a temporary directory; the environment is
 * set per case with setenv/unsetenv. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "kube/kube_int.h"

#define CA_PEM "-----BEGIN CERTIFICATE-----\nMIIBfakeCA\n-----END CERTIFICATE-----\n"
#define CA_PEM_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJmYWtlQ0EKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="

static char root[256];

static void path_of(char *out, size_t len, const char *rel)
{
	snprintf(out, len, "%s/%s", root, rel);
}

static void write_file(const char *rel, const char *content)
{
	char path[512];
	path_of(path, sizeof path, rel);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs(content, f);
	fclose(f);
}

static void set_mtime(const char *rel, time_t sec)
{
	char path[512];
	path_of(path, sizeof path, rel);
	struct timespec ts[2] = {{sec, 0}, {sec, 0}};
	CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0);
}

static void make_dir(const char *rel)
{
	char path[512];
	path_of(path, sizeof path, rel);
	CHECK(mkdir(path, 0700) == 0);
}

static void clear_env(void)
{
	unsetenv("KUBECONFIG");
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	char home[512];
	path_of(home, sizeof home, "emptyhome");
	setenv("HOME", home, 1);
}

static void in_cluster_env(const char *host, const char *port)
{
	setenv("KUBERNETES_SERVICE_HOST", host, 1);
	setenv("KUBERNETES_SERVICE_PORT", port, 1);
}

/* A kubeconfig whose cluster server is `server` and user token `token`. */
static void write_simple_kubeconfig(const char *rel, const char *server, const char *token)
{
	char yaml[2048];
	snprintf(yaml, sizeof yaml,
	         "apiVersion: v1\n"
	         "kind: Config\n"
	         "current-context: main\n"
	         "clusters:\n"
	         "- name: c\n"
	         "  cluster:\n"
	         "    server: %s\n"
	         "contexts:\n"
	         "- name: main\n"
	         "  context:\n"
	         "    cluster: c\n"
	         "    user: u\n"
	         "users:\n"
	         "- name: u\n"
	         "  user:\n"
	         "    token: %s\n",
	         server, token);
	write_file(rel, yaml);
}

static struct ca_kube_options sa_opts(void)
{
	static char dir[512];
	path_of(dir, sizeof dir, "sa");
	struct ca_kube_options o;
	memset(&o, 0, sizeof o);
	o.service_account_dir = dir;
	return o;
}

/* ------------------------------------------------------------------------ */

static void test_nothing_found(void)
{
	clear_env();
	struct ca_kube_options o = sa_opts();
	struct ca_kube_credentials c;
	char err[512] = "";
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_ENOTFOUND);
	CHECK_STR(err, "no Kubernetes credentials: set --kubeconfig, KUBECONFIG, or run in a pod "
	               "with a service account");
	CHECK(c.server == NULL && c.token == NULL);
	ca_kube_credentials_fini(&c);

	/* KUBECONFIG naming only files that do not exist is no source either. */
	char missing[512];
	path_of(missing, sizeof missing, "nope1");
	char list[1100];
	snprintf(list, sizeof list, "%s::%s/nope2", missing, root);
	setenv("KUBECONFIG", list, 1);
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_ENOTFOUND);
	ca_kube_credentials_fini(&c);

	/* In a pod without a mounted token: still nothing, and the reason says so. */
	in_cluster_env("10.96.0.1", "443");
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_ENOTFOUND);
	CHECK(check_contains(err, "no Kubernetes credentials"));
	CHECK(check_contains(err, "/sa/token"));
	ca_kube_credentials_fini(&c);
	clear_env();
}

static void test_in_cluster(void)
{
	clear_env();
	make_dir("sa");
	write_file("sa/token", "tok-1\n");
	write_file("sa/ca.crt", CA_PEM);
	write_file("sa/namespace", "monitoring\n");
	set_mtime("sa/token", 1700000000);
	in_cluster_env("10.96.0.1", "443");

	struct ca_kube_options o = sa_opts();
	struct ca_kube_credentials c;
	char err[512] = "";
	char want[512];
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_OK);
	CHECK_STR(c.server, "https://10.96.0.1:443");
	CHECK_STR(c.source, "in-cluster");
	CHECK_STR(c.token, "tok-1"); /* trailing newline trimmed */
	path_of(want, sizeof want, "sa/token");
	CHECK_STR(c.token_file, want);
	path_of(want, sizeof want, "sa/ca.crt");
	CHECK_STR(c.ca_file, want);
	CHECK_STR(c.namespace_, "monitoring");
	CHECK(c.ca_pem == NULL && c.client_cert_file == NULL && c.username == NULL);
	CHECK(!c.insecure_skip_tls_verify);

	/* Unchanged file: same token. */
	CHECK_INT(ca_kube_credentials_refresh_token(&c, false, NULL, 0), CA_OK);
	CHECK_STR(c.token, "tok-1");

	/* The kubelet rotates the projected token: a new mtime is noticed. */
	write_file("sa/token", "tok-2 \r\n");
	set_mtime("sa/token", 1700000100);
	CHECK_INT(ca_kube_credentials_refresh_token(&c, false, NULL, 0), CA_OK);
	CHECK_STR(c.token, "tok-2");

	/* Same mtime: not re-read unless forced (as after a 401). */
	write_file("sa/token", "tok-3");
	set_mtime("sa/token", 1700000100);
	CHECK_INT(ca_kube_credentials_refresh_token(&c, false, NULL, 0), CA_OK);
	CHECK_STR(c.token, "tok-2");
	CHECK_INT(ca_kube_credentials_refresh_token(&c, true, NULL, 0), CA_OK);
	CHECK_STR(c.token, "tok-3");

	/* A token with a line break would inject HTTP headers: refused, the
	 * old token stays. */
	write_file("sa/token", "tok-4\r\nX-Injected: yes\n");
	set_mtime("sa/token", 1700000150);
	char why[128] = "";
	CHECK_INT(ca_kube_credentials_refresh_token(&c, false, why, sizeof why), CA_EINVAL);
	CHECK(strstr(why, "control bytes") != NULL);
	CHECK_STR(c.token, "tok-3");

	/* Caught mid-rotation (empty) or gone: an error, the old token stays. */
	write_file("sa/token", "");
	set_mtime("sa/token", 1700000200);
	CHECK(ca_kube_credentials_refresh_token(&c, false, NULL, 0) != CA_OK);
	CHECK_STR(c.token, "tok-3");
	char tok[512];
	path_of(tok, sizeof tok, "sa/token");
	CHECK(unlink(tok) == 0);
	CHECK_INT(ca_kube_credentials_refresh_token(&c, true, NULL, 0), CA_ENOTFOUND);
	CHECK_STR(c.token, "tok-3");
	ca_kube_credentials_fini(&c);
	CHECK(c.token == NULL && c.server == NULL);
	ca_kube_credentials_fini(&c); /* twice is fine */

	/* IPv6 service address, no namespace file, no ca.crt. */
	write_file("sa/token", "tok-4");
	path_of(want, sizeof want, "sa/namespace");
	CHECK(unlink(want) == 0);
	path_of(want, sizeof want, "sa/ca.crt");
	CHECK(unlink(want) == 0);
	in_cluster_env("fd00:10:96::1", "6443");
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_OK);
	CHECK_STR(c.server, "https://[fd00:10:96::1]:6443");
	CHECK_STR(c.namespace_, "default");
	CHECK(c.ca_file == NULL);
	CHECK_STR(c.token, "tok-4");
	ca_kube_credentials_fini(&c);

	/* A port that is not a port. */
	in_cluster_env("10.96.0.1", "https");
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_EINVAL);
	CHECK(check_contains(err, "KUBERNETES_SERVICE_PORT"));
	ca_kube_credentials_fini(&c);
	in_cluster_env("10.96.0.1", "70000");
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_EINVAL);
	ca_kube_credentials_fini(&c);

	/* An empty token file is an error, not a fallback. */
	in_cluster_env("10.96.0.1", "443");
	write_file("sa/token", "\n");
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_EINVAL);
	CHECK(check_contains(err, "empty"));
	CHECK(c.token == NULL && c.server == NULL);
	ca_kube_credentials_fini(&c);

	write_file("sa/token", "tok-5");
	write_file("sa/ca.crt", CA_PEM);
	write_file("sa/namespace", "monitoring");
	clear_env();
}

static void test_precedence(void)
{
	clear_env();
	make_dir("home");
	make_dir("home/.kube");
	write_simple_kubeconfig("flag.yaml", "https://flag.example:6443", "flag-token");
	write_simple_kubeconfig("env.yaml", "https://env.example:6443", "env-token");
	write_simple_kubeconfig("home/.kube/config", "https://home.example:6443", "home-token");

	char flag[512], env[512], home[512], list[1600];
	path_of(flag, sizeof flag, "flag.yaml");
	path_of(env, sizeof env, "env.yaml");
	path_of(home, sizeof home, "home");
	snprintf(list, sizeof list, "%s/missing.yaml:%s:%s", root, env, flag);

	struct ca_kube_options o = sa_opts();
	struct ca_kube_credentials c;
	char err[512] = "";

	/* Everything present: the flag wins. */
	setenv("HOME", home, 1);
	setenv("KUBECONFIG", list, 1);
	in_cluster_env("10.96.0.1", "443");
	o.kubeconfig = flag;
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_OK);
	CHECK_STR(c.server, "https://flag.example:6443");
	CHECK_STR(c.token, "flag-token");
	ca_kube_credentials_fini(&c);

	/* No flag: the first existing file of $KUBECONFIG (no merging). */
	o.kubeconfig = "";
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_OK);
	CHECK_STR(c.server, "https://env.example:6443");
	char want[700];
	snprintf(want, sizeof want, "kubeconfig %s (context main)", env);
	CHECK_STR(c.source, want);
	ca_kube_credentials_fini(&c);

	/* No KUBECONFIG: in-cluster beats ~/.kube/config. */
	unsetenv("KUBECONFIG");
	o.kubeconfig = NULL;
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_OK);
	CHECK_STR(c.source, "in-cluster");
	CHECK_STR(c.server, "https://10.96.0.1:443");
	ca_kube_credentials_fini(&c);

	/* Only HOME is left. */
	unsetenv("KUBERNETES_SERVICE_HOST");
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_OK);
	CHECK_STR(c.server, "https://home.example:6443");
	CHECK_STR(c.token, "home-token");
	CHECK_STR(c.namespace_, "default");
	ca_kube_credentials_fini(&c);

	/* A --kubeconfig that does not exist is an error naming it, even
	 * though $KUBECONFIG, in-cluster and HOME would all work. */
	setenv("KUBECONFIG", list, 1);
	in_cluster_env("10.96.0.1", "443");
	char missing[512];
	path_of(missing, sizeof missing, "does-not-exist.yaml");
	o.kubeconfig = missing;
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_ENOTFOUND);
	CHECK(check_contains(err, missing));
	CHECK(check_contains(err, "--kubeconfig"));
	CHECK(c.server == NULL);
	ca_kube_credentials_fini(&c);

	/* A broken file is reported, never skipped for the next source. */
	write_file("broken.yaml", "clusters: [\n");
	path_of(missing, sizeof missing, "broken.yaml");
	o.kubeconfig = missing;
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_EINVAL);
	CHECK(check_contains(err, "broken.yaml"));
	ca_kube_credentials_fini(&c);
	clear_env();
}

static void test_kubeconfig_inline_ca(void)
{
	clear_env();
	write_file("inline.yaml",
	           "apiVersion: v1\n"
	           "kind: Config\n"
	           "current-context: other\n"
	           "clusters:\n"
	           "- name: prod\n"
	           "  cluster:\n"
	           "    server: https://prod.example:6443/\n"
	           "    certificate-authority-data: " CA_PEM_B64 "\n"
	           "    tls-server-name: api.prod.internal\n"
	           "- name: dev\n"
	           "  cluster:\n"
	           "    server: https://dev.example\n"
	           "    insecure-skip-tls-verify: true\n"
	           "contexts:\n"
	           "- name: prod-ctx\n"
	           "  context:\n"
	           "    cluster: prod\n"
	           "    user: reader\n"
	           "    namespace: shop\n"
	           "- name: other\n"
	           "  context:\n"
	           "    cluster: dev\n"
	           "    user: reader\n"
	           "users:\n"
	           "- name: reader\n"
	           "  user:\n"
	           "    token: \"abc.def.ghi  \"\n");
	char path[512];
	path_of(path, sizeof path, "inline.yaml");
	struct ca_kube_options o = sa_opts();
	o.kubeconfig = path;
	o.context = "prod-ctx";
	struct ca_kube_credentials c;
	char err[512] = "";
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_OK);
	CHECK_STR(c.server, "https://prod.example:6443"); /* no trailing slash */
	CHECK_STR(c.namespace_, "shop");
	CHECK_STR(c.tls_server_name, "api.prod.internal");
	CHECK(c.ca_file == NULL);
	CHECK(c.ca_pem != NULL);
	CHECK_INT(c.ca_pem_len, strlen(CA_PEM));
	if (c.ca_pem)
		CHECK(memcmp(c.ca_pem, CA_PEM, strlen(CA_PEM)) == 0);
	CHECK_STR(c.token, "abc.def.ghi"); /* trailing whitespace trimmed */
	CHECK(c.token_file == NULL);
	CHECK(!c.insecure_skip_tls_verify);
	char want[700];
	snprintf(want, sizeof want, "kubeconfig %s (context prod-ctx)", path);
	CHECK_STR(c.source, want);
	/* No token file: refresh keeps the inline token. */
	CHECK_INT(ca_kube_credentials_refresh_token(&c, true, NULL, 0), CA_OK);
	CHECK_STR(c.token, "abc.def.ghi");
	ca_kube_credentials_fini(&c);

	/* current-context when none is asked for. */
	o.context = NULL;
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_OK);
	CHECK_STR(c.server, "https://dev.example");
	CHECK(c.insecure_skip_tls_verify);
	CHECK(c.ca_pem == NULL);
	ca_kube_credentials_fini(&c);

	o.context = "no-such-context";
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_EINVAL);
	CHECK(check_contains(err, "no-such-context"));
	ca_kube_credentials_fini(&c);
}

static void test_kubeconfig_client_cert(void)
{
	clear_env();
	make_dir("certs");
	write_file("certs/client.crt", "-----BEGIN CERTIFICATE-----\nclient\n-----END CERTIFICATE-----\n");
	write_file("certs/client.key", "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n");
	write_file("certs/ca.crt", CA_PEM);
	write_file("certs/token", "file-token\n");
	write_file("certs/kubeconfig",
	           "apiVersion: v1\n"
	           "kind: Config\n"
	           "current-context: kind\n"
	           "clusters:\n"
	           "- name: kind\n"
	           "  cluster:\n"
	           "    server: https://127.0.0.1:6443\n"
	           "    certificate-authority: ca.crt\n"
	           "contexts:\n"
	           "- name: kind\n"
	           "  context:\n"
	           "    cluster: kind\n"
	           "    user: admin\n"
	           "users:\n"
	           "- name: admin\n"
	           "  user:\n"
	           "    client-certificate: client.crt\n"
	           "    client-key: client.key\n"
	           "    tokenFile: token\n"
	           "    token: inline-token\n");
	char path[512], want[512];
	path_of(path, sizeof path, "certs/kubeconfig");
	setenv("KUBECONFIG", path, 1);
	struct ca_kube_options o = sa_opts();
	struct ca_kube_credentials c;
	char err[512] = "";
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_OK);
	CHECK_STR(c.server, "https://127.0.0.1:6443");
	/* Relative paths are resolved against the kubeconfig's directory. */
	path_of(want, sizeof want, "certs/client.crt");
	CHECK_STR(c.client_cert_file, want);
	path_of(want, sizeof want, "certs/client.key");
	CHECK_STR(c.client_key_file, want);
	path_of(want, sizeof want, "certs/ca.crt");
	CHECK_STR(c.ca_file, want);
	CHECK(c.client_cert_pem == NULL && c.client_key_pem == NULL);
	/* tokenFile wins over token, and is re-read when it changes. */
	path_of(want, sizeof want, "certs/token");
	CHECK_STR(c.token_file, want);
	CHECK_STR(c.token, "file-token");
	write_file("certs/token", "file-token-2\n");
	set_mtime("certs/token", 1700000500);
	CHECK_INT(ca_kube_credentials_refresh_token(&c, false, NULL, 0), CA_OK);
	CHECK_STR(c.token, "file-token-2");
	ca_kube_credentials_fini(&c);

	/* tokenFile unreadable: the inline token is used meanwhile. */
	CHECK(unlink(want) == 0);
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_OK);
	CHECK_STR(c.token, "inline-token");
	CHECK(c.token_file != NULL);
	ca_kube_credentials_fini(&c);
	clear_env();
}

static void test_kubeconfig_exec(void)
{
	clear_env();
	write_file("exec.yaml",
	           "apiVersion: v1\n"
	           "kind: Config\n"
	           "current-context: eks\n"
	           "clusters:\n"
	           "- name: eks\n"
	           "  cluster:\n"
	           "    server: https://ABC.gr7.eu-west-1.eks.amazonaws.com\n"
	           "contexts:\n"
	           "- name: eks\n"
	           "  context:\n"
	           "    cluster: eks\n"
	           "    user: aws\n"
	           "users:\n"
	           "- name: aws\n"
	           "  user:\n"
	           "    exec:\n"
	           "      apiVersion: client.authentication.k8s.io/v1beta1\n"
	           "      command: aws\n"
	           "      args: [eks, get-token, --cluster-name, shop]\n");
	char path[512];
	path_of(path, sizeof path, "exec.yaml");
	struct ca_kube_options o = sa_opts();
	o.kubeconfig = path;
	struct ca_kube_credentials c;
	char err[512] = "";
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_EUNSUPPORTED);
	CHECK(check_contains(err, "exec"));
	CHECK(check_contains(err, "exec.yaml"));
	CHECK(c.server == NULL);
	ca_kube_credentials_fini(&c);
}

static void test_kubeconfig_token_control_bytes(void)
{
	clear_env();
	write_file("crlf.yaml",
	           "apiVersion: v1\n"
	           "kind: Config\n"
	           "current-context: c\n"
	           "clusters:\n"
	           "- name: c\n"
	           "  cluster: {server: \"https://127.0.0.1:6443\"}\n"
	           "contexts:\n"
	           "- name: c\n"
	           "  context: {cluster: c, user: u}\n"
	           "users:\n"
	           "- name: u\n"
	           "  user: {token: \"abc\\r\\nX-Injected: yes\"}\n");
	char path[512];
	path_of(path, sizeof path, "crlf.yaml");
	struct ca_kube_options o = sa_opts();
	o.kubeconfig = path;
	struct ca_kube_credentials c;
	char err[512] = "";
	CHECK_INT(ca_kube_credentials_find(&o, &c, err, sizeof err), CA_EINVAL);
	CHECK(check_contains(err, "control characters"));
	CHECK(!check_contains(err, "X-Injected"));
	ca_kube_credentials_fini(&c);
}

static void remove_tree(const char *dir)
{
	/* The test made every name below; remove them in reverse order. */
	static const char *const files[] = {
		"sa/token", "sa/ca.crt", "sa/namespace", "flag.yaml", "env.yaml",
		"home/.kube/config", "broken.yaml", "inline.yaml", "certs/client.crt",
		"certs/client.key", "certs/ca.crt", "certs/token", "certs/kubeconfig", "exec.yaml",
		"crlf.yaml"};
	static const char *const dirs[] = {"sa", "home/.kube", "home", "certs", "emptyhome"};
	char path[512];
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		unlink(path);
	}
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, dirs[i]);
		rmdir(path);
	}
	rmdir(dir);
}

/* The kubeconfig handed to kubectl in the sandbox: read back by the same
 * reader, it names the same server, CA, TLS name and credentials --
 * inline ones inline, files by path -- and nothing else. */
static void roundtrip(const struct ca_kube_credentials *c, struct ca_kube_credentials *back)
{
	struct ca_buf yaml;
	char err[512] = "", path[512];
	ca_buf_init(&yaml, 0);
	CHECK_INT(ca_kube_credentials_kubeconfig(c, &yaml, err, sizeof err), CA_OK);
	write_file("child.kubeconfig", yaml.data ? yaml.data : "");
	ca_buf_fini(&yaml);
	path_of(path, sizeof path, "child.kubeconfig");
	struct ca_kube_options o = sa_opts();
	o.kubeconfig = path;
	CHECK_INT(ca_kube_credentials_find(&o, back, err, sizeof err), CA_OK);
}

static void test_child_kubeconfig(void)
{
	clear_env();
	struct ca_kube_credentials c = { 0 }, back;
	char ca[] = CA_PEM, token[] = "tok\"en: {x} #y", server[] = "https://10.0.0.1:6443",
	     sni[] = "api.internal", src[] = "test";
	c.server = server;
	c.source = src;
	c.ca_pem = ca;
	c.ca_pem_len = strlen(CA_PEM);
	c.tls_server_name = sni;
	c.token = token;
	roundtrip(&c, &back);
	CHECK_STR(back.server, server);
	CHECK_STR(back.tls_server_name, sni);
	CHECK(back.ca_pem && back.ca_pem_len == strlen(CA_PEM) && memcmp(back.ca_pem, CA_PEM, strlen(CA_PEM)) == 0);
	CHECK(back.ca_file == NULL);
	CHECK_STR(back.token, token);
	CHECK(back.token_file == NULL);
	CHECK(back.client_cert_file == NULL && back.client_cert_pem == NULL && back.username == NULL);
	CHECK(!back.insecure_skip_tls_verify);
	CHECK(back.namespace_ == NULL || strcmp(back.namespace_, "default") == 0 || back.namespace_[0] == '\0');
	ca_kube_credentials_fini(&back);

	/* Files by path: the token by its file, so kubectl re-reads a rotated one. */
	char ca_path[512], tok_path[512], crt_path[512], key_path[512];
	make_dir("child");
	write_file("child/ca.crt", CA_PEM);
	write_file("child/token", "rotating-token\n");
	write_file("child/client.crt", "-----BEGIN CERTIFICATE-----\nc\n-----END CERTIFICATE-----\n");
	write_file("child/client.key", "-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n");
	path_of(ca_path, sizeof ca_path, "child/ca.crt");
	path_of(tok_path, sizeof tok_path, "child/token");
	path_of(crt_path, sizeof crt_path, "child/client.crt");
	path_of(key_path, sizeof key_path, "child/client.key");
	struct ca_kube_credentials f = { 0 };
	char tok_value[] = "rotating-token";
	f.server = server;
	f.source = src;
	f.ca_file = ca_path;
	f.token = tok_value;
	f.token_file = tok_path;
	f.client_cert_file = crt_path;
	f.client_key_file = key_path;
	f.insecure_skip_tls_verify = true;
	roundtrip(&f, &back);
	CHECK_STR(back.ca_file, ca_path);
	CHECK_STR(back.token_file, tok_path);
	CHECK_STR(back.token, "rotating-token");
	CHECK_STR(back.client_cert_file, crt_path);
	CHECK_STR(back.client_key_file, key_path);
	CHECK(back.insecure_skip_tls_verify);
	ca_kube_credentials_fini(&back);

	/* Basic auth is never handed on. */
	char user[] = "admin", pass[] = "secret";
	f.username = user;
	f.password = pass;
	struct ca_buf yaml;
	char err[256] = "";
	ca_buf_init(&yaml, 0);
	CHECK_INT(ca_kube_credentials_kubeconfig(&f, &yaml, err, sizeof err), CA_EUNSUPPORTED);
	CHECK_CONTAINS(err, "basic auth");
	CHECK(yaml.len == 0);
	ca_buf_fini(&yaml);
}

int main(void)
{
	snprintf(root, sizeof root, "/tmp/ca-test-credentials-XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	test_nothing_found();
	test_in_cluster();
	test_precedence();
	test_kubeconfig_inline_ca();
	test_kubeconfig_client_cert();
	test_kubeconfig_exec();
	test_kubeconfig_token_control_bytes();
	test_child_kubeconfig();
	remove_tree(root);
	return check_report();
}
