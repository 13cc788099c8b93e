/* cluster/cluster.c: the cluster-ID detector's state machine.
 *
 * One attempt walks cfg->cluster.detect from the first source. env and config
 * decide synchronously. The first source that needs the API fetches the
 * facts every later source shares (/version, then the agent's own Node) once
 * per attempt; each source then either decides, or records what it found
 * and hands over to the next. At most one request is in flight, so the
 * machine is a step index plus the continuation of the request in flight.
 *
 * An API failure (no answer, 401, 429, 5xx) ends the attempt and starts a new
 * one after a backoff, for ever: a source must not be skipped because the API
 * server was briefly away, or the agent would settle on a different ID than
 * it will find next time. Cloud metadata failures are not retried: they only
 * make that source hand over, because a metadata server that does not
 * answer in metadata_timeout is a metadata server that is not there. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/cluster_int.h"
#include "core/timeutil.h"
#include "kube/kobj.h"
#include "log/log.h"

#define COMPONENT "cluster"

#define FINDINGS_MAX 4096
#define METADATA_MAX_BODY (64 * 1024)
#define NODE_MAX_BODY (256 * 1024) /* a Node is 5 to 50 KiB; kube.h's budget counts this */
#define AWS_TOKEN_TTL_HEADER "X-aws-ec2-metadata-token-ttl-seconds: 21600"
#define NO_ID_RETRY_INITIAL_MS 10000
#define NO_ID_RETRY_MAX_MS (5 * 60 * 1000)
#define LABEL_EKSCTL "alpha.eksctl.io/cluster-name"
#define LABEL_AZURE_CLUSTER "kubernetes.azure.com/cluster"
#define LABEL_AZURE_PREFIX "kubernetes.azure.com/"
#define LABEL_REGION "topology.kubernetes.io/region"

enum source { SRC_ENV, SRC_CONFIG, SRC_EKS, SRC_GKE, SRC_AKS, SRC_NODE_LABELS, SRC_KUBE_SYSTEM_UID,
	      SRC_UNKNOWN };
static const char *const source_names[] = { "env", "config", "eks", "gke", "aks", "node-labels",
	                                    "kube-system-uid", "unknown" };

enum state { ST_IDLE, ST_DETECTING, ST_WAITING, ST_DONE };
static const char *const state_names[] = { "idle", "detecting", "waiting", "done" };

/* What a source step did. R_DONE: decided; the callback has run and the
 * cluster may be gone, so the caller must not touch it. */
enum outcome { R_NEXT, R_PENDING, R_DONE };

typedef void (*continuation)(struct ca_cluster *c, enum ca_err err, long status, const char *body,
                             size_t len);

/* The record a request in flight carries. The kube client offers no cancel
 * for one-shot requests, so ca_cluster_free() cannot take it back: it
 * detaches the record (c = NULL) onto the orphans list below, and the
 * response callback, if it ever comes, unlinks and frees it. If the kube
 * client is freed first it drops the callback, and the record stays on the
 * list: reachable, a few bytes, and never a use after free whichever of
 * the two the agent frees first. */
struct pending {
	struct ca_cluster *c;
	continuation next;
	struct pending *prev, *next_orphan;
};

/* Detached records of every detector in the process; several loops (tests)
 * may run detectors on different threads, hence the lock. */
static pthread_mutex_t orphans_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pending *orphans;

static void orphan_add(struct pending *p)
{
	pthread_mutex_lock(&orphans_lock);
	p->prev = NULL;
	p->next_orphan = orphans;
	if (orphans)
		orphans->prev = p;
	orphans = p;
	pthread_mutex_unlock(&orphans_lock);
}

static void orphan_remove(struct pending *p)
{
	pthread_mutex_lock(&orphans_lock);
	if (p->prev)
		p->prev->next_orphan = p->next_orphan;
	else if (orphans == p)
		orphans = p->next_orphan;
	if (p->next_orphan)
		p->next_orphan->prev = p->prev;
	pthread_mutex_unlock(&orphans_lock);
}

/* The agent's own Node, folded at once into what the sources use. */
struct node_facts {
	bool fetched;               /* this attempt asked (found or not) */
	bool found;
	char note[160];             /* why not found */
	char provider_id[256];
	char eksctl_cluster[256];   /* alpha.eksctl.io/cluster-name */
	char azure_cluster[256];    /* kubernetes.azure.com/cluster */
	bool azure_labels;          /* some kubernetes.azure.com/ label */
	char region[64];            /* topology.kubernetes.io/region */
	bool has_configured;        /* cluster.node_label_key present */
	char configured[256];
};

struct ca_cluster {
	struct ca_loop *loop;
	struct ca_kube *kube;
	const struct ca_config *cfg;
	ca_cluster_done_cb cb;
	void *cb_arg;
	char *flag_id, *env_id, *node_name;

