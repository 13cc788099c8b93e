/* ha/ha.c: leader election on a Lease (ha/ha.h, docs/HA.md).
 *
 * One timer drives the election: every retry_period it either renews (the
 * leader, straight from the Lease it wrote last, as client-go's fast path)
 * or reads the Lease and acts on ca_ha_decide(). One request is in flight
 * at a time; a leader whose renew deadline passes steps down at once and
 * cancels that request, so an answer arriving after the deadline is never
 * taken as leadership. */
#include "ha/ha.h"

#include <jansson.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/timeutil.h"
#include "log/log.h"

#define COMPONENT "ha"
#define LEASE_API "/apis/coordination.k8s.io/v1"
#define ANNOTATION_KEY_MAX 128
#define ANNOTATION_VALUE_MAX 128

enum request_kind { REQ_NONE = 0, REQ_GET, REQ_CREATE, REQ_UPDATE, REQ_RELEASE, REQ_RELEASE_GET };

struct annotation {
	char key[ANNOTATION_KEY_MAX + 1];
	char value[ANNOTATION_VALUE_MAX + 1];
};

struct ca_ha {
	struct ca_loop *loop;
	struct ca_kube *kube;
	int64_t lease_duration_ms, renew_deadline_ms, retry_period_ms, checkpoint_interval_ms;
	int64_t request_timeout_ms;
	char identity[CA_HA_IDENTITY_MAX];
	char lease_namespace[64];
	char lease_name[254];
	char collection[384]; /* .../namespaces/<ns>/leases */
	char object[640];     /* .../leases/<name> */
	struct ca_ha_callbacks cbs;
	void *arg;

	struct ca_loop_timer *timer;
	struct ca_kube_xfer *xfer; /* the request in flight */
	enum request_kind kind;
	bool carries_checkpoint; /* the update in flight writes the annotations */
	bool started, stopping;
	void (*released)(void *arg);
	void *released_arg;
	int64_t release_deadline_ms; /* monotonic: the release's requests end by then */
	bool release_retried;        /* its one retry after a 409 is used */

	json_t *lease; /* as last read or written; NULL: none */
	bool have_record;
	struct ca_ha_record observed;
	int64_t observed_ms; /* monotonic: when observed last changed */

	bool leading;
	int64_t last_renew_ms; /* monotonic, of the last acquire or renew */
	int64_t last_checkpoint_ms;

	struct annotation *pending;
	size_t npending, max_pending;
	size_t max_lease_bytes;

	bool read_denied, write_denied; /* readiness: the Lease cannot be read / written */
	struct ca_ha_stats st;
};

/* ------------------------------------------------------------ pure parts */

static const char *json_str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

enum ca_err ca_ha_parse_record(const char *text, size_t len, struct ca_ha_record *out)
{
	memset(out, 0, sizeof *out);
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	enum ca_err rc = CA_EPROTO;
	if (!json_is_object(root) || strcmp(json_str(root, "kind"), "Lease") != 0)
		goto out;
	const json_t *spec = json_object_get(root, "spec");
	if (spec && !json_is_object(spec))
		goto out;
	if (ca_strlcpy(out->holder, json_str(spec, "holderIdentity"), sizeof out->holder) !=
	    CA_OK) {
		/* Longer than any identity of ours: someone else's. Keep it
		 * different from every identity we could have. */
		out->holder[sizeof out->holder - 2] = '~';
		out->holder[sizeof out->holder - 1] = '\0';
	}
	/* Both are int32 in the API; clamped so that no arithmetic on them
	 * can overflow whatever a server sends. */
	json_int_t d = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
	json_int_t t = json_integer_value(json_object_get(spec, "leaseTransitions"));
	out->lease_duration_s = d < 0 ? 0 : d > INT32_MAX ? INT32_MAX : d;
	out->transitions = t < 0 ? 0 : t > INT32_MAX ? INT32_MAX : t;
	ca_strlcpy(out->acquire_time, json_str(spec, "acquireTime"), sizeof out->acquire_time);
	ca_strlcpy(out->renew_time, json_str(spec, "renewTime"), sizeof out->renew_time);
	rc = CA_OK;
out:
	json_decref(root);
	return rc;
}

