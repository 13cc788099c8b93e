/* Unit tests for cluster/: ID validation and normalisation, the providerID,
 * zone, GKE location and AKS resource-group parsers, the IMDS tag scan, and
 * the synchronous part of the detector (env and config, no API).
 *
 * Run with "--detect" the same binary is the detection driver the
 * integration tests (tests/integration/test_cluster_id.py) use while the
 * agent is not wired: it loads the config like the agent (YAML, env
 * overrides), connects to the API with $KUBECONFIG, runs one detection and
 * prints ca_cluster_health_json() as one line on stdout. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "cluster/cluster.h"
#include "cluster/cluster_int.h"
#include "config/config.h"
#include "core/loop.h"
#include "core/timeutil.h"
#include "kube/kube.h"
#include "log/log.h"

/* ------------------------------------------------------------- pure parts */

static void test_valid_id(void)
{
	CHECK(ca_cluster_valid_id("prod-eu-1"));
	CHECK(ca_cluster_valid_id("a"));
	CHECK(ca_cluster_valid_id("0"));
	CHECK(ca_cluster_valid_id("d5fba74e-51a6-4dfe-8564-d26d014c5e9a"));
	CHECK(!ca_cluster_valid_id(""));
	CHECK(!ca_cluster_valid_id(NULL));
	CHECK(!ca_cluster_valid_id("Prod"));
	CHECK(!ca_cluster_valid_id("prod_eu"));
	CHECK(!ca_cluster_valid_id("prod.eu"));
	CHECK(!ca_cluster_valid_id("-prod"));
	CHECK(!ca_cluster_valid_id("prod-"));
	CHECK(!ca_cluster_valid_id("a b"));
	CHECK(!ca_cluster_valid_id("a*"));
	CHECK(!ca_cluster_valid_id("a>"));
	char id[100];
	memset(id, 'a', 80);
	id[80] = '\0';
	CHECK(ca_cluster_valid_id(id));
	id[80] = 'a';
	id[81] = '\0';
	CHECK(!ca_cluster_valid_id(id));
}

static void test_normalize(void)
{
	char out[81];
	ca_cluster_normalize_id("Shop-Prod", out, sizeof out);
	CHECK_STR(out, "shop-prod");
	ca_cluster_normalize_id("my_cluster.v2", out, sizeof out);
	CHECK_STR(out, "my-cluster-v2");
	ca_cluster_normalize_id("  --Weird Name!--  ", out, sizeof out);
	CHECK_STR(out, "weird-name");
	ca_cluster_normalize_id("___", out, sizeof out);
	CHECK_STR(out, "");
	ca_cluster_normalize_id("", out, sizeof out);
	CHECK_STR(out, "");
	ca_cluster_normalize_id(NULL, out, sizeof out);
	CHECK_STR(out, "");
	ca_cluster_normalize_id("caf\xc3\xa9", out, sizeof out); /* UTF-8 bytes become '-' and are trimmed */
	CHECK_STR(out, "caf");
	/* Cut to 80, then trimmed again. */
	char longname[200];
	memset(longname, 'x', 79);
	longname[79] = '_';
	memset(longname + 80, 'y', 50);
	longname[130] = '\0';
	ca_cluster_normalize_id(longname, out, sizeof out);
	CHECK_INT(strlen(out), 79);
	CHECK(ca_cluster_valid_id(out));
	memset(longname, 'Z', 150);
	longname[150] = '\0';
	ca_cluster_normalize_id(longname, out, sizeof out);
	CHECK_INT(strlen(out), 80);
	CHECK(out[0] == 'z' && ca_cluster_valid_id(out));
	/* A small buffer truncates but stays a valid ID. */
	char small[6];
	ca_cluster_normalize_id("abcd-efgh", small, sizeof small);
	CHECK_STR(small, "abcd");
	/* Every normalised non-empty result is valid. */
	const char *names[] = { "A", "a--b", "x.y.z", "MC_rg_c_loc", "ñoño", "1-2-3", "--a--", NULL };
	for (const char **n = names; *n; n++) {
		ca_cluster_normalize_id(*n, out, sizeof out);
		CHECK(out[0] == '\0' || ca_cluster_valid_id(out));
	}
}