	enum state state;
	size_t step;               /* index into cfg->cluster.detect */
	struct pending *pending;   /* request in flight, or NULL */
	struct ca_loop_timer *timer;
	unsigned attempts;
	unsigned api_failures;     /* in a row; backoff exponent */
	unsigned no_id_failures;   /* in a row */

	bool version_known;
	char git_version[64];
	struct node_facts node;

	/* Scratch of the source in progress. */
	char aws_token_header[600];
	char gke_name[256], gke_location[128], gke_uid[128];

	struct ca_buf findings;    /* "eks: ...; gke: ..." of the current attempt */
	struct ca_buf last_error;

	bool known;
	struct ca_cluster_info info;
};

static enum outcome run_source(struct ca_cluster *c, enum source src);
static void run(struct ca_cluster *c);

/* ----------------------------------------------------------------- helpers */

static enum source source_of(const char *name)
{
	for (int i = 0; i < SRC_UNKNOWN; i++)
		if (strcmp(name, source_names[i]) == 0)
			return (enum source)i;
	return SRC_UNKNOWN;
}

static enum source current_source(const struct ca_cluster *c)
{
	return source_of(c->cfg->cluster.detect.items[c->step]);
}

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

/* Record what the current source found ("eks: not EKS ...; "). A full
 * findings buffer just stops growing. */
static void note(struct ca_cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct ca_cluster *c, const char *fmt, ...)
{
	char text[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	const char *src = c->step < c->cfg->cluster.detect.count ? c->cfg->cluster.detect.items[c->step]
	                                                           : "?";
	(void)ca_buf_printf(&c->findings, "%s%s: %s", c->findings.len ? "; " : "", src, text);
	ca_log(CA_LOG_DEBUG, COMPONENT, "cluster ID source gave nothing", "source", src, "why", text, NULL);
}

static void set_last_error(struct ca_cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_last_error(struct ca_cluster *c, const char *fmt, ...)
{
	va_list ap;
	ca_buf_reset(&c->last_error);
	va_start(ap, fmt);
	(void)ca_buf_vprintf(&c->last_error, fmt, ap);
	va_end(ap);
}

/* A short description of a failed request for the findings. */
static void describe(char *out, size_t outlen, enum ca_err err, long status)
{
	if (err != CA_OK)
		snprintf(out, outlen, "%s", ca_strerror(err));
	else
		snprintf(out, outlen, "HTTP %ld", status);
}

/* An answer that says the API server is not usable right now, as opposed to
 * one that says "this object is not there / not for you". */
static bool api_unavailable(enum ca_err err, long status)
{
	return err != CA_OK || status == 401 || status == 429 || status >= 500;
}

/* Endpoint (without trailing '/') + path. False when it does not fit. */
static bool metadata_url(char *out, size_t outlen, const char *endpoint, const char *path)
{
	size_t n = strlen(endpoint);
	while (n > 0 && endpoint[n - 1] == '/')
		n--;
	if (n > (size_t)INT32_MAX)
		return false;
	int w = snprintf(out, outlen, "%.*s%s", (int)n, endpoint, path);
	return w > 0 && (size_t)w < outlen;
}

/* Node names are DNS subdomains; anything else never reaches a URL path. */
static bool valid_node_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.'))
			return false;
	}
	return true;
}

/* ---------------------------------------------------------------- requests */

static void on_response(void *arg, enum ca_err err, long status, const char *body, size_t len)
{
	struct pending *p = arg;
	struct ca_cluster *c = p->c;
	continuation next = p->next;
	if (!c) {
		/* The cluster was freed meanwhile. */
		orphan_remove(p);
		free(p);
		return;
	}
	free(p);
	c->pending = NULL;
	next(c, err, status, body, len);
}

/* Start a request whose answer goes to next. If it cannot even start, next
 * runs now with the error, so every path continues through next. The caller
 * must not touch c afterwards (next may have decided). */
static void issue(struct ca_cluster *c, const struct ca_kube_request *req, continuation next)
{
	struct pending *p = calloc(1, sizeof *p);
	enum ca_err err = CA_ENOMEM;
	if (p) {
		p->c = c;
		p->next = next;
		err = ca_kube_request(c->kube, req, on_response, p);
		if (err == CA_OK) {
			c->pending = p;
			return;
		}
		free(p);
	}
	next(c, err, 0, NULL, 0);
}

static void api_get(struct ca_cluster *c, const char *path, size_t max_body, continuation next)
{
	struct ca_kube_request req = { .path = path, .max_body = max_body };
	issue(c, &req, next);
}