int64_t ca_ha_observe(const struct ca_ha_record *prev, const struct ca_ha_record *rec,
                      int64_t observed_ms, int64_t now_ms)
{
	if (!prev || strcmp(prev->holder, rec->holder) != 0 ||
	    prev->lease_duration_s != rec->lease_duration_s ||
	    prev->transitions != rec->transitions ||
	    strcmp(prev->acquire_time, rec->acquire_time) != 0 ||
	    strcmp(prev->renew_time, rec->renew_time) != 0)
		return now_ms;
	return observed_ms;
}

enum ca_ha_action ca_ha_decide(const struct ca_ha_record *rec, int64_t observed_ms, int64_t now_ms,
                               const char *identity, int64_t *transitions)
{
	int64_t t = 0;
	enum ca_ha_action action;
	if (!rec) {
		action = CA_HA_CREATE;
	} else if (strcmp(rec->holder, identity) == 0) {
		action = CA_HA_RENEW;
		t = rec->transitions;
	} else if (rec->holder[0] && observed_ms + rec->lease_duration_s * 1000 > now_ms) {
		action = CA_HA_WAIT;
		t = rec->transitions;
	} else {
		action = CA_HA_ACQUIRE;
		t = rec->transitions < INT32_MAX ? rec->transitions + 1 : rec->transitions;
	}
	if (transitions)
		*transitions = t < 0 ? 0 : t;
	return action;
}

void ca_ha_default_lease_name(const char *cluster_id, char *out, size_t outlen)
{
	static const char prefix[] = "collect-agent-";
	size_t max = outlen - 1 < 253 ? outlen - 1 : 253;
	size_t n = 0;
	if (outlen == 0)
		return;
	for (const char *p = prefix; *p && n < max; p++)
		out[n++] = *p;
	for (const unsigned char *p = (const unsigned char *)(cluster_id ? cluster_id : "");
	     *p && n < max; p++) {
		char c = (char)*p;
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && c != '.')
			c = '-';
		/* Separators never follow one another: "a..b", "a.-b" and
		 * "a-.b" are not valid names, and "--" reads badly. */
		if (!alnum && (out[n - 1] == '-' || out[n - 1] == '.'))
			continue;
		out[n++] = c;
	}
	while (n > 0 && (out[n - 1] == '-' || out[n - 1] == '.'))
		n--;
	out[n] = '\0';
}

void ca_ha_identity(const char *pod_name, const char *hostname, long pid, char *out, size_t outlen)
{
	if (pod_name && *pod_name)
		snprintf(out, outlen, "%s", pod_name);
	else
		snprintf(out, outlen, "%s_%ld", hostname && *hostname ? hostname : "unknown", pid);
}

/* ------------------------------------------------------------ the Lease */

/* MicroTime: RFC 3339 with exactly six fractional digits (the server
 * refuses other widths). */
static void micro_time(int64_t unix_ms, char out[48])
{
	char t[CA_RFC3339_LEN];
	ca_format_rfc3339(unix_ms - unix_ms % 1000, t);
	const char *dot = strchr(t, '.');
	int head = dot ? (int)(dot - t) : 19;
	snprintf(out, 48, "%.*s.%06dZ", head, t, (int)(unix_ms % 1000) * 1000);
}

static void set_error(struct ca_ha *ha, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct ca_ha *ha, const char *fmt, ...)
{
	char msg[sizeof ha->st.last_error];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	ha->st.errors++;
	/* Once per new error, not every retry_period. */
	if (strcmp(msg, ha->st.last_error) != 0)
		ca_log(CA_LOG_WARN, COMPONENT, "Lease request failed", "lease_namespace",
		       ha->lease_namespace, "lease", ha->lease_name, "error", msg, NULL);
	ca_strlcpy(ha->st.last_error, msg, sizeof ha->st.last_error);
}

static void status_message(const char *body, size_t len, char *out, size_t outlen)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	const char *m = json_string_value(json_object_get(root, "message"));
	snprintf(out, outlen, "%s", m ? m : "(no Status message)");
	json_decref(root);
}

static void set_http_error(struct ca_ha *ha, const char *what, enum ca_err err, long status,
                           const char *body, size_t len)
{
	char msg[200];
	if (err != CA_OK) {
		set_error(ha, "%s %s/%s: %s", what, ha->lease_namespace, ha->lease_name,
		          ca_strerror(err));
		return;
	}
	status_message(body, len, msg, sizeof msg);
	set_error(ha, "%s %s/%s: HTTP %ld: %s", what, ha->lease_namespace, ha->lease_name, status,
	          msg);
}