static void test_aws_provider_id(void)
{
	char az[64], inst[64], region[64];
	CHECK(ca_cluster_aws_provider_id("aws:///eu-west-1a/i-0abc123def4567890", az, sizeof az, inst, sizeof inst));
	CHECK_STR(az, "eu-west-1a");
	CHECK_STR(inst, "i-0abc123def4567890");
	CHECK(ca_cluster_aws_provider_id("aws://us-east-2c/i-1", az, sizeof az, NULL, 0));
	CHECK_STR(az, "us-east-2c");
	CHECK(!ca_cluster_aws_provider_id("aws:////i-0abc", az, sizeof az, inst, sizeof inst));
	CHECK_STR(az, "");
	CHECK(!ca_cluster_aws_provider_id("gce://proj/us-central1-a/vm", az, sizeof az, inst, sizeof inst));
	CHECK(!ca_cluster_aws_provider_id("aws:///eu-west-1a/", az, sizeof az, inst, sizeof inst));
	CHECK(!ca_cluster_aws_provider_id("aws:///eu-west-1a/i-1/extra", az, sizeof az, inst, sizeof inst));
	CHECK(!ca_cluster_aws_provider_id("", az, sizeof az, inst, sizeof inst));
	CHECK(!ca_cluster_aws_provider_id(NULL, az, sizeof az, inst, sizeof inst));
	char tiny[4];
	CHECK(!ca_cluster_aws_provider_id("aws:///eu-west-1a/i-1", tiny, sizeof tiny, NULL, 0));
	CHECK_STR(tiny, "");

	CHECK(ca_cluster_aws_region_from_zone("eu-west-1a", region, sizeof region));
	CHECK_STR(region, "eu-west-1");
	CHECK(ca_cluster_aws_region_from_zone("ap-southeast-2b", region, sizeof region));
	CHECK_STR(region, "ap-southeast-2");
	CHECK(ca_cluster_aws_region_from_zone("us-gov-west-1a", region, sizeof region));
	CHECK_STR(region, "us-gov-west-1");
	CHECK(ca_cluster_aws_region_from_zone("us-west-2-lax-1a", region, sizeof region));
	CHECK_STR(region, "us-west-2");
	CHECK(ca_cluster_aws_region_from_zone("eu-west-1", region, sizeof region));
	CHECK_STR(region, "eu-west-1");
	CHECK(!ca_cluster_aws_region_from_zone("nozone", region, sizeof region));
	CHECK_STR(region, "");
	CHECK(!ca_cluster_aws_region_from_zone("1a-west-x", region, sizeof region));
	CHECK(!ca_cluster_aws_region_from_zone("eu--1a", region, sizeof region));
	CHECK(!ca_cluster_aws_region_from_zone("EU-WEST-1A", region, sizeof region));
	CHECK(!ca_cluster_aws_region_from_zone("", region, sizeof region));

	CHECK_STR(ca_cluster_provider_from_provider_id("aws:///eu-west-1a/i-1"), "aws");
	CHECK_STR(ca_cluster_provider_from_provider_id("gce://p/z/n"), "gcp");
	CHECK_STR(ca_cluster_provider_from_provider_id("azure:///subscriptions/x"), "azure");
	CHECK_STR(ca_cluster_provider_from_provider_id("kind://docker/kind/kind-control-plane"), "");
	CHECK_STR(ca_cluster_provider_from_provider_id(NULL), "");
}

static void test_provider_id_from_sample(void)
{
	/* The captured EKS node: its providerID and zone give eu-west-1. */
	char path[1024];
	snprintf(path, sizeof path, "%s/node-eks-ready.json", CA_SAMPLES_DIR);
	size_t len = 0;
	char *data = check_read_file(path, &len);
	CHECK(data != NULL);
	if (!data)
		return;
	const char *p = strstr(data, "\"providerID\": \"");
	CHECK(p != NULL);
	if (p) {
		p += strlen("\"providerID\": \"");
		char pid[128] = "";
		const char *e = strchr(p, '"');
		if (e && (size_t)(e - p) < sizeof pid)
			memcpy(pid, p, (size_t)(e - p)), pid[e - p] = '\0';
		char az[64], region[64];
		CHECK(ca_cluster_aws_provider_id(pid, az, sizeof az, NULL, 0));
		CHECK(ca_cluster_aws_region_from_zone(az, region, sizeof region));
		CHECK_STR(region, "eu-west-1");
	}
	free(data);
}