static void metadata_get(struct ca_cluster *c, const char *method, const char *endpoint,
                         const char *path, const char *const *headers, continuation next)
{
	char url[1024];
	if (!metadata_url(url, sizeof url, endpoint, path)) {
		next(c, CA_ETOOBIG, 0, NULL, 0);
		return;
	}
	struct ca_kube_request req = {
		.method = method,
		.url = url,
		.headers = headers,
		.timeout_ms = c->cfg->cluster.metadata_timeout_ms,
		.max_body = METADATA_MAX_BODY,
	};
	issue(c, &req, next);
}

/* ------------------------------------------------------- attempts, results */

static void schedule(struct ca_cluster *c, int64_t delay_ms)
{
	ca_loop_timer_start(c->timer, delay_ms, 0);
}

/* The API did not answer usefully: end this attempt, try again later. */
static void api_down(struct ca_cluster *c, const char *what, enum ca_err err, long status)
{
	char why[64];
	describe(why, sizeof why, err, status);
	int64_t delay = ca_backoff_ms(c->api_failures, c->cfg->kubernetes.backoff_initial_ms,
	                              c->cfg->kubernetes.backoff_max_ms);
	if (c->api_failures < 64)
		c->api_failures++;
	c->state = ST_WAITING;
	set_last_error(c, "Kubernetes API unavailable: %s: %s; retrying detection in %lld ms", what, why,
	               (long long)delay);
	char delay_text[32];
	snprintf(delay_text, sizeof delay_text, "%lld", (long long)delay);
	ca_log(CA_LOG_WARN, COMPONENT, "cluster ID detection: Kubernetes API unavailable, will retry", "request",
	       what, "error", why, "retry_ms", delay_text, NULL);
	schedule(c, delay);
}

static void all_failed(struct ca_cluster *c)
{
	int64_t delay = ca_backoff_ms(c->no_id_failures, NO_ID_RETRY_INITIAL_MS, NO_ID_RETRY_MAX_MS);
	if (c->no_id_failures < 64)
		c->no_id_failures++;
	c->api_failures = 0;
	c->state = ST_WAITING;
	set_last_error(c, "no cluster ID: %s", c->findings.len ? c->findings.data : "no detection source configured");
	ca_log(CA_LOG_WARN, COMPONENT, c->last_error.data, NULL);
	schedule(c, delay);
}

static void on_bg_version(struct ca_cluster *c, enum ca_err err, long status, const char *body,
                          size_t len);

/* After env/config decided without the API, /version still belongs in the
 * info (AgentInfo.kubernetes_version); fetch it in the background. */
static void fetch_bg_version(struct ca_cluster *c)
{
	if (!c->kube || c->version_known)
		return;
	api_get(c, "/version", METADATA_MAX_BODY, on_bg_version);
}

/* Fill the info and report. Returns false (after noting why) when the name
 * gives no valid ID; true when decided: the callback has run and c may be
 * gone. */
static bool decide(struct ca_cluster *c, enum source src, const char *name, const char *provider,
                   const char *region, const char *uid)
{
	char id[CA_CLUSTER_ID_MAX + 1];
	if (src == SRC_ENV || src == SRC_CONFIG) {
		ca_strlcpy(id, name, sizeof id); /* validated by the caller */
	} else {
		ca_cluster_normalize_id(name, id, sizeof id);
		if (!ca_cluster_valid_id(id)) {
			note(c, "\"%.200s\" leaves no valid cluster ID", name);
			return false;
		}
	}
	struct ca_cluster_info *info = &c->info;
	memset(info, 0, sizeof *info);
	ca_strlcpy(info->id, id, sizeof info->id);
	ca_strlcpy(info->source, source_names[src], sizeof info->source);
	ca_strlcpy(info->provider, provider ? provider : "", sizeof info->provider);
	ca_strlcpy(info->region, region ? region : "", sizeof info->region);
	ca_strlcpy(info->cluster_uid, uid ? uid : "", sizeof info->cluster_uid);
	if (src != SRC_ENV && src != SRC_CONFIG && src != SRC_KUBE_SYSTEM_UID)
		ca_strlcpy(info->cluster_name, name, sizeof info->cluster_name);
	if (c->version_known)
		ca_strlcpy(info->kubernetes_version, c->git_version, sizeof info->kubernetes_version);
	c->known = true;
	c->state = ST_DONE;
	c->api_failures = 0;
	c->no_id_failures = 0;
	ca_buf_reset(&c->last_error);
	ca_loop_timer_stop(c->timer);
	ca_log(CA_LOG_DEBUG, COMPONENT, "cluster ID detected", "id", info->id, "source", info->source,
	       "provider", info->provider, "region", info->region, "cluster_name", info->cluster_name,
	       "skipped", c->findings.len ? c->findings.data : "", NULL);
	fetch_bg_version(c);
	/* Last: the callback may free c. */
	c->cb(c->cb_arg, info);
	return true;
}

/* The current source gave nothing (already noted): go on with the next. */
static void advance(struct ca_cluster *c)
{
	c->step++;
	run(c);
}