static void stop_leading(struct ca_ha *ha, const char *why)
{
	if (!ha->leading)
		return;
	ha->leading = false;
	ha->st.leading = false;
	ha->st.step_downs++;
	/* What was to be written belongs to this term: a later term starts
	 * from what the Lease holds then (another leader's newer point). */
	ha->npending = 0;
	ca_kube_request_cancel(ha->xfer);
	ha->xfer = NULL;
	ha->kind = REQ_NONE;
	ca_log(CA_LOG_WARN, COMPONENT, "stopped leading", "lease_namespace", ha->lease_namespace,
	       "lease", ha->lease_name, "reason", why, NULL);
	if (ha->cbs.on_stopped_leading)
		ha->cbs.on_stopped_leading(ha->arg, why);
}

static void on_response(void *arg, enum ca_err err, long status, const char *body, size_t len);

static enum ca_err send(struct ca_ha *ha, enum request_kind kind, const char *method,
                        const char *path, const char *body)
{
	static const char *const headers[] = {"Content-Type: application/json",
	                                      "Accept: application/json", NULL};
	struct ca_kube_request req = {
	        .method = method,
	        .path = path,
	        .headers = headers,
	        .body = body,
	        .body_len = body ? strlen(body) : 0,
	        /* An answer later than the renew deadline is of no use; a
	         * release and its retry share one request timeout. */
	        .timeout_ms = kind == REQ_RELEASE || kind == REQ_RELEASE_GET
	                              ? ha->release_deadline_ms - ca_now_monotonic_ms()
	                      : ha->renew_deadline_ms > ha->request_timeout_ms
	                              ? ha->request_timeout_ms
	                              : ha->renew_deadline_ms,
	        .max_body = ha->max_lease_bytes,
	};
	enum ca_err rc = ca_kube_request_start(ha->kube, &req, on_response, ha, &ha->xfer);
	if (rc != CA_OK) {
		ha->xfer = NULL;
		set_error(ha, "cannot start a Lease request: %s", ca_strerror(rc));
		return rc;
	}
	ha->kind = kind;
	return CA_OK;
}

static void send_get(struct ca_ha *ha)
{
	send(ha, REQ_GET, "GET", ha->object, NULL);
}

/* The spec client-go writes (LeaderElectionRecordToLeaseSpec). */
static json_t *lease_spec(const char *holder, int64_t duration_s, int64_t transitions,
                          const char *acquire_time, const char *renew_time)
{
	return json_pack("{s:s, s:I, s:s, s:s, s:I}", "holderIdentity", holder,
	                 "leaseDurationSeconds", (json_int_t)duration_s, "acquireTime",
	                 acquire_time, "renewTime", renew_time, "leaseTransitions",
	                 (json_int_t)transitions);
}

static enum ca_err apply_annotations(const struct ca_ha *ha, json_t *lease)
{
	if (ha->npending == 0)
		return CA_OK;
	json_t *meta = json_object_get(lease, "metadata");
	if (!json_is_object(meta))
		return CA_EPROTO;
	json_t *ann = json_object_get(meta, "annotations");
	if (!json_is_object(ann)) {
		ann = json_object();
		if (!ann || json_object_set_new(meta, "annotations", ann) != 0)
			return CA_ENOMEM;
	}
	for (size_t i = 0; i < ha->npending; i++)
		if (json_object_set_new(ann, ha->pending[i].key,
		                        json_string(ha->pending[i].value)) != 0)
			return CA_ENOMEM;
	return CA_OK;
}

/* PUT the Lease we read, with a new spec: its metadata (resourceVersion
 * for optimistic concurrency, labels and annotations others wrote) kept,
 * as client-go's LeaseLock.Update does. The tree is changed in place (no
 * copy, half the memory): decisions use the parsed record, never the tree,
 * and every answer replaces the tree. */