static void test_gke_region(void)
{
	char region[64];
	ca_cluster_gke_region("us-central1-a", region, sizeof region);
	CHECK_STR(region, "us-central1");
	ca_cluster_gke_region("europe-west4-b", region, sizeof region);
	CHECK_STR(region, "europe-west4");
	ca_cluster_gke_region("us-central1", region, sizeof region);
	CHECK_STR(region, "us-central1");
	ca_cluster_gke_region("northamerica-northeast1", region, sizeof region);
	CHECK_STR(region, "northamerica-northeast1");
	ca_cluster_gke_region("northamerica-northeast1-c", region, sizeof region);
	CHECK_STR(region, "northamerica-northeast1");
	ca_cluster_gke_region("", region, sizeof region);
	CHECK_STR(region, "");
	ca_cluster_gke_region(NULL, region, sizeof region);
	CHECK_STR(region, "");
}

static void test_aks_resource_group(void)
{
	char cl[64], loc[64];
	CHECK(ca_cluster_aks_resource_group("MC_shop-rg_shop-aks_westeurope", cl, sizeof cl, loc, sizeof loc));
	CHECK_STR(cl, "shop-aks");
	CHECK_STR(loc, "westeurope");
	/* A resource group with '_' in it: the cluster is the part before the location. */
	CHECK(ca_cluster_aks_resource_group("MC_my_rg_prod1_eastus2", cl, sizeof cl, loc, sizeof loc));
	CHECK_STR(cl, "prod1");
	CHECK_STR(loc, "eastus2");
	CHECK(ca_cluster_aks_resource_group("mc_rg_c_l", cl, sizeof cl, loc, sizeof loc));
	CHECK_STR(cl, "c");
	CHECK_STR(loc, "l");
	CHECK(!ca_cluster_aks_resource_group("my-custom-node-rg", cl, sizeof cl, loc, sizeof loc));
	CHECK_STR(cl, "");
	CHECK_STR(loc, "");
	CHECK(!ca_cluster_aks_resource_group("MC_rg_westeurope", cl, sizeof cl, loc, sizeof loc));
	CHECK(!ca_cluster_aks_resource_group("MC__c_l", cl, sizeof cl, loc, sizeof loc));
	CHECK(!ca_cluster_aks_resource_group("MC_rg__l", cl, sizeof cl, loc, sizeof loc));
	CHECK(!ca_cluster_aks_resource_group("MC_rg_c_", cl, sizeof cl, loc, sizeof loc));
	CHECK(!ca_cluster_aks_resource_group("MC_", cl, sizeof cl, loc, sizeof loc));
	CHECK(!ca_cluster_aks_resource_group("", cl, sizeof cl, loc, sizeof loc));
	CHECK(!ca_cluster_aks_resource_group(NULL, cl, sizeof cl, loc, sizeof loc));
	char tiny[3];
	CHECK(!ca_cluster_aks_resource_group("MC_rg_longname_l", tiny, sizeof tiny, loc, sizeof loc));
	CHECK_STR(tiny, "");
}