/* Region and provider for sources that do not name a cloud themselves. */
static void node_location(const struct ca_cluster *c, const char **provider, char *region, size_t regionlen)
{
	*provider = ca_cluster_provider_from_provider_id(c->node.provider_id);
	ca_strlcpy(region, c->node.region, regionlen);
	if (!region[0]) {
		char az[64];
		if (ca_cluster_aws_provider_id(c->node.provider_id, az, sizeof az, NULL, 0))
			ca_cluster_aws_region_from_zone(az, region, regionlen);
	}
}

/* -------------------------------------------------------------- API facts */

static void on_version(struct ca_cluster *c, enum ca_err err, long status, const char *body, size_t len)
{
	if (err != CA_OK || status != 200) {
		api_down(c, "GET /version", err, status);
		return;
	}
	struct ca_kobj *o = NULL;
	if (ca_kobj_parse(body, len, &o) != CA_OK) {
		api_down(c, "GET /version", CA_EPROTO, status);
		return;
	}
	const char *v = ca_kobj_str(o, "gitVersion");
	ca_strlcpy(c->git_version, v ? v : "", sizeof c->git_version);
	ca_kobj_free(o);
	c->version_known = true;
	run(c);
}

static void on_bg_version(struct ca_cluster *c, enum ca_err err, long status, const char *body,
                          size_t len)
{
	struct ca_kobj *o = NULL;
	if (err == CA_OK && status == 200 && ca_kobj_parse(body, len, &o) == CA_OK) {
		const char *v = ca_kobj_str(o, "gitVersion");
		ca_strlcpy(c->git_version, v ? v : "", sizeof c->git_version);
		ca_strlcpy(c->info.kubernetes_version, c->git_version, sizeof c->info.kubernetes_version);
		c->version_known = true;
		c->api_failures = 0;
		ca_kobj_free(o);
		return;
	}
	ca_kobj_free(o);
	/* Not worth an error in /health: the ID is known. Try again later. */
	schedule(c, ca_backoff_ms(c->api_failures, c->cfg->kubernetes.backoff_initial_ms,
	                          c->cfg->kubernetes.backoff_max_ms));
	if (c->api_failures < 64)
		c->api_failures++;
}

struct label_scan {
	struct node_facts *node;
	const char *configured_key;
};

static bool scan_label(void *arg, const char *key, const struct ca_kobj *value)
{
	struct label_scan *s = arg;
	const char *v = ca_kobj_str(value, NULL);
	if (!v)
		return true;
	if (strncmp(key, LABEL_AZURE_PREFIX, sizeof LABEL_AZURE_PREFIX - 1) == 0)
		s->node->azure_labels = true;
	if (strcmp(key, LABEL_EKSCTL) == 0)
		ca_strlcpy(s->node->eksctl_cluster, v, sizeof s->node->eksctl_cluster);
	else if (strcmp(key, LABEL_AZURE_CLUSTER) == 0)
		ca_strlcpy(s->node->azure_cluster, v, sizeof s->node->azure_cluster);
	else if (strcmp(key, LABEL_REGION) == 0)
		ca_strlcpy(s->node->region, v, sizeof s->node->region);
	if (s->configured_key && strcmp(key, s->configured_key) == 0) {
		s->node->has_configured = true;
		ca_strlcpy(s->node->configured, v, sizeof s->node->configured);
	}
	return true;
}

static void on_node(struct ca_cluster *c, enum ca_err err, long status, const char *body, size_t len)
{
	char what[300];
	snprintf(what, sizeof what, "GET node %s", c->node_name);
	if (api_unavailable(err, status)) {
		api_down(c, what, err, status);
		return;
	}
	c->node.fetched = true;
	struct ca_kobj *o = NULL;
	if (status != 200) {
		snprintf(c->node.note, sizeof c->node.note, "node %.100s: HTTP %ld", c->node_name, status);
	} else if (ca_kobj_parse(body, len, &o) != CA_OK) {
		snprintf(c->node.note, sizeof c->node.note, "node %.100s: not JSON", c->node_name);
	} else {
		c->node.found = true;
		const char *pid = ca_kobj_str(o, "spec.providerID");
		ca_strlcpy(c->node.provider_id, pid ? pid : "", sizeof c->node.provider_id);
		const char *key = c->cfg->cluster.node_label_key;
		struct label_scan s = { &c->node, key && *key ? key : NULL };
		ca_kobj_foreach(ca_kobj_get(o, "metadata.labels"), scan_label, &s);
	}
	ca_kobj_free(o);
	run(c);
}

/* ---------------------------------------------------------------------- EKS */