static void send_update(struct ca_ha *ha, enum request_kind kind, const char *holder,
                        int64_t duration_s, int64_t transitions, bool keep_acquire_time,
                        bool with_annotations)
{
	char now[48];
	char *body = NULL;
	micro_time(ca_now_unix_ms(), now);
	const char *acquired =
	        keep_acquire_time && ha->observed.acquire_time[0] ? ha->observed.acquire_time : now;
	if (!ha->lease)
		return;
	json_t *spec = lease_spec(holder, duration_s, transitions, acquired, now);
	if (!spec || json_object_set_new(ha->lease, "spec", spec) != 0) {
		set_error(ha, "cannot build the Lease update: out of memory");
		return;
	}
	if (with_annotations && apply_annotations(ha, ha->lease) != CA_OK) {
		set_error(ha, "cannot add the checkpoint to the Lease update");
		return;
	}
	json_object_del(ha->lease, "status");
	body = json_dumps(ha->lease, JSON_COMPACT);
	if (!body) {
		set_error(ha, "cannot encode the Lease update");
		return;
	}
	if (send(ha, kind, "PUT", ha->object, body) == CA_OK)
		ha->carries_checkpoint = with_annotations && ha->npending > 0;
	free(body);
}

static void send_create(struct ca_ha *ha)
{
	char now[48];
	micro_time(ca_now_unix_ms(), now);
	json_t *obj = json_pack(
	        "{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", "coordination.k8s.io/v1", "kind",
	        "Lease", "metadata", "name", ha->lease_name, "namespace", ha->lease_namespace,
	        "spec", lease_spec(ha->identity, ha->lease_duration_ms / 1000, 0, now, now));
	char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	if (!body)
		set_error(ha, "cannot encode the new Lease: out of memory");
	else
		send(ha, REQ_CREATE, "POST", ha->collection, body);
	free(body);
	json_decref(obj);
}

/* A Lease in an answer: kept as the one to write next. */
static enum ca_err take_lease(struct ca_ha *ha, const char *body, size_t len, int64_t now)
{
	struct ca_ha_record rec;
	if (ca_ha_parse_record(body, len, &rec) != CA_OK)
		return CA_EPROTO;
	json_t *lease = json_loadb(body, len, 0, NULL);
	if (!json_is_object(lease) || !json_is_object(json_object_get(lease, "metadata"))) {
		json_decref(lease);
		return CA_EPROTO;
	}
	json_decref(ha->lease);
	ha->lease = lease;
	ha->observed_ms =
	        ca_ha_observe(ha->have_record ? &ha->observed : NULL, &rec, ha->observed_ms, now);
	ha->observed = rec;
	ha->have_record = true;
	ca_strlcpy(ha->st.holder, rec.holder, sizeof ha->st.holder);
	ha->st.transitions = rec.transitions;
	return CA_OK;
}

static void act(struct ca_ha *ha, int64_t now)
{
	int64_t transitions = 0;
	enum ca_ha_action a = ca_ha_decide(ha->have_record ? &ha->observed : NULL, ha->observed_ms,
	                                   now, ha->identity, &transitions);
	switch (a) {
	case CA_HA_WAIT:
		if (ha->leading) {
			char why[CA_HA_IDENTITY_MAX + 64];
			snprintf(why, sizeof why, "the Lease is held by %s", ha->observed.holder);
			stop_leading(ha, why);
		}
		break;
	case CA_HA_CREATE:
		send_create(ha);
		break;
	case CA_HA_ACQUIRE:
		send_update(ha, REQ_UPDATE, ha->identity, ha->lease_duration_ms / 1000, transitions,
		            false, false);
		break;
	case CA_HA_RENEW:
		send_update(ha, REQ_UPDATE, ha->identity, ha->lease_duration_ms / 1000, transitions,
		            true, ha->leading);
		break;
	}
}

static void became_holder(struct ca_ha *ha, int64_t now)
{
	ha->last_renew_ms = now;
	ha->st.last_renew_unix_ms = ca_now_unix_ms();
	if (ha->carries_checkpoint) {
		ha->st.checkpoints++;
		ha->last_checkpoint_ms = now;
	}
	ha->carries_checkpoint = false;
	if (ha->leading)
		return;
	ha->leading = true;
	ha->st.leading = true;
	ha->st.acquisitions++;
	ha->last_checkpoint_ms = now;
	char t[32];
	snprintf(t, sizeof t, "%lld", (long long)ha->observed.transitions);
	ca_log(CA_LOG_INFO, COMPONENT, "started leading", "lease_namespace", ha->lease_namespace,
	       "lease", ha->lease_name, "identity", ha->identity, "transitions", t, NULL);
	if (ha->cbs.on_started_leading)
		ha->cbs.on_started_leading(ha->arg);
}