static void test_eks_tags(void)
{
	struct ca_cluster_eks_tags t;
	const char *l1 = "Name\naws:eks:cluster-name\neks:cluster-name\nkubernetes.io/cluster/shop\n";
	ca_cluster_scan_eks_tags(l1, strlen(l1), &t);
	CHECK(t.aws_eks_cluster_name);
	CHECK(t.eks_cluster_name);
	CHECK_STR(t.cluster_tag_name, "shop");
	const char *l2 = "Name\r\nkubernetes.io/cluster/billing-prod"; /* CRLF, no final newline */
	ca_cluster_scan_eks_tags(l2, strlen(l2), &t);
	CHECK(!t.aws_eks_cluster_name);
	CHECK(!t.eks_cluster_name);
	CHECK_STR(t.cluster_tag_name, "billing-prod");
	const char *l3 = "aws:eks:cluster-names\nxeks:cluster-name\nkubernetes.io/cluster/\nkubernetes.io/cluster/a/b";
	ca_cluster_scan_eks_tags(l3, strlen(l3), &t);
	CHECK(!t.aws_eks_cluster_name);
	CHECK(!t.eks_cluster_name);
	CHECK_STR(t.cluster_tag_name, "");
	ca_cluster_scan_eks_tags("", 0, &t);
	CHECK(!t.aws_eks_cluster_name && !t.cluster_tag_name[0]);
	/* Only len bytes count. */
	ca_cluster_scan_eks_tags("eks:cluster-name", 3, &t);
	CHECK(!t.eks_cluster_name);
}

static void test_trimmed(void)
{
	char out[16];
	CHECK(ca_cluster_trimmed("  shop\n", 7, out, sizeof out));
	CHECK_STR(out, "shop");
	CHECK(!ca_cluster_trimmed(" \n\t", 3, out, sizeof out));
	CHECK_STR(out, "");
	CHECK(!ca_cluster_trimmed("0123456789abcdefXYZ", 19, out, sizeof out));
	CHECK(!ca_cluster_trimmed("a\0b", 3, out, sizeof out));
	CHECK(!ca_cluster_trimmed(NULL, 0, out, sizeof out));
}

/* ------------------------------------------------- detector without the API */

struct done {
	int calls;
	struct ca_cluster_info info;
};

static void on_done(void *arg, const struct ca_cluster_info *info)
{
	struct done *d = arg;
	d->calls++;
	d->info = *info;
}

static void set_str(char **field, const char *v)
{
	free(*field);
	*field = strdup(v);
}