static enum outcome eks_fallback(struct ca_cluster *c, const char *why)
{
	if (c->node.eksctl_cluster[0]) {
		char region[64];
		const char *provider;
		node_location(c, &provider, region, sizeof region);
		if (decide(c, SRC_EKS, c->node.eksctl_cluster, "aws", region, NULL))
			return R_DONE;
		return R_NEXT;
	}
	if (c->node.found)
		note(c, "IMDS: %s; node %s has no label " LABEL_EKSCTL, why, c->node_name);
	else
		note(c, "IMDS: %s; own node unknown (%s)", why, c->node.note);
	return R_NEXT;
}

static void eks_fallback_and_go_on(struct ca_cluster *c, const char *why)
{
	if (eks_fallback(c, why) == R_NEXT)
		advance(c);
}

static void eks_decide_imds(struct ca_cluster *c, const char *name)
{
	char region[64];
	const char *provider;
	node_location(c, &provider, region, sizeof region);
	if (!decide(c, SRC_EKS, name, "aws", region, NULL))
		advance(c);
}

static void on_eks_tag_value(struct ca_cluster *c, enum ca_err err, long status, const char *body,
                             size_t len)
{
	char name[256], why[96];
	if (err != CA_OK || status != 200) {
		describe(why, sizeof why, err, status);
		char text[160];
		snprintf(text, sizeof text, "cluster-name tag: %s", why);
		eks_fallback_and_go_on(c, text);
		return;
	}
	if (!ca_cluster_trimmed(body, len, name, sizeof name)) {
		eks_fallback_and_go_on(c, "cluster-name tag is empty");
		return;
	}
	eks_decide_imds(c, name);
}

static void on_eks_tags(struct ca_cluster *c, enum ca_err err, long status, const char *body, size_t len)
{
	char why[96];
	if (err != CA_OK || status != 200) {
		describe(why, sizeof why, err, status);
		char text[200];
		snprintf(text, sizeof text, "instance tags: %s%s", why,
		         status == 404 ? " (tags not allowed in instance metadata)" : "");
		eks_fallback_and_go_on(c, text);
		return;
	}
	struct ca_cluster_eks_tags tags;
	ca_cluster_scan_eks_tags(body, len, &tags);
	const char *key = tags.aws_eks_cluster_name ? "aws:eks:cluster-name"
	                  : tags.eks_cluster_name   ? "eks:cluster-name"
	                                            : NULL;
	if (key) {
		char path[128];
		snprintf(path, sizeof path, "/latest/meta-data/tags/instance/%s", key);
		const char *headers[] = { c->aws_token_header, "Accept: */*", NULL };
		metadata_get(c, NULL, c->cfg->cluster.aws_metadata_endpoint, path, headers, on_eks_tag_value);
		return;
	}
	if (tags.cluster_tag_name[0]) {
		eks_decide_imds(c, tags.cluster_tag_name);
		return;
	}
	eks_fallback_and_go_on(c, "no EKS cluster tag among the instance tags");
}

static void on_eks_token(struct ca_cluster *c, enum ca_err err, long status, const char *body, size_t len)
{
	char token[512], why[96];
	if (err != CA_OK || status != 200) {
		describe(why, sizeof why, err, status);
		char text[160];
		snprintf(text, sizeof text, "token: %s", why);
		eks_fallback_and_go_on(c, text);
		return;
	}
	if (!ca_cluster_trimmed(body, len, token, sizeof token) || strpbrk(token, "\r\n")) {
		eks_fallback_and_go_on(c, "token: unusable answer");
		return;
	}
	snprintf(c->aws_token_header, sizeof c->aws_token_header, "X-aws-ec2-metadata-token: %s", token);
	const char *headers[] = { c->aws_token_header, "Accept: */*", NULL };
	metadata_get(c, NULL, c->cfg->cluster.aws_metadata_endpoint, "/latest/meta-data/tags/instance",
	             headers, on_eks_tags);
}

static enum outcome source_eks(struct ca_cluster *c)
{
	if (!strstr(c->git_version, "-eks-")) {
		note(c, "not EKS (gitVersion %s)", c->git_version[0] ? c->git_version : "unknown");
		return R_NEXT;
	}
	const char *headers[] = { AWS_TOKEN_TTL_HEADER, "Accept: */*", NULL };
	metadata_get(c, "PUT", c->cfg->cluster.aws_metadata_endpoint, "/latest/api/token", headers,
	             on_eks_token);
	return R_PENDING;
}

/* ---------------------------------------------------------------------- GKE */

static const char *const gke_headers[] = { "Metadata-Flavor: Google", "Accept: */*", NULL };

static void on_gke_uid(struct ca_cluster *c, enum ca_err err, long status, const char *body, size_t len)
{
	if (err != CA_OK || status != 200 || !ca_cluster_trimmed(body, len, c->gke_uid, sizeof c->gke_uid))
		c->gke_uid[0] = '\0';
	char region[64];
	ca_cluster_gke_region(c->gke_location, region, sizeof region);
	if (!decide(c, SRC_GKE, c->gke_name, "gcp", region, c->gke_uid))
		advance(c);
}