/* A release is worth one retry: a renew cancelled by the release may
 * have been applied already, so the release's resourceVersion is stale
 * (409). Read the Lease again and, still ours, release that one. Both
 * requests share the release's deadline. */
static bool release_retry(struct ca_ha *ha, enum request_kind kind, enum ca_err err, long status,
                          const char *body, size_t len, int64_t now)
{
	if (ha->release_deadline_ms - now < 100)
		return false;
	if (kind == REQ_RELEASE && err == CA_OK && status == 409 && !ha->release_retried) {
		ha->release_retried = true;
		return send(ha, REQ_RELEASE_GET, "GET", ha->object, NULL) == CA_OK;
	}
	if (kind == REQ_RELEASE_GET && err == CA_OK && status == 200 &&
	    take_lease(ha, body, len, now) == CA_OK &&
	    strcmp(ha->observed.holder, ha->identity) == 0) {
		send_update(ha, REQ_RELEASE, "", 1, ha->observed.transitions, false, true);
		return ha->xfer != NULL;
	}
	return false;
}

static void release_answered(struct ca_ha *ha, enum request_kind kind, enum ca_err err, long status,
                             const char *body, size_t len, int64_t now)
{
	if (release_retry(ha, kind, err, status, body, len, now))
		return;
	if (kind == REQ_RELEASE && err == CA_OK && status == 200)
		ca_log(CA_LOG_INFO, COMPONENT, "released the Lease", "lease_namespace",
		       ha->lease_namespace, "lease", ha->lease_name, NULL);
	else if (kind == REQ_RELEASE_GET && err == CA_OK && status == 200 &&
	         strcmp(ha->observed.holder, ha->identity) != 0)
		ca_log(CA_LOG_INFO, COMPONENT, "not releasing the Lease: another replica holds it",
		       "holder", ha->observed.holder, NULL);
	else
		set_http_error(ha, kind == REQ_RELEASE ? "release of" : "GET before releasing", err,
		               status, body, len);
	ha->leading = ha->st.leading = false;
	void (*done)(void *) = ha->released;
	ha->released = NULL;
	if (done)
		done(ha->released_arg);
}

static void on_response(void *arg, enum ca_err err, long status, const char *body, size_t len)
{
	struct ca_ha *ha = arg;
	enum request_kind kind = ha->kind;
	int64_t now = ca_now_monotonic_ms();
	ha->xfer = NULL;
	ha->kind = REQ_NONE;

	if (kind == REQ_RELEASE || kind == REQ_RELEASE_GET) {
		release_answered(ha, kind, err, status, body, len, now);
		return;
	}
	if (ha->stopping)
		return;
	bool write = kind != REQ_GET;
	const char *what = kind == REQ_GET ? "GET" : kind == REQ_CREATE ? "create of" : "update of";
	if (err != CA_OK) {
		set_http_error(ha, what, err, status, body, len);
		ha->carries_checkpoint = false;
		return;
	}
	if ((kind == REQ_GET && status == 200) ||
	    (kind == REQ_UPDATE && (status == 200 || status == 201)) ||
	    (kind == REQ_CREATE && (status == 201 || status == 200))) {
		if (take_lease(ha, body, len, now) != CA_OK) {
			set_error(ha, "%s %s/%s: the answer is not a Lease", what,
			          ha->lease_namespace, ha->lease_name);
			return;
		}
		ha->read_denied = false;
		if (write) {
			ha->write_denied = false;
			ha->st.last_error[0] = '\0';
			if (strcmp(ha->observed.holder, ha->identity) == 0)
				became_holder(ha, now);
			return;
		}
		act(ha, now);
		return;
	}
	ha->carries_checkpoint = false;
	if (status == 409) {
		/* Another replica wrote first (Conflict on update, AlreadyExists
		 * on create): read what won. */
		ha->st.conflicts++;
		send_get(ha);
		return;
	}
	if (kind == REQ_GET && status == 404) {
		ha->read_denied = false;
		if (ha->leading)
			stop_leading(ha, "the Lease was deleted");
		json_decref(ha->lease);
		ha->lease = NULL;
		ha->have_record = false;
		ha->st.holder[0] = '\0';
		act(ha, now);
		return;
	}
	if (kind == REQ_UPDATE && status == 404) {
		send_get(ha); /* deleted meanwhile: read, then create */
		return;
	}
	set_http_error(ha, what, err, status, body, len);
	if (status == 401 || status == 403 ||
	    (write && (status == 400 || status == 404 || status == 422))) {
		if (write)
			ha->write_denied = true;
		else
			ha->read_denied = true;
	}
}