static void set_detect(struct ca_config *cfg, const char *const *items)
{
	for (size_t i = 0; i < cfg->cluster.detect.count; i++)
		free(cfg->cluster.detect.items[i]);
	free(cfg->cluster.detect.items);
	size_t n = 0;
	while (items[n])
		n++;
	cfg->cluster.detect.items = calloc(n ? n : 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		cfg->cluster.detect.items[i] = strdup(items[i]);
	cfg->cluster.detect.count = n;
}

static void test_static_sources(void)
{
	struct ca_loop *loop = NULL;
	CHECK_INT(ca_loop_new(&loop), CA_OK);
	struct ca_config cfg;
	memset(&cfg, 0, sizeof cfg);
	CHECK_INT(ca_config_init_defaults(&cfg), CA_OK);
	unsetenv("CLUSTER_ID");
	unsetenv("NODE_NAME");

	/* --cluster-id decides first, synchronously, before start returns. */
	setenv("CLUSTER_ID", "from-env", 1);
	set_str(&cfg.cluster.id, "from-config");
	struct done d = { 0 };
	struct ca_cluster *c = NULL;
	CHECK_INT(ca_cluster_new(&c, loop, NULL, &cfg, "from-flag", on_done, &d), CA_OK);
	CHECK(ca_cluster_info(c) == NULL);
	CHECK_INT(ca_cluster_start(c), CA_OK);
	CHECK_INT(d.calls, 1);
	CHECK_STR(d.info.id, "from-flag");
	CHECK_STR(d.info.source, "env");
	CHECK(ca_cluster_info(c) != NULL);
	CHECK_STR(ca_cluster_info(c)->id, "from-flag");
	CHECK_INT(ca_cluster_start(c), CA_EINVAL); /* only once */
	struct ca_buf h;
	ca_buf_init(&h, 0);
	ca_cluster_health_json(c, &h);
	CHECK(strstr(h.data, "\"state\":\"done\"") != NULL);
	CHECK(strstr(h.data, "\"id\":\"from-flag\"") != NULL);
	CHECK(strstr(h.data, "\"source\":\"env\"") != NULL);
	ca_buf_fini(&h);
	ca_cluster_free(c);

	/* CLUSTER_ID next. */
	d = (struct done){ 0 };
	CHECK_INT(ca_cluster_new(&c, loop, NULL, &cfg, NULL, on_done, &d), CA_OK);
	CHECK_INT(ca_cluster_start(c), CA_OK);
	CHECK_INT(d.calls, 1);
	CHECK_STR(d.info.id, "from-env");
	CHECK_STR(d.info.source, "env");
	ca_cluster_free(c);

	/* An invalid CLUSTER_ID is not used: config decides, and says so. */
	setenv("CLUSTER_ID", "Not_Valid", 1);
	d = (struct done){ 0 };
	CHECK_INT(ca_cluster_new(&c, loop, NULL, &cfg, NULL, on_done, &d), CA_OK);
	CHECK_INT(ca_cluster_start(c), CA_OK);
	CHECK_INT(d.calls, 1);
	CHECK_STR(d.info.id, "from-config");
	CHECK_STR(d.info.source, "config");
	CHECK_STR(d.info.provider, "");
	ca_cluster_free(c);

	/* The detect list decides the order: config before env. */
	setenv("CLUSTER_ID", "from-env", 1);
	const char *order[] = { "config", "env", NULL };
	set_detect(&cfg, order);
	d = (struct done){ 0 };
	CHECK_INT(ca_cluster_new(&c, loop, NULL, &cfg, NULL, on_done, &d), CA_OK);
	CHECK_INT(ca_cluster_start(c), CA_OK);
	CHECK_STR(d.info.source, "config");
	ca_cluster_free(c);

	/* A source switched off is not used. */
	const char *only_config[] = { "config", NULL };
	set_detect(&cfg, only_config);
	set_str(&cfg.cluster.id, "");
	d = (struct done){ 0 };
	CHECK_INT(ca_cluster_new(&c, loop, NULL, &cfg, "from-flag", on_done, &d), CA_OK);
	CHECK_INT(ca_cluster_start(c), CA_OK);
	CHECK_INT(d.calls, 0);
	CHECK(ca_cluster_info(c) == NULL);
	ca_buf_init(&h, 0);
	ca_cluster_health_json(c, &h);
	CHECK(strstr(h.data, "\"state\":\"waiting\"") != NULL);
	CHECK(strstr(h.data, "no cluster ID: config: cluster.id is empty") != NULL);
	CHECK(strstr(h.data, "\"attempts\":1") != NULL);
	ca_buf_fini(&h);
	ca_cluster_free(c);

	/* Without credentials the API sources say so, and nothing decides. */
	unsetenv("CLUSTER_ID");
	const char *all[] = { "env", "config", "eks", "gke", "aks", "node-labels", "kube-system-uid", NULL };
	set_detect(&cfg, all);
	d = (struct done){ 0 };
	CHECK_INT(ca_cluster_new(&c, loop, NULL, &cfg, NULL, on_done, &d), CA_OK);
	CHECK_INT(ca_cluster_start(c), CA_OK);
	CHECK_INT(d.calls, 0);
	ca_buf_init(&h, 0);
	ca_cluster_health_json(c, &h);
	CHECK(strstr(h.data, "env: neither --cluster-id nor CLUSTER_ID is set") != NULL);
	CHECK(strstr(h.data, "kube-system-uid: no Kubernetes credentials") != NULL);
	CHECK(strstr(h.data, "eks: no Kubernetes credentials") != NULL);
	ca_buf_fini(&h);
	ca_cluster_free(c);

	/* Argument checks; free accepts NULL. */
	CHECK_INT(ca_cluster_new(&c, NULL, NULL, &cfg, NULL, on_done, &d), CA_EINVAL);
	CHECK(c == NULL);
	CHECK_INT(ca_cluster_new(&c, loop, NULL, &cfg, NULL, NULL, &d), CA_EINVAL);
	ca_cluster_free(NULL);

	ca_config_fini(&cfg);
	ca_loop_free(loop);
}

/* The callback may free the cluster (the agent could drop it on shutdown). */
struct self_free {
	struct ca_cluster *c;
	int calls;
};

static void free_in_cb(void *arg, const struct ca_cluster_info *info)
{
	struct self_free *s = arg;
	s->calls++;
	CHECK_STR(info->id, "x1");
	ca_cluster_free(s->c);
	s->c = NULL;
}

static void test_free_in_callback(void)
{
	struct ca_loop *loop = NULL;
	CHECK_INT(ca_loop_new(&loop), CA_OK);
	struct ca_config cfg;
	memset(&cfg, 0, sizeof cfg);
	CHECK_INT(ca_config_init_defaults(&cfg), CA_OK);
	unsetenv("CLUSTER_ID");
	struct self_free s = { 0 };
	CHECK_INT(ca_cluster_new(&s.c, loop, NULL, &cfg, "x1", free_in_cb, &s), CA_OK);
	CHECK_INT(ca_cluster_start(s.c), CA_OK);
	CHECK_INT(s.calls, 1);
	CHECK(s.c == NULL);
	ca_config_fini(&cfg);
	ca_loop_free(loop);
}

/* --------------------------------------------- detector against a dead API */

struct run_until {
	struct ca_loop *loop;
	struct ca_cluster *cluster;
	unsigned min_attempts; /* stop once health shows this many (0: never) */
};

static unsigned attempts_of(const struct ca_cluster *c, struct ca_buf *h)
{
	ca_buf_reset(h);
	ca_cluster_health_json(c, h);
	const char *a = strstr(h->data, "\"attempts\":");
	return a ? (unsigned)strtoul(a + 11, NULL, 10) : 0;
}

static void until_tick(void *arg)
{
	struct run_until *u = arg;
	struct ca_buf h;
	ca_buf_init(&h, 0);
	if (u->min_attempts && u->cluster && attempts_of(u->cluster, &h) >= u->min_attempts)
		ca_loop_stop(u->loop);
	ca_buf_fini(&h);
}

static void stop_loop(void *arg)
{
	ca_loop_stop(arg);
}

/* Run the loop until the condition in u holds or limit_ms passed. */
static void run_loop(struct run_until *u, int64_t limit_ms)
{
	struct ca_loop_timer *tick = NULL, *limit = NULL;
	CHECK_INT(ca_loop_timer_new(u->loop, until_tick, u, &tick), CA_OK);
	CHECK_INT(ca_loop_timer_new(u->loop, stop_loop, u->loop, &limit), CA_OK);
	ca_loop_timer_start(tick, 5, 5);
	ca_loop_timer_start(limit, limit_ms, 0);
	ca_loop_run(u->loop);
	ca_loop_timer_free(tick);
	ca_loop_timer_free(limit);
}

/* A kubeconfig for https://127.0.0.1:port; returns its path in path. */
static bool write_kubeconfig(char *path, size_t pathlen, int port)
{
	snprintf(path, pathlen, "/tmp/test_cluster_kubeconfig_%d_%d", (int)getpid(), port);
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	fprintf(f, "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://127.0.0.1:%d\n"
	           "    insecure-skip-tls-verify: true\n  name: c\ncontexts:\n- context:\n    cluster: c\n"
	           "    user: u\n  name: x\ncurrent-context: x\nusers:\n- name: u\n  user:\n    token: t0k3n\n",
	        port);
	return fclose(f) == 0;
}

/* A loopback port that listens but never accepts (backlog only), or, with
 * close_it, a port that was just closed (refuses). */
static int loopback_port(int *fd_out, bool close_it)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (close_it) {
		close(fd);
		fd = -1;
	}
	*fd_out = fd;
	return ntohs(a.sin_port);
}