static void on_gke_location(struct ca_cluster *c, enum ca_err err, long status, const char *body,
                            size_t len)
{
	if (err != CA_OK || status != 200 ||
	    !ca_cluster_trimmed(body, len, c->gke_location, sizeof c->gke_location))
		c->gke_location[0] = '\0';
	metadata_get(c, NULL, c->cfg->cluster.gce_metadata_endpoint,
	             "/computeMetadata/v1/instance/attributes/cluster-uid", gke_headers, on_gke_uid);
}

static void on_gke_name(struct ca_cluster *c, enum ca_err err, long status, const char *body, size_t len)
{
	char why[96];
	if (err != CA_OK || status != 200) {
		describe(why, sizeof why, err, status);
		note(c, "metadata cluster-name: %s", why);
		advance(c);
		return;
	}
	if (!ca_cluster_trimmed(body, len, c->gke_name, sizeof c->gke_name)) {
		note(c, "metadata cluster-name is empty");
		advance(c);
		return;
	}
	metadata_get(c, NULL, c->cfg->cluster.gce_metadata_endpoint,
	             "/computeMetadata/v1/instance/attributes/cluster-location", gke_headers, on_gke_location);
}

static enum outcome source_gke(struct ca_cluster *c)
{
	if (!strstr(c->git_version, "-gke.")) {
		note(c, "not GKE (gitVersion %s)", c->git_version[0] ? c->git_version : "unknown");
		return R_NEXT;
	}
	c->gke_name[0] = c->gke_location[0] = c->gke_uid[0] = '\0';
	metadata_get(c, NULL, c->cfg->cluster.gce_metadata_endpoint,
	             "/computeMetadata/v1/instance/attributes/cluster-name", gke_headers, on_gke_name);
	return R_PENDING;
}

/* ---------------------------------------------------------------------- AKS */

/* Decide from an MC_<rg>_<cluster>_<location> string; false if it is not
 * one (or the name gives no ID, noted). */
static bool aks_decide_rg(struct ca_cluster *c, const char *rg, bool *decided)
{
	char cluster[256], location[64];
	*decided = false;
	if (!ca_cluster_aks_resource_group(rg, cluster, sizeof cluster, location, sizeof location))
		return false;
	*decided = decide(c, SRC_AKS, cluster, "azure", location, NULL);
	return true;
}

static void on_aks_imds(struct ca_cluster *c, enum ca_err err, long status, const char *body, size_t len)
{
	char imds[200];
	struct ca_kobj *o = NULL;
	if (err != CA_OK || status != 200) {
		char why[96];
		describe(why, sizeof why, err, status);
		snprintf(imds, sizeof imds, "IMDS: %s", why);
	} else if (ca_kobj_parse(body, len, &o) != CA_OK) {
		snprintf(imds, sizeof imds, "IMDS: not JSON");
	} else {
		const char *rg = ca_kobj_str(o, "resourceGroupName");
		char rgcopy[256];
		ca_strlcpy(rgcopy, rg ? rg : "", sizeof rgcopy);
		ca_kobj_free(o);
		o = NULL;
		bool decided;
		if (aks_decide_rg(c, rgcopy, &decided)) {
			if (!decided)
				advance(c);
			return;
		}
		snprintf(imds, sizeof imds, "IMDS resourceGroupName \"%.100s\" is not MC_<rg>_<cluster>_<location>",
		         rgcopy);
	}
	ca_kobj_free(o);
	bool decided;
	if (c->node.azure_cluster[0] && aks_decide_rg(c, c->node.azure_cluster, &decided)) {
		if (!decided)
			advance(c);
		return;
	}
	note(c, "%s; node label " LABEL_AZURE_CLUSTER " %s", imds,
	     c->node.azure_cluster[0] ? "is not MC_<rg>_<cluster>_<location>" : "absent");
	advance(c);
}

static enum outcome source_aks(struct ca_cluster *c)
{
	if (!c->node.azure_labels) {
		if (c->node.found)
			note(c, "not AKS (no " LABEL_AZURE_PREFIX " labels on node %s)", c->node_name);
		else
			note(c, "not AKS (own node unknown: %s)", c->node.note[0] ? c->node.note : "NODE_NAME not set");
		return R_NEXT;
	}
	static const char *const headers[] = { "Metadata: true", NULL };
	metadata_get(c, NULL, c->cfg->cluster.azure_metadata_endpoint,
	             "/metadata/instance/compute?api-version=2020-09-01&format=json", headers, on_aks_imds);
	return R_PENDING;
}

/* ------------------------------------------------------- labels, kube-system */