static void on_timer(void *arg)
{
	struct ca_ha *ha = arg;
	int64_t now = ca_now_monotonic_ms();
	if (ha->stopping)
		return;
	if (ha->leading && now - ha->last_renew_ms > ha->renew_deadline_ms) {
		char why[400];
		snprintf(why, sizeof why, "could not renew the Lease within ha.renew_deadline%s%s",
		         ha->st.last_error[0] ? ": " : "", ha->st.last_error);
		stop_leading(ha, why);
	}
	if (ha->xfer)
		return; /* one request at a time; the deadline above still holds */
	bool valid =
	        ha->have_record && ha->observed_ms + ha->observed.lease_duration_s * 1000 > now;
	if (ha->leading && ha->lease && valid) {
		bool due = now - ha->last_checkpoint_ms >= ha->checkpoint_interval_ms;
		if (due && ha->cbs.checkpoint)
			ha->cbs.checkpoint(ha->arg);
		send_update(ha, REQ_UPDATE, ha->identity, ha->lease_duration_ms / 1000,
		            ha->observed.transitions, true, true);
		return;
	}
	send_get(ha);
}

/* ------------------------------------------------------------ lifecycle */

enum ca_err ca_ha_new(struct ca_ha **out, struct ca_loop *loop, struct ca_kube *kube,
                      const struct ca_config *cfg, const char *identity,
                      const char *lease_namespace, const char *lease_name,
                      const struct ca_ha_callbacks *cbs, void *arg, char *err, size_t errlen)
{
	*out = NULL;
	if (!identity || !*identity ||
	    !ca_config_valid_namespace(lease_namespace ? lease_namespace : "") ||
	    !ca_config_valid_subdomain(lease_name ? lease_name : "")) {
		ca_set_err(err, errlen, "ha: the Lease %s/%s is not a valid namespace and name",
		           lease_namespace ? lease_namespace : "", lease_name ? lease_name : "");
		return CA_EINVAL;
	}
	struct ca_ha *ha = calloc(1, sizeof *ha);
	if (ha) {
		ha->max_pending = ca_ha_max_annotations(cfg);
		ha->max_lease_bytes = ca_ha_max_lease_bytes(cfg);
	}
	if (!ha || !(ha->pending = calloc(ha->max_pending, sizeof *ha->pending))) {
		free(ha);
		ca_set_err(err, errlen, "ha: out of memory");
		return CA_ENOMEM;
	}
	ha->loop = loop;
	ha->kube = kube;
	ha->lease_duration_ms = cfg->ha.lease_duration_ms;
	ha->renew_deadline_ms = cfg->ha.renew_deadline_ms;
	ha->retry_period_ms = cfg->ha.retry_period_ms;
	ha->checkpoint_interval_ms = cfg->ha.checkpoint_interval_ms;
	ha->request_timeout_ms =
	        cfg->kubernetes.request_timeout_ms > 0 ? cfg->kubernetes.request_timeout_ms : 10000;
	if (ca_strlcpy(ha->identity, identity, sizeof ha->identity) != CA_OK) {
		ca_set_err(err, errlen, "ha: the identity is longer than %d bytes",
		           CA_HA_IDENTITY_MAX - 1);
		free(ha->pending);
		free(ha);
		return CA_EINVAL;
	}
	ca_strlcpy(ha->lease_namespace, lease_namespace, sizeof ha->lease_namespace);
	ca_strlcpy(ha->lease_name, lease_name, sizeof ha->lease_name);
	snprintf(ha->collection, sizeof ha->collection, LEASE_API "/namespaces/%s/leases",
	         ha->lease_namespace);
	snprintf(ha->object, sizeof ha->object, "%s/%s", ha->collection, ha->lease_name);
	if (cbs)
		ha->cbs = *cbs;
	ha->arg = arg;
	enum ca_err rc = ca_loop_timer_new(loop, on_timer, ha, &ha->timer);
	if (rc != CA_OK) {
		ca_set_err(err, errlen, "ha: cannot create a timer: %s", ca_strerror(rc));
		ca_ha_free(ha);
		return rc;
	}
	*out = ha;
	return CA_OK;
}