static void never_called(void *arg, const struct ca_cluster_info *info)
{
	(void)info;
	(*(int *)arg)++;
}

static struct ca_kube *kube_for_port(struct ca_loop *loop, int port, char *kcpath, size_t kclen,
                                     int64_t timeout_ms)
{
	if (!write_kubeconfig(kcpath, kclen, port))
		return NULL;
	struct ca_kube_options ko = { .kubeconfig = kcpath, .request_timeout_ms = timeout_ms,
		                      .connect_timeout_ms = timeout_ms, .user_agent = "test" };
	char err[512] = "";
	struct ca_kube *kube = NULL;
	enum ca_err rc = ca_kube_new(&kube, loop, &ko, err, sizeof err);
	CHECK_INT(rc, CA_OK);
	if (rc != CA_OK)
		fprintf(stderr, "ca_kube_new: %s\n", err);
	return kube;
}

static void test_api_unreachable(void)
{
	struct ca_loop *loop = NULL;
	CHECK_INT(ca_loop_new(&loop), CA_OK);
	struct ca_config cfg;
	memset(&cfg, 0, sizeof cfg);
	CHECK_INT(ca_config_init_defaults(&cfg), CA_OK);
	cfg.kubernetes.backoff_initial_ms = 10;
	cfg.kubernetes.backoff_max_ms = 20;
	unsetenv("CLUSTER_ID");
	setenv("NODE_NAME", "node-a", 1);
	int fd = -1;
	int port = loopback_port(&fd, true);
	CHECK(port > 0);
	char kc[256];
	struct ca_kube *kube = kube_for_port(loop, port, kc, sizeof kc, 2000);
	if (!kube)
		goto out;

	/* Refused: the whole detection is retried, never given up, and health
	 * says why. */
	int calls = 0;
	struct run_until u = { .loop = loop, .min_attempts = 3 };
	CHECK_INT(ca_cluster_new(&u.cluster, loop, kube, &cfg, NULL, never_called, &calls), CA_OK);
	CHECK_INT(ca_cluster_start(u.cluster), CA_OK);
	CHECK_INT(calls, 0); /* never synchronously with the API */
	run_loop(&u, 20000);
	struct ca_buf h;
	ca_buf_init(&h, 0);
	CHECK(attempts_of(u.cluster, &h) >= 3);
	CHECK(strstr(h.data, "Kubernetes API unavailable: GET /version") != NULL);
	CHECK(strstr(h.data, "\"id\":\"\"") != NULL);
	CHECK_INT(calls, 0);
	CHECK(ca_cluster_info(u.cluster) == NULL);
	ca_buf_fini(&h);
	ca_cluster_free(u.cluster);
out:
	ca_kube_free(kube);
	unlink(kc);
	unsetenv("NODE_NAME");
	ca_config_fini(&cfg);
	ca_loop_free(loop);
}