static enum outcome source_node_labels(struct ca_cluster *c)
{
	const char *key = c->cfg->cluster.node_label_key;
	if (!key || !*key) {
		note(c, "cluster.node_label_key is not set");
		return R_NEXT;
	}
	if (!c->node.found) {
		note(c, "own node unknown (%s)", c->node.note[0] ? c->node.note : "NODE_NAME not set");
		return R_NEXT;
	}
	if (!c->node.has_configured) {
		note(c, "node %s has no label %s", c->node_name, key);
		return R_NEXT;
	}
	const char *provider;
	char region[64];
	node_location(c, &provider, region, sizeof region);
	return decide(c, SRC_NODE_LABELS, c->node.configured, provider, region, NULL) ? R_DONE : R_NEXT;
}

static void on_kube_system(struct ca_cluster *c, enum ca_err err, long status, const char *body, size_t len)
{
	if (api_unavailable(err, status)) {
		api_down(c, "GET namespace kube-system", err, status);
		return;
	}
	if (status != 200) {
		note(c, "GET namespace kube-system: HTTP %ld", status);
		advance(c);
		return;
	}
	struct ca_kobj *o = NULL;
	char uid[128] = "";
	if (ca_kobj_parse(body, len, &o) == CA_OK) {
		const char *u = ca_kobj_str(o, "metadata.uid");
		ca_strlcpy(uid, u ? u : "", sizeof uid);
	}
	ca_kobj_free(o);
	if (!uid[0]) {
		note(c, "namespace kube-system has no metadata.uid");
		advance(c);
		return;
	}
	const char *provider;
	char region[64];
	node_location(c, &provider, region, sizeof region);
	if (!decide(c, SRC_KUBE_SYSTEM_UID, uid, provider, region, uid))
		advance(c);
}

/* ------------------------------------------------------------ the machine */

static enum outcome source_static(struct ca_cluster *c, enum source src)
{
	const char *cands[2];
	const char *labels[2];
	size_t n = 0;
	if (src == SRC_ENV) {
		cands[n] = c->flag_id, labels[n++] = "--cluster-id";
		cands[n] = c->env_id, labels[n++] = "CLUSTER_ID";
	} else {
		cands[n] = c->cfg->cluster.id, labels[n++] = "cluster.id";
	}
	bool any = false;
	for (size_t i = 0; i < n; i++) {
		if (!cands[i] || !*cands[i])
			continue;
		any = true;
		if (ca_cluster_valid_id(cands[i]))
			return decide(c, src, cands[i], "", "", NULL) ? R_DONE : R_NEXT;
		note(c, "%s \"%.100s\" is not a valid cluster ID (1 to 80 of a-z, 0-9, '-')", labels[i], cands[i]);
	}
	if (!any)
		note(c, src == SRC_ENV ? "neither --cluster-id nor CLUSTER_ID is set" : "cluster.id is empty");
	return R_NEXT;
}

static enum outcome run_source(struct ca_cluster *c, enum source src)
{
	if (src == SRC_ENV || src == SRC_CONFIG)
		return source_static(c, src);
	if (src == SRC_UNKNOWN) {
		note(c, "unknown source");
		return R_NEXT;
	}
	if (!c->kube) {
		note(c, "no Kubernetes credentials");
		return R_NEXT;
	}
	/* Facts every API source shares, once per attempt. */
	if (!c->version_known) {
		api_get(c, "/version", METADATA_MAX_BODY, on_version);
		return R_PENDING;
	}
	if (!c->node.fetched) {
		if (c->node_name && valid_node_name(c->node_name)) {
			char path[320];
			snprintf(path, sizeof path, "/api/v1/nodes/%s", c->node_name);
			api_get(c, path, NODE_MAX_BODY, on_node);
			return R_PENDING;
		}
		c->node.fetched = true;
		snprintf(c->node.note, sizeof c->node.note, "%s",
		         c->node_name ? "NODE_NAME is not a node name" : "NODE_NAME not set");
	}
	switch (src) {
	case SRC_EKS:
		return source_eks(c);
	case SRC_GKE:
		return source_gke(c);
	case SRC_AKS:
		return source_aks(c);
	case SRC_NODE_LABELS:
		return source_node_labels(c);
	case SRC_KUBE_SYSTEM_UID:
		api_get(c, "/api/v1/namespaces/kube-system", NODE_MAX_BODY, on_kube_system);
		return R_PENDING;
	default:
		return R_NEXT;
	}
}

/* Walk the sources from c->step until one decides or waits for an answer. */
static void run(struct ca_cluster *c)
{
	while (c->step < c->cfg->cluster.detect.count) {
		enum outcome r = run_source(c, current_source(c));
		if (r != R_NEXT)
			return; /* R_DONE: c may be gone */
		c->step++;
	}
	all_failed(c);
}