void ca_ha_start(struct ca_ha *ha)
{
	if (ha->started)
		return;
	ha->started = true;
	ca_log(CA_LOG_INFO, COMPONENT, "campaigning for the Lease", "lease_namespace",
	       ha->lease_namespace, "lease", ha->lease_name, "identity", ha->identity, NULL);
	ca_loop_timer_start(ha->timer, 0, ha->retry_period_ms);
}

void ca_ha_release(struct ca_ha *ha, void (*done)(void *arg), void *arg)
{
	ha->stopping = true;
	ca_loop_timer_stop(ha->timer);
	ca_kube_request_cancel(ha->xfer);
	ha->xfer = NULL;
	ha->kind = REQ_NONE;
	int64_t now = ca_now_monotonic_ms();
	bool valid = ha->leading && now - ha->last_renew_ms <= ha->renew_deadline_ms && ha->lease;
	if (valid) {
		ha->released = done;
		ha->released_arg = arg;
		ha->release_deadline_ms = now + ha->request_timeout_ms;
		send_update(ha, REQ_RELEASE, "", 1, ha->observed.transitions, false, true);
		if (ha->xfer)
			return;
		ha->released = NULL;
	}
	ha->leading = ha->st.leading = false;
	if (done)
		done(arg);
}

void ca_ha_free(struct ca_ha *ha)
{
	if (!ha)
		return;
	ca_kube_request_cancel(ha->xfer);
	ca_loop_timer_free(ha->timer);
	json_decref(ha->lease);
	free(ha->pending);
	free(ha);
}

bool ca_ha_leading(const struct ca_ha *ha)
{
	return ha && ha->leading;
}

const char *ca_ha_annotation(const struct ca_ha *ha, const char *key)
{
	const json_t *ann = json_object_get(json_object_get(ha->lease, "metadata"), "annotations");
	return json_string_value(json_object_get(ann, key));
}

/* A qualified name ([prefix/]name, 63 at most for the name) as
 * annotations take them; the value short and printable. */