/* Free the detector while its request is in flight, before and after the
 * kube client: no use after free either way (valgrind/ASan check this). */
static void test_free_while_in_flight(void)
{
	for (int kube_first = 0; kube_first < 2; kube_first++) {
		struct ca_loop *loop = NULL;
		CHECK_INT(ca_loop_new(&loop), CA_OK);
		struct ca_config cfg;
		memset(&cfg, 0, sizeof cfg);
		CHECK_INT(ca_config_init_defaults(&cfg), CA_OK);
		unsetenv("CLUSTER_ID");
		int fd = -1;
		int port = loopback_port(&fd, false); /* listens, never answers */
		CHECK(port > 0);
		char kc[256];
		struct ca_kube *kube = kube_for_port(loop, port, kc, sizeof kc, 300);
		int calls = 0;
		struct run_until u = { .loop = loop };
		if (kube) {
			CHECK_INT(ca_cluster_new(&u.cluster, loop, kube, &cfg, NULL, never_called, &calls), CA_OK);
			CHECK_INT(ca_cluster_start(u.cluster), CA_OK);
			run_loop(&u, 50); /* the /version request is now in flight */
			if (kube_first) {
				ca_kube_free(kube);
				kube = NULL;
				ca_cluster_free(u.cluster);
			} else {
				ca_cluster_free(u.cluster);
				u.cluster = NULL;
				run_loop(&u, 1500); /* the request times out; its callback finds no cluster */
			}
			CHECK_INT(calls, 0);
		}
		ca_kube_free(kube);
		if (fd >= 0)
			close(fd);
		unlink(kc);
		ca_config_fini(&cfg);
		ca_loop_free(loop);
	}
}

/* -------------------------------------------------------------- the driver */

struct driver {
	struct ca_loop *loop;
	struct ca_cluster *cluster;
	int64_t deadline_ms;
	int64_t min_attempts;
	bool done;
};

static void driver_done(void *arg, const struct ca_cluster_info *info)
{
	struct driver *d = arg;
	(void)info;
	d->done = true;
}