static void start_attempt(struct ca_cluster *c)
{
	if (c->attempts < UINT32_MAX)
		c->attempts++;
	c->state = ST_DETECTING;
	c->step = 0;
	c->version_known = false;
	c->git_version[0] = '\0';
	memset(&c->node, 0, sizeof c->node);
	ca_buf_reset(&c->findings);
	run(c);
}

static void on_timer(void *arg)
{
	struct ca_cluster *c = arg;
	if (c->pending)
		return; /* cannot happen: one request or one timer at a time */
	if (c->state == ST_DONE)
		fetch_bg_version(c);
	else
		start_attempt(c);
}

/* ------------------------------------------------------------------ public */

enum ca_err ca_cluster_new(struct ca_cluster **out, struct ca_loop *loop, struct ca_kube *kube,
                           const struct ca_config *cfg, const char *flag_cluster_id,
                           ca_cluster_done_cb cb, void *arg)
{
	enum ca_err err = CA_EINVAL;
	struct ca_cluster *c = NULL;
	if (!out)
		return CA_EINVAL;
	*out = NULL;
	if (!loop || !cfg || !cb)
		goto out;
	err = CA_ENOMEM;
	if (!(c = calloc(1, sizeof *c)))
		goto out;
	c->loop = loop;
	c->kube = kube;
	c->cfg = cfg;
	c->cb = cb;
	c->cb_arg = arg;
	ca_buf_init(&c->findings, FINDINGS_MAX);
	ca_buf_init(&c->last_error, FINDINGS_MAX + 256);
	const char *env_id = getenv("CLUSTER_ID");
	const char *node = getenv("NODE_NAME");
	if ((flag_cluster_id && *flag_cluster_id && !(c->flag_id = dup_or_null(flag_cluster_id))) ||
	    (env_id && *env_id && !(c->env_id = dup_or_null(env_id))) ||
	    (node && *node && !(c->node_name = dup_or_null(node))))
		goto out;
	if ((err = ca_loop_timer_new(loop, on_timer, c, &c->timer)) != CA_OK)
		goto out;
	*out = c;
	c = NULL;
	err = CA_OK;
out:
	ca_cluster_free(c);
	return err;
}

enum ca_err ca_cluster_start(struct ca_cluster *c)
{
	if (!c || c->state != ST_IDLE)
		return CA_EINVAL;
	start_attempt(c); /* may decide, call back and free c */
	return CA_OK;
}

const struct ca_cluster_info *ca_cluster_info(const struct ca_cluster *c)
{
	return c && c->known ? &c->info : NULL;
}

static void json_field(struct ca_buf *out, const char *key, const char *value)
{
	(void)ca_buf_printf(out, ",\"%s\":", key);
	ca_buf_append_json_string(out, value ? value : "");
}

void ca_cluster_health_json(const struct ca_cluster *c, struct ca_buf *out)
{
	if (!c) {
		(void)ca_buf_append_str(out, "{}");
		return;
	}
	const struct ca_cluster_info *i = &c->info;
	(void)ca_buf_printf(out, "{\"state\":\"%s\"", state_names[c->state]);
	json_field(out, "id", i->id);
	json_field(out, "source", i->source);
	json_field(out, "provider", i->provider);
	json_field(out, "region", i->region);
	json_field(out, "cluster_uid", i->cluster_uid);
	json_field(out, "cluster_name", i->cluster_name);
	json_field(out, "kubernetes_version", c->known ? i->kubernetes_version : c->git_version);
	(void)ca_buf_printf(out, ",\"attempts\":%u", c->attempts);
	json_field(out, "last_error", c->last_error.len ? c->last_error.data : "");
	json_field(out, "findings", c->findings.len ? c->findings.data : "");
	(void)ca_buf_append_str(out, "}");
}

void ca_cluster_free(struct ca_cluster *c)
{
	if (!c)
		return;
	if (c->pending) {
		c->pending->c = NULL;
		orphan_add(c->pending);
	}
	ca_loop_timer_free(c->timer);
	ca_buf_fini(&c->findings);
	ca_buf_fini(&c->last_error);
	free(c->flag_id);
	free(c->env_id);
	free(c->node_name);
	free(c);
}

/* ------------------------------------------------------------------------ */
/* The module table (core/module.h) */

static void module_health(const void *self, struct ca_module_health *out)
{
	const struct ca_cluster *c = self;
	if (c->known)
		return;
	out->ready = false;
	ca_set_err(out->reason, sizeof out->reason, "cluster ID unknown%s%s",
	           c->last_error.len ? ": " : "", c->last_error.len ? c->last_error.data : "");
}

static void module_health_json(const void *self, struct ca_buf *out)
{
	ca_cluster_health_json(self, out);
}

const struct ca_module_ops ca_cluster_module = {
	.name = "cluster",
	.health = module_health,
	.health_json = module_health_json,
};