static bool annotation_ok(const char *key, const char *value)
{
	size_t n = strlen(key), v = strlen(value);
	if (n == 0 || n > ANNOTATION_KEY_MAX || v > ANNOTATION_VALUE_MAX)
		return false;
	const char *slash = strchr(key, '/');
	const char *name = slash ? slash + 1 : key;
	if (strlen(name) == 0 || strlen(name) > 63)
		return false;
	if (slash) {
		char prefix[ANNOTATION_KEY_MAX + 1];
		snprintf(prefix, sizeof prefix, "%.*s", (int)(slash - key), key);
		if (!ca_config_valid_subdomain(prefix))
			return false;
	}
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
			return false;
	for (const char *p = value; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			return false;
	return true;
}

enum ca_err ca_ha_set_annotation(struct ca_ha *ha, const char *key, const char *value)
{
	if (!annotation_ok(key, value))
		return CA_EINVAL;
	for (size_t i = 0; i < ha->npending; i++) {
		if (strcmp(ha->pending[i].key, key) == 0) {
			ca_strlcpy(ha->pending[i].value, value, sizeof ha->pending[i].value);
			return CA_OK;
		}
	}
	if (ha->npending >= ha->max_pending)
		return CA_ETOOBIG;
	ca_strlcpy(ha->pending[ha->npending].key, key, sizeof ha->pending[ha->npending].key);
	ca_strlcpy(ha->pending[ha->npending].value, value, sizeof ha->pending[ha->npending].value);
	ha->npending++;
	return CA_OK;
}

void ca_ha_get_stats(const struct ca_ha *ha, struct ca_ha_stats *out)
{
	*out = ha->st;
}

size_t ca_ha_max_annotations(const struct ca_config *cfg)
{
	return 16 + (cfg->events.enabled ? cfg->events.namespaces.count : 0);
}

size_t ca_ha_max_lease_bytes(const struct ca_config *cfg)
{
	/* An annotation: a key of up to ANNOTATION_KEY_MAX, a value of up
	 * to ANNOTATION_VALUE_MAX (a resourceVersion: about 20), JSON's
	 * quotes and separators, and "f:<key>":{} in managedFields. */
	return ((size_t)32 << 10) + ca_ha_max_annotations(cfg) * 512;
}

void ca_ha_budget(const struct ca_config *cfg, struct ca_budget *b)
{
	if (!cfg->ha.enabled)
		return;
	/* The answer, its JSON tree (jansson's is at most about three times
	 * the text) and the update's text, and the annotations waiting to be
	 * written. */
	ca_budget_add(b, "ha: the Lease (answer, its parse, the update) and the checkpoint", "",
	              (uint64_t)ca_ha_max_lease_bytes(cfg) * 5 +
	                      ca_ha_max_annotations(cfg) * sizeof(struct annotation));
}

/* ------------------------------------------------------------ the module */

static void module_health(const void *self, struct ca_module_health *out)
{
	const struct ca_ha *ha = self;
	if (ha->read_denied || ha->write_denied) {
		out->ready = false;
		ca_set_err(out->reason, sizeof out->reason,
		           "ha: this replica cannot %s the Lease, so it could never "
		           "take over: %s",
		           ha->read_denied ? "read" : "write", ha->st.last_error);
	}
}

static void module_health_json(const void *self, struct ca_buf *out)
{
	const struct ca_ha *ha = self;
	char renew[CA_RFC3339_LEN] = "";
	if (ha->st.last_renew_unix_ms)
		ca_format_rfc3339(ha->st.last_renew_unix_ms, renew);
	ca_buf_printf(out, "{\"enabled\":true,\"role\":\"%s\",\"identity\":",
	              ha->leading ? "leader" : "standby");
	ca_buf_append_json_string(out, ha->identity);
	ca_buf_append_str(out, ",\"holder\":");
	ca_buf_append_json_string(out, ha->st.holder);
	ca_buf_append_str(out, ",\"lease_namespace\":");
	ca_buf_append_json_string(out, ha->lease_namespace);
	ca_buf_append_str(out, ",\"lease_name\":");
	ca_buf_append_json_string(out, ha->lease_name);
	ca_buf_printf(out, ",\"transitions\":%lld,\"last_renew\":", (long long)ha->st.transitions);
	ca_buf_append_json_string(out, renew);
	ca_buf_printf(
	        out,
	        ",\"acquisitions\":%llu,\"step_downs\":%llu,\"conflicts\":%llu,\"errors\":%llu,"
	        "\"checkpoints\":%llu,\"last_error\":",
	        (unsigned long long)ha->st.acquisitions, (unsigned long long)ha->st.step_downs,
	        (unsigned long long)ha->st.conflicts, (unsigned long long)ha->st.errors,
	        (unsigned long long)ha->st.checkpoints);
	ca_buf_append_json_string(out, ha->st.last_error);
	ca_buf_append_str(out, "}");
}

static void module_render_metrics(const void *self, struct ca_prom *p)
{
	static const struct ca_ha_stats zero;
	const struct ca_ha_stats *st = self ? &((const struct ca_ha *)self)->st : &zero;
	ca_prom_single(p, "agent_ha_leader", "gauge",
	               "1 while this replica holds the Lease (ha.enabled), else 0.",
	               st->leading ? 1 : 0);
	ca_prom_single(p, "agent_ha_lease_transitions", "gauge",
	               "leaseTransitions of the Lease as last read: how often it changed holder.",
	               (double)st->transitions);
	ca_prom_single(
	        p, "agent_ha_lease_errors_total", "counter",
	        "Lease requests that failed (no answer, or an error status other than a conflict).",
	        (double)st->errors);
	ca_prom_single(p, "agent_ha_lease_conflicts_total", "counter",
	               "Lease writes refused because another replica wrote first (409).",
	               (double)st->conflicts);
	ca_prom_single(p, "agent_ha_leadership_acquired_total", "counter",
	               "Times this replica became the leader.", (double)st->acquisitions);
	ca_prom_single(p, "agent_ha_step_downs_total", "counter",
	               "Times this replica stopped leading without a shutdown (renew deadline, "
	               "another holder).",
	               (double)st->step_downs);
}

const struct ca_module_ops ca_ha_module = {
        .name = "ha",
        .health = module_health,
        .health_json = module_health_json,
        .render_metrics = module_render_metrics,
};