static void driver_tick(void *arg)
{
	struct driver *d = arg;
	struct ca_buf h;
	ca_buf_init(&h, 0);
	ca_cluster_health_json(d->cluster, &h);
	bool gave_up = strstr(h.data, "\"last_error\":\"no cluster ID") != NULL;
	const char *a = strstr(h.data, "\"attempts\":");
	long attempts = a ? strtol(a + 11, NULL, 10) : 0;
	const struct ca_cluster_info *info = ca_cluster_info(d->cluster);
	bool version = info && info->kubernetes_version[0];
	ca_buf_fini(&h);
	/* Done: wait a moment for the background /version when env decided. */
	if ((d->done && (version || ca_now_monotonic_ms() > d->deadline_ms - 1500)) ||
	    (gave_up && attempts >= d->min_attempts) || ca_now_monotonic_ms() > d->deadline_ms)
		ca_loop_stop(d->loop);
}

/* test_cluster --detect [--cluster-id ID] [--timeout-ms N] [--min-attempts N] */
static int run_driver(int argc, char **argv)
{
	int rc = 2;
	const char *flag_id = NULL;
	int64_t timeout_ms = 20000, min_attempts = 1;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--cluster-id") == 0)
			flag_id = argv[i + 1];
		else if (strcmp(argv[i], "--timeout-ms") == 0)
			timeout_ms = strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--min-attempts") == 0)
			min_attempts = strtol(argv[i + 1], NULL, 10);
	}
	ca_log_configure(CA_LOG_DEBUG, true);
	struct ca_config cfg;
	memset(&cfg, 0, sizeof cfg);
	struct ca_config_flags flags = { .cluster_id = flag_id };
	char err[1024] = "";
	struct ca_loop *loop = NULL;
	struct ca_kube *kube = NULL;
	struct driver d = { 0 };
	if (ca_config_load(&cfg, &flags, NULL, err, sizeof err) != CA_OK) {
		fprintf(stderr, "config: %s\n", err);
		goto out;
	}
	if (ca_loop_new(&loop) != CA_OK)
		goto out;
	struct ca_kube_options ko = {
		.kubeconfig = cfg.kubernetes.kubeconfig,
		.context = cfg.kubernetes.context,
		.request_timeout_ms = cfg.kubernetes.request_timeout_ms,
		.connect_timeout_ms = cfg.kubernetes.connect_timeout_ms,
		.user_agent = "collect-agent/test-cluster",
	};
	enum ca_err kerr = ca_kube_new(&kube, loop, &ko, err, sizeof err);
	if (kerr != CA_OK) {
		fprintf(stderr, "kube: %s (%s): continuing without the API\n", ca_strerror(kerr), err);
		kube = NULL;
	}
	d.loop = loop;
	d.deadline_ms = ca_now_monotonic_ms() + timeout_ms;
	d.min_attempts = min_attempts;
	if (ca_cluster_new(&d.cluster, loop, kube, &cfg, flag_id, driver_done, &d) != CA_OK)
		goto out;
	struct ca_loop_timer *tick = NULL;
	if (ca_loop_timer_new(loop, driver_tick, &d, &tick) != CA_OK)
		goto out;
	ca_loop_timer_start(tick, 0, 20);
	if (ca_cluster_start(d.cluster) != CA_OK)
		goto out;
	ca_loop_run(loop);
	ca_loop_timer_free(tick);
	struct ca_buf h;
	ca_buf_init(&h, 0);
	ca_cluster_health_json(d.cluster, &h);
	printf("%s\n", h.data);
	fflush(stdout);
	ca_buf_fini(&h);
	rc = 0;
out:
	ca_kube_free(kube); /* first: drops a request still in flight */
	ca_cluster_free(d.cluster);
	ca_loop_free(loop);
	ca_config_fini(&cfg);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--detect") == 0)
		return run_driver(argc, argv);
	ca_log_configure(CA_LOG_ERROR, false);
	test_valid_id();
	test_normalize();
	test_aws_provider_id();
	test_provider_id_from_sample();
	test_gke_region();
	test_aks_resource_group();
	test_eks_tags();
	test_trimmed();
	test_static_sources();
	test_free_in_callback();
	test_api_unreachable();
	test_free_while_in_flight();
	return check_report();
}
