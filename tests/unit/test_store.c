/* tests/unit/test_store.c: the informer store (kube/store.h).
 *
 * Objects are real parsed JSON (ca_kobj_parse) handed to the store through
 * the reflector callbacks that ca_store_reflector_callbacks() fills, the
 * way a reflector hands them over: a LIST is on_list_begin, the page's
 * items as ADDED with from_list, then on_synced. The last scenario runs a
 * real reflector against the simulated API server (tests/kubesim).
 *
 * The consumer below counts the values it has alive, so every test checks
 * that the store frees exactly what it owns (valgrind and ASan check the
 * rest), and its callbacks check what they receive at the moment they run. */
#include <curl/curl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/timeutil.h"
#include "kube/kobj.h"
#include "kube/kube.h"
#include "kube/reflector.h"
#include "kube/store.h"
#include "log/log.h"

#define MAGIC_LIVE 0x5eedf00du
#define MAGIC_DEAD 0xdeadbeefu

/* ------------------------------------------------------------------ */
/* The consumer: a compact pod, and a record of the callbacks */

struct pod {
	uint32_t magic;
	int64_t rv;     /* metadata.resourceVersion (a number in these tests) */
	int64_t index;  /* spec.priority: which generated object this is */
	char phase[16]; /* status.phase */
};

enum { EV_ADD = 1, EV_UPDATE, EV_DELETE };

struct event {
	int kind;
	char key[CA_STORE_KEY_MAX + 1];
	int64_t old_rv, new_rv;
};

struct consumer {
	struct ca_store *store;
	struct ca_reflector_callbacks cbs; /* filled by ca_store_reflector_callbacks */
	int64_t live;                      /* values folded and not yet freed */
	int64_t folds;
	size_t value_size; /* what fold reports, unless the object says */
	bool log;          /* keep the events below */
	struct event ev[64];
	int nev;
	uint64_t adds, updates, deletes; /* callbacks seen */
	int bad;                         /* callbacks that saw something wrong */
};

static bool pod_ok(const void *v)
{
	return v && ((const struct pod *)v)->magic == MAGIC_LIVE;
}

static int64_t rv_of(const void *v)
{
	return v ? ((const struct pod *)v)->rv : -1;
}

static enum ca_err fold_pod(void *arg, const struct ca_kobj *obj, void **value, size_t *size)
{
	struct consumer *c = arg;
	const char *refuse = ca_kobj_str(obj, "metadata.labels.refuse");
	if (refuse && strcmp(refuse, "yes") == 0)
		return CA_EINVAL;
	struct pod *p = calloc(1, sizeof *p);
	if (!p)
		return CA_ENOMEM;
	const char *rv = ca_kobj_str(obj, "metadata.resourceVersion");
	const char *phase = ca_kobj_str(obj, "status.phase");
	p->magic = MAGIC_LIVE;
	p->rv = rv ? strtoll(rv, NULL, 10) : 0;
	p->index = ca_kobj_int(obj, "spec.priority", -1);
	ca_strlcpy(p->phase, phase ? phase : "", sizeof p->phase);
	c->live++;
	c->folds++;
	*value = p;
	*size = (size_t)ca_kobj_int(obj, "spec.valueSize", (int64_t)c->value_size);
	return CA_OK;
}

static void free_pod(void *arg, void *value)
{
	struct consumer *c = arg;
	struct pod *p = value;
	if (!pod_ok(p)) {
		c->bad++; /* a double free or a value the store never got */
		return;
	}
	p->magic = MAGIC_DEAD;
	free(p);
	c->live--;
}

static void record(struct consumer *c, int kind, const char *key, const void *old_v,
                   const void *new_v)
{
	if (!c->log || c->nev >= (int)(sizeof c->ev / sizeof c->ev[0]))
		return;
	struct event *e = &c->ev[c->nev++];
	e->kind = kind;
	ca_strlcpy(e->key, key, sizeof e->key);
	e->old_rv = rv_of(old_v);
	e->new_rv = rv_of(new_v);
}

/* In every callback the store is readable and already shows the change;
 * a replaced or removed value is still alive (freed after the callback). */
static void on_add(void *arg, const char *key, void *value)
{
	struct consumer *c = arg;
	c->adds++;
	if (!pod_ok(value) || ca_store_get(c->store, key) != value ||
	    c->live != (int64_t)ca_store_count(c->store))
		c->bad++;
	record(c, EV_ADD, key, NULL, value);
}

static void on_update(void *arg, const char *key, void *old_value, void *new_value)
{
	struct consumer *c = arg;
	c->updates++;
	if (!pod_ok(old_value) || !pod_ok(new_value) || old_value == new_value ||
	    ca_store_get(c->store, key) != new_value ||
	    c->live != (int64_t)ca_store_count(c->store) + 1)
		c->bad++;
	record(c, EV_UPDATE, key, old_value, new_value);
}

static void on_delete(void *arg, const char *key, void *value)
{
	struct consumer *c = arg;
	c->deletes++;
	if (!pod_ok(value) || ca_store_contains(c->store, key) ||
	    c->live != (int64_t)ca_store_count(c->store) + 1)
		c->bad++;
	record(c, EV_DELETE, key, value, NULL);
}

static const struct ca_store_ops pod_ops = {
        .fold = fold_pod,
        .free_value = free_pod,
        .on_add = on_add,
        .on_update = on_update,
        .on_delete = on_delete,
};

static struct consumer *consumer_new(enum ca_store_key key, size_t max_entries, size_t max_bytes)
{
	struct consumer *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	struct ca_store_options o = {
	        .name = "pods", .key = key, .max_entries = max_entries, .max_bytes = max_bytes};
	c->log = true;
	c->value_size = ca_store_heap_bytes(sizeof(struct pod));
	CHECK_INT(ca_store_new(&c->store, &o, &pod_ops, c), CA_OK);
	if (!c->store) {
		free(c);
		return NULL;
	}
	ca_store_reflector_callbacks(c->store, &c->cbs);
	return c;
}

/* Free the store; every value must have been freed exactly once. */
static void consumer_free(struct consumer *c)
{
	if (!c)
		return;
	ca_store_free(c->store);
	CHECK_INT(c->live, 0);
	CHECK_INT(c->bad, 0);
	free(c);
}

static struct ca_store_stats stats(const struct consumer *c)
{
	struct ca_store_stats s;
	ca_store_get_stats(c->store, &s);
	return s;
}

/* ------------------------------------------------------------------ */
/* Feeding objects as a reflector does */

/* The JSON of a pod; ns NULL for none, uid NULL for none. */
static void pod_json(struct ca_buf *b, const char *ns, const char *name, const char *uid, int rv,
                     const char *phase)
{
	ca_buf_append_str(b, "{\"metadata\":{\"name\":");
	ca_buf_append_json_string(b, name);
	if (ns) {
		ca_buf_append_str(b, ",\"namespace\":");
		ca_buf_append_json_string(b, ns);
	}
	if (uid) {
		ca_buf_append_str(b, ",\"uid\":");
		ca_buf_append_json_string(b, uid);
	}
	ca_buf_printf(b, ",\"resourceVersion\":\"%d\"},\"status\":{\"phase\":\"%s\"}}", rv,
	              phase ? phase : "Running");
}

/* One watch event from raw JSON. */
static void watch_raw(struct consumer *c, enum ca_watch_type type, const char *json)
{
	struct ca_kobj *o = NULL;
	CHECK_INT(ca_kobj_parse(json, strlen(json), &o), CA_OK);
	if (o)
		c->cbs.on_object(c->store, type, o, false);
	ca_kobj_free(o);
}

static void watch(struct consumer *c, enum ca_watch_type type, const char *ns, const char *name,
                  int rv, const char *phase)
{
	struct ca_buf b;
	ca_buf_init(&b, 0);
	pod_json(&b, ns, name, NULL, rv, phase);
	watch_raw(c, type, b.data);
	ca_buf_fini(&b);
}

/* A LIST page's items, handed out one by one as the reflector does. */
static void deliver_items(struct consumer *c, const char *page_json)
{
	struct ca_kobj *page = NULL;
	CHECK_INT(ca_kobj_parse(page_json, strlen(page_json), &page), CA_OK);
	const struct ca_kobj *items = ca_kobj_get(page, "items");
	for (size_t i = 0; i < ca_kobj_array_len(items); i++)
		c->cbs.on_object(c->store, CA_WATCH_ADDED, ca_kobj_array_at(items, i), true);
	ca_kobj_free(page);
}

/* A whole LIST of "name:rv" items in namespace ns; done = false leaves it
 * unfinished (the reflector's LIST failed half way). */
static void list_of(struct consumer *c, const char *ns, const char *const *items, bool done)
{
	struct ca_buf b;
	ca_buf_init(&b, 0);
	ca_buf_append_str(
	        &b, "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"900\"},\"items\":[");
	for (size_t i = 0; items[i]; i++) {
		char name[64];
		const char *colon = strchr(items[i], ':');
		size_t n = colon ? (size_t)(colon - items[i]) : strlen(items[i]);
		snprintf(name, sizeof name, "%.*s", (int)n, items[i]);
		if (i)
			ca_buf_append_str(&b, ",");
		pod_json(&b, ns, name, NULL, colon ? (int)strtol(colon + 1, NULL, 10) : 1, NULL);
	}
	ca_buf_append_str(&b, "]}");
	c->cbs.on_list_begin(c->store);
	deliver_items(c, b.data);
	if (done)
		c->cbs.on_synced(c->store, "900");
	ca_buf_fini(&b);
}

static const struct pod *pod_at(struct consumer *c, const char *key)
{
	return ca_store_get(c->store, key);
}

static int64_t rv_at(struct consumer *c, const char *key)
{
	return rv_of(pod_at(c, key));
}

static const struct event *find_event(const struct consumer *c, int kind, const char *key)
{
	for (int i = 0; i < c->nev; i++)
		if (c->ev[i].kind == kind && strcmp(c->ev[i].key, key) == 0)
			return &c->ev[i];
	return NULL;
}

/* The accounted bytes, recomputed from the outside: the table plus, per
 * stored key, ca_store_entry_bytes() plus the reported value size. */
struct bytes_sum {
	size_t keys, per_value;
};

static bool sum_entry(void *arg, const char *key, void *value)
{
	struct bytes_sum *s = arg;
	(void)value;
	s->keys += ca_store_entry_bytes(strlen(key));
	return true;
}

static void check_bytes_exact(struct consumer *c)
{
	struct bytes_sum sum = {0, 0};
	ca_store_foreach(c->store, sum_entry, &sum);
	struct ca_store_stats s = stats(c);
	CHECK_INT(s.table_bytes, s.slots * (sizeof(void *) + 1));
	CHECK_INT(s.bytes, s.table_bytes + sum.keys + s.value_bytes);
	CHECK_INT(s.entries, ca_store_count(c->store));
	CHECK_INT(c->live, (int64_t)s.entries);
}

/* ------------------------------------------------------------------ */
/* Scenarios */

static void test_sizes(void)
{
	CHECK_INT(ca_store_heap_bytes(0), 32);
	CHECK_INT(ca_store_heap_bytes(24), 32);
	CHECK_INT(ca_store_heap_bytes(25), 48);
	CHECK_INT(ca_store_heap_bytes(64), 80);
	/* An entry is its key, a NUL and 16 bytes of bookkeeping in one
	 * allocation. */
	CHECK_INT(ca_store_entry_bytes(40), ca_store_heap_bytes(16 + 41));
	CHECK(ca_store_entry_bytes(CA_STORE_KEY_MAX) <= CA_STORE_KEY_MAX + 48);

	struct ca_store *s = NULL;
	struct ca_store_options o = {0};
	struct ca_store_ops no_fold = {.free_value = free_pod};
	CHECK_INT(ca_store_new(&s, &o, &no_fold, NULL), CA_EINVAL);
	CHECK(s == NULL);
	o.max_entries = CA_STORE_ENTRIES_LIMIT + 1;
	CHECK_INT(ca_store_new(&s, &o, &pod_ops, NULL), CA_EINVAL);
	o.max_entries = 0;
	o.key = (enum ca_store_key)7;
	CHECK_INT(ca_store_new(&s, &o, &pod_ops, NULL), CA_EINVAL);
	ca_store_free(NULL);

	/* Empty: 16 slots, nothing else. */
	struct consumer *c = consumer_new(CA_STORE_KEY_NAME, 0, 0);
	if (!c)
		return;
	struct ca_store_stats st = stats(c);
	CHECK_INT(st.entries, 0);
	CHECK_INT(st.slots, 16);
	CHECK_INT(st.bytes, 16 * 9);
	CHECK_INT(st.max_entries, CA_STORE_ENTRIES_LIMIT);
	CHECK(!ca_store_synced(c->store));
	CHECK(!ca_store_over_budget(c->store));
	CHECK(ca_store_get(c->store, "") == NULL);
	CHECK(ca_store_get(c->store, NULL) == NULL);
	consumer_free(c);
}

static void test_callbacks(void)
{
	struct consumer *c = consumer_new(CA_STORE_KEY_NAME, 0, 0);
	if (!c)
		return;
	watch(c, CA_WATCH_ADDED, "ns1", "a", 1, "Pending");
	CHECK_INT(c->nev, 1);
	CHECK_INT(c->ev[0].kind, EV_ADD);
	CHECK_STR(c->ev[0].key, "ns1/a");
	CHECK_INT(c->ev[0].new_rv, 1);
	CHECK_INT(rv_at(c, "ns1/a"), 1);
	CHECK_STR(pod_at(c, "ns1/a") ? pod_at(c, "ns1/a")->phase : NULL, "Pending");

	watch(c, CA_WATCH_MODIFIED, "ns1", "a", 2, "Running");
	CHECK_INT(c->nev, 2);
	CHECK_INT(c->ev[1].kind, EV_UPDATE);
	CHECK_STR(c->ev[1].key, "ns1/a");
	CHECK_INT(c->ev[1].old_rv, 1);
	CHECK_INT(c->ev[1].new_rv, 2);
	CHECK_STR(pod_at(c, "ns1/a") ? pod_at(c, "ns1/a")->phase : NULL, "Running");

	/* ADDED for a stored key (a watch replaying) replaces it too. */
	watch(c, CA_WATCH_ADDED, "ns1", "a", 3, "Running");
	CHECK_INT(c->ev[2].kind, EV_UPDATE);
	CHECK_INT(c->ev[2].old_rv, 2);
	CHECK_INT(c->ev[2].new_rv, 3);

	/* The same name in another namespace, and cluster-scoped objects
	 * (no namespace, or an empty one) keyed by name alone. */
	watch(c, CA_WATCH_ADDED, "ns2", "a", 4, NULL);
	watch(c, CA_WATCH_ADDED, NULL, "node-1", 5, NULL);
	watch(c, CA_WATCH_ADDED, "", "node-2", 6, NULL);
	CHECK_INT(ca_store_count(c->store), 4);
	CHECK_INT(rv_at(c, "ns1/a"), 3);
	CHECK_INT(rv_at(c, "ns2/a"), 4);
	CHECK_INT(rv_at(c, "node-1"), 5);
	CHECK_INT(rv_at(c, "node-2"), 6);
	CHECK(!ca_store_contains(c->store, "/node-2"));
	CHECK(!ca_store_contains(c->store, "a"));

	/* DELETED hands on_delete the stored value (not the deleted object). */
	c->nev = 0;
	watch(c, CA_WATCH_DELETED, "ns1", "a", 99, NULL);
	CHECK_INT(c->nev, 1);
	CHECK_INT(c->ev[0].kind, EV_DELETE);
	CHECK_STR(c->ev[0].key, "ns1/a");
	CHECK_INT(c->ev[0].old_rv, 3);
	CHECK(ca_store_get(c->store, "ns1/a") == NULL);
	CHECK(!ca_store_contains(c->store, "ns1/a"));
	CHECK_INT(rv_at(c, "ns2/a"), 4);

	/* Deleting what is not there: nothing happens, nothing is counted. */
	struct ca_store_stats before = stats(c);
	watch(c, CA_WATCH_DELETED, "ns1", "a", 100, NULL);
	watch(c, CA_WATCH_DELETED, "nowhere", "zzz", 100, NULL);
	struct ca_store_stats after = stats(c);
	CHECK_INT(c->nev, 1);
	CHECK_INT(after.deletes, before.deletes);
	CHECK_INT(after.invalid, before.invalid);
	CHECK_INT(after.entries, 3);

	CHECK_INT(after.adds, 4);
	CHECK_INT(after.updates, 2);
	CHECK_INT(after.deletes, 1);
	CHECK_INT(c->adds, 4);
	CHECK_INT(c->updates, 2);
	CHECK_INT(c->deletes, 1);
	CHECK_INT(after.lists, 0);
	CHECK(!after.synced); /* watch events alone are no LIST */
	check_bytes_exact(c);

	/* Health JSON parses and carries the figures. */
	struct ca_buf h;
	ca_buf_init(&h, 0);
	ca_store_health_json(c->store, &h);
	struct ca_kobj *hj = NULL;
	CHECK_INT(ca_kobj_parse(h.data, h.len, &hj), CA_OK);
	CHECK_STR(ca_kobj_str(hj, "name"), "pods");
	CHECK_INT(ca_kobj_int(hj, "entries", -1), 3);
	CHECK_INT(ca_kobj_int(hj, "bytes", -1), (int64_t)after.bytes);
	CHECK(!ca_kobj_bool(hj, "over_budget", true));
	ca_kobj_free(hj);
	ca_buf_fini(&h);
	consumer_free(c);
}

static void test_relist(void)
{
	struct consumer *c = consumer_new(CA_STORE_KEY_NAME, 0, 0);
	if (!c)
		return;
	const char *first[] = {"a:1", "b:1", "c:1", NULL};
	list_of(c, "ns", first, false);
	CHECK(!ca_store_synced(c->store)); /* not before the list completes */
	c->cbs.on_synced(c->store, "900");
	CHECK(ca_store_synced(c->store));
	CHECK_INT(ca_store_count(c->store), 3);
	CHECK_INT(c->adds, 3);
	watch(c, CA_WATCH_MODIFIED, "ns", "a", 2, NULL);

	/* Relist: a unchanged (rv 2), c changed, d new, b gone. */
	c->nev = 0;
	const char *second[] = {"a:2", "c:5", "d:1", NULL};
	list_of(c, "ns", second, true);
	CHECK_INT(c->nev, 4);
	const struct event *e = find_event(c, EV_UPDATE, "ns/a");
	CHECK(e && e->old_rv == 2 && e->new_rv == 2); /* unchanged, still an update */
	e = find_event(c, EV_UPDATE, "ns/c");
	CHECK(e && e->old_rv == 1 && e->new_rv == 5);
	e = find_event(c, EV_ADD, "ns/d");
	CHECK(e && e->new_rv == 1);
	e = find_event(c, EV_DELETE, "ns/b");
	CHECK(e && e->old_rv == 1);
	CHECK(c->nev == 4 && c->ev[3].kind == EV_DELETE); /* the sweep comes last */
	CHECK(!ca_store_contains(c->store, "ns/b"));
	CHECK_INT(ca_store_count(c->store), 3);
	struct ca_store_stats s = stats(c);
	CHECK_INT(s.lists, 2);
	CHECK_INT(s.sweeps, 2);
	CHECK_INT(s.swept, 1);
	CHECK_INT(s.deletes, 1);
	CHECK_INT(s.adds, 4);
	CHECK_INT(s.updates, 3);

	/* on_synced without a LIST in progress sweeps nothing. */
	c->cbs.on_synced(c->store, "901");
	CHECK_INT(stats(c).sweeps, 2);
	CHECK_INT(ca_store_count(c->store), 3);

	/* Watch additions after a LIST survive the next one only if listed. */
	watch(c, CA_WATCH_ADDED, "ns", "w", 7, NULL);
	const char *third[] = {"a:2", "w:7", NULL};
	list_of(c, "ns", third, true);
	CHECK_INT(ca_store_count(c->store), 2);
	CHECK_INT(stats(c).swept, 3);
	CHECK(ca_store_contains(c->store, "ns/a"));
	CHECK(ca_store_contains(c->store, "ns/w"));

	/* An empty relist empties the store. */
	const char *none[] = {NULL};
	list_of(c, "ns", none, true);
	CHECK_INT(ca_store_count(c->store), 0);
	CHECK_INT(stats(c).swept, 5); /* b; c and d; a and w */
	check_bytes_exact(c);
	consumer_free(c);
}

static void test_interrupted_relist(void)
{
	struct consumer *c = consumer_new(CA_STORE_KEY_NAME, 0, 0);
	if (!c)
		return;
	const char *first[] = {"a:1", "b:1", "c:1", "d:1", NULL};
	list_of(c, "ns", first, true);
	CHECK_INT(ca_store_count(c->store), 4);

	/* A relist fails after a, b and a new e; the next one starts over and
	 * completes with a, c and a new f. */
	const char *broken[] = {"a:2", "b:2", "e:2", NULL};
	list_of(c, "ns", broken, false);
	CHECK_INT(c->deletes, 0);
	CHECK_INT(ca_store_count(c->store), 5);
	const char *again[] = {"a:3", "c:3", "f:3", NULL};
	c->cbs.on_list_begin(c->store);
	CHECK_INT(c->deletes, 0); /* starting over removes nothing */
	CHECK_INT(ca_store_count(c->store), 5);
	list_of(c, "ns", again, false);
	CHECK_INT(c->deletes, 0);
	c->cbs.on_synced(c->store, "900");

	/* Exactly what the completed list carried: c stays although the
	 * broken list never reached it; b and e go although it did. */
	CHECK_INT(ca_store_count(c->store), 3);
	CHECK_INT(rv_at(c, "ns/a"), 3);
	CHECK_INT(rv_at(c, "ns/c"), 3);
	CHECK_INT(rv_at(c, "ns/f"), 3);
	CHECK(!ca_store_contains(c->store, "ns/b"));
	CHECK(!ca_store_contains(c->store, "ns/d"));
	CHECK(!ca_store_contains(c->store, "ns/e"));
	CHECK_INT(c->deletes, 3);
	struct ca_store_stats s = stats(c);
	CHECK_INT(s.lists, 4); /* first, broken, the empty begin, again */
	CHECK_INT(s.sweeps, 2);
	CHECK_INT(s.swept, 3);

	/* A relist that never completes (the reflector freed) leaves all. */
	const char *partial[] = {"a:4", NULL};
	list_of(c, "ns", partial, false);
	CHECK_INT(ca_store_count(c->store), 3);
	CHECK(ca_store_synced(c->store)); /* from the earlier lists */
	check_bytes_exact(c);
	consumer_free(c);
}

static void test_uid_keys(void)
{
	struct consumer *c = consumer_new(CA_STORE_KEY_UID, 0, 0);
	if (!c)
		return;
	struct ca_buf b;
	ca_buf_init(&b, 0);
	/* The same namespace/name twice: deleted and created again, with a
	 * new uid, while the watch was down. Both are kept, by uid. */
	pod_json(&b, "ns", "web", "uid-1", 1, NULL);
	watch_raw(c, CA_WATCH_ADDED, b.data);
	ca_buf_reset(&b);
	pod_json(&b, "ns", "web", "uid-2", 2, NULL);
	watch_raw(c, CA_WATCH_ADDED, b.data);
	CHECK_INT(ca_store_count(c->store), 2);
	CHECK_INT(rv_at(c, "uid-1"), 1);
	CHECK_INT(rv_at(c, "uid-2"), 2);
	CHECK(!ca_store_contains(c->store, "ns/web"));

	ca_buf_reset(&b);
	pod_json(&b, "ns", "web", "uid-1", 3, NULL);
	watch_raw(c, CA_WATCH_DELETED, b.data);
	CHECK_INT(ca_store_count(c->store), 1);
	CHECK(!ca_store_contains(c->store, "uid-1"));

	/* No uid, an empty one, one too long: invalid. 128 bytes is fine. */
	char uid[CA_STORE_UID_MAX + 2];
	memset(uid, 'u', sizeof uid - 1);
	uid[sizeof uid - 1] = '\0';
	ca_buf_reset(&b);
	pod_json(&b, "ns", "x", uid, 1, NULL); /* 129 bytes */
	watch_raw(c, CA_WATCH_ADDED, b.data);
	ca_buf_reset(&b);
	pod_json(&b, "ns", "x", "", 1, NULL);
	watch_raw(c, CA_WATCH_ADDED, b.data);
	ca_buf_reset(&b);
	pod_json(&b, "ns", "x", NULL, 1, NULL);
	watch_raw(c, CA_WATCH_ADDED, b.data);
	CHECK_INT(stats(c).invalid, 3);
	uid[CA_STORE_UID_MAX] = '\0';
	ca_buf_reset(&b);
	pod_json(&b, "ns", "x", uid, 1, NULL);
	watch_raw(c, CA_WATCH_ADDED, b.data);
	CHECK_INT(ca_store_count(c->store), 2);
	CHECK(ca_store_contains(c->store, uid));
	ca_buf_fini(&b);
	check_bytes_exact(c);
	consumer_free(c);
}

static void test_invalid(void)
{
	struct consumer *c = consumer_new(CA_STORE_KEY_NAME, 0, 0);
	if (!c)
		return;
	char n253[CA_STORE_NAME_MAX + 1], n254[CA_STORE_NAME_MAX + 2];
	char s63[CA_STORE_NAMESPACE_MAX + 1], s64[CA_STORE_NAMESPACE_MAX + 2];
	memset(n253, 'n', sizeof n253 - 1);
	n253[sizeof n253 - 1] = '\0';
	memset(n254, 'm', sizeof n254 - 1);
	n254[sizeof n254 - 1] = '\0';
	memset(s63, 's', sizeof s63 - 1);
	s63[sizeof s63 - 1] = '\0';
	memset(s64, 't', sizeof s64 - 1);
	s64[sizeof s64 - 1] = '\0';

	struct ca_buf b;
	ca_buf_init(&b, 0);
	ca_buf_append_str(&b, "{\"items\":[");
	pod_json(&b, "ns", "first", NULL, 1, NULL); /* valid */
	ca_buf_append_str(&b, ",");
	pod_json(&b, "ns", n254, NULL, 1, NULL); /* name too long */
	ca_buf_append_str(&b, ",");
	pod_json(&b, s64, "x", NULL, 1, NULL); /* namespace too long */
	ca_buf_append_str(&b, ",");
	pod_json(&b, s63, n253, NULL, 1, NULL); /* the longest valid key */
	ca_buf_append_str(&b, ",");
	pod_json(&b, "ns", "", NULL, 1, NULL); /* empty name */
	ca_buf_append_str(&b, ",");
	pod_json(&b, "ns", "a\nb", NULL, 1, NULL);
	ca_buf_append_str(&b, ",");
	pod_json(&b, "ns",
	         "a\x7f"
	         "b",
	         NULL, 1, NULL);
	ca_buf_append_str(&b, ",");
	pod_json(&b, "n\x01s", "ab", NULL, 1, NULL);
	ca_buf_append_str(&b, ",");
	pod_json(&b, "ns", "a/b", NULL, 1, NULL); /* would be ambiguous */
	ca_buf_append_str(&b, ",");
	pod_json(&b, "n/s", "b", NULL, 1, NULL);
	ca_buf_append_str(&b, ",{\"metadata\":{\"name\":5,\"namespace\":\"ns\"}}");
	ca_buf_append_str(&b, ",{\"metadata\":{}}");
	ca_buf_append_str(&b, ",{\"kind\":\"NoMetadata\"}");
	ca_buf_append_str(&b, ",7");
	ca_buf_append_str(&b, ",{\"metadata\":{\"name\":\"refused\",\"namespace\":\"ns\","
	                      "\"labels\":{\"refuse\":\"yes\"}}}");
	ca_buf_append_str(&b, ",");
	pod_json(&b, "ns", "last", NULL, 1, NULL); /* valid, after all that */
	ca_buf_append_str(&b, "]}");
	c->cbs.on_list_begin(c->store);
	deliver_items(c, b.data);
	c->cbs.on_synced(c->store, "1");
	ca_buf_fini(&b);

	struct ca_store_stats s = stats(c);
	CHECK_INT(s.invalid, 13);
	CHECK_INT(s.entries, 3);
	CHECK_INT(s.adds, 3);
	CHECK(ca_store_contains(c->store, "ns/first"));
	CHECK(ca_store_contains(c->store, "ns/last"));
	char longest[CA_STORE_KEY_MAX + 1];
	snprintf(longest, sizeof longest, "%s/%s", s63, n253);
	CHECK_INT(strlen(longest), CA_STORE_KEY_MAX);
	CHECK(ca_store_contains(c->store, longest));
	CHECK(!ca_store_contains(c->store, "ns/refused"));
	CHECK_INT(c->folds, 3); /* fold never saw an object without a key */

	/* A DELETED without a key is invalid too, and harmless. */
	watch_raw(c, CA_WATCH_DELETED, "{\"metadata\":{\"namespace\":\"ns\"}}");
	CHECK_INT(stats(c).invalid, 14);
	CHECK_INT(ca_store_count(c->store), 3);

	/* fold refusing a new version of a stored key removes the entry. */
	c->nev = 0;
	watch_raw(c, CA_WATCH_MODIFIED,
	          "{\"metadata\":{\"name\":\"first\",\"namespace\":\"ns\","
	          "\"labels\":{\"refuse\":\"yes\"}}}");
	CHECK_INT(c->nev, 1);
	CHECK_INT(c->ev[0].kind, EV_DELETE);
	CHECK_STR(c->ev[0].key, "ns/first");
	CHECK(!ca_store_contains(c->store, "ns/first"));
	s = stats(c);
	CHECK_INT(s.invalid, 15);
	CHECK_INT(s.deletes, 1);
	CHECK(!s.over_budget); /* invalid objects are no budget matter */
	check_bytes_exact(c);
	consumer_free(c);
}

static void test_cap_entries(void)
{
	struct consumer *c = consumer_new(CA_STORE_KEY_NAME, 3, 0);
	if (!c)
		return;
	const char *five[] = {"a:1", "b:1", "c:1", "d:1", "e:1", NULL};
	list_of(c, "ns", five, true);
	struct ca_store_stats s = stats(c);
	CHECK_INT(s.entries, 3);
	CHECK_INT(s.rejected_full, 2);
	CHECK(s.over_budget);
	CHECK(ca_store_over_budget(c->store));
	CHECK_INT(c->live, 3);
	CHECK(ca_store_synced(c->store));

	/* Full: updates still apply, new keys are refused. */
	watch(c, CA_WATCH_MODIFIED, "ns", "a", 2, NULL);
	CHECK_INT(rv_at(c, "ns/a"), 2);
	watch(c, CA_WATCH_ADDED, "ns", "f", 1, NULL);
	CHECK(!ca_store_contains(c->store, "ns/f"));
	CHECK_INT(stats(c).rejected_full, 3);
	/* Room again after a delete. */
	watch(c, CA_WATCH_DELETED, "ns", "b", 3, NULL);
	watch(c, CA_WATCH_ADDED, "ns", "f", 1, NULL);
	CHECK(ca_store_contains(c->store, "ns/f"));
	CHECK(ca_store_over_budget(c->store)); /* d and e are still missing */

	/* A relist that fits clears the flag; one that does not sets it. */
	const char *three[] = {"a:4", "c:4", "f:4", NULL};
	list_of(c, "ns", three, true);
	CHECK(!ca_store_over_budget(c->store));
	CHECK_INT(ca_store_count(c->store), 3);
	const char *four[] = {"a:5", "c:5", "f:5", "g:5", NULL};
	list_of(c, "ns", four, true);
	CHECK(ca_store_over_budget(c->store));
	CHECK_INT(stats(c).rejected_full, 4);
	check_bytes_exact(c);
	consumer_free(c);
}

static void test_cap_bytes(void)
{
	/* Values that say they cost 1000 bytes; room for two of them. */
	size_t entry = ca_store_entry_bytes(strlen("ns/a")) + 1000;
	size_t table = 16 * 9;
	struct consumer *c = consumer_new(CA_STORE_KEY_NAME, 0, table + 2 * entry);
	if (!c)
		return;
	c->value_size = 1000;
	const char *three[] = {"a:1", "b:1", "c:1", NULL};
	list_of(c, "ns", three, true);
	struct ca_store_stats s = stats(c);
	CHECK_INT(s.entries, 2);
	CHECK_INT(s.rejected_full, 1);
	CHECK_INT(s.bytes, table + 2 * entry);
	CHECK(s.bytes <= s.max_bytes);
	CHECK(s.over_budget);
	CHECK_INT(c->folds, 3); /* the third was folded, then refused ... */
	CHECK_INT(c->live, 2);  /* ... and its value freed */

	/* An update that grows a value past the budget is applied (a stale
	 * value would be worse), and the store says it is over. */
	const char *two[] = {"a:2", "b:2", NULL};
	list_of(c, "ns", two, true);
	CHECK(!ca_store_over_budget(c->store));
	watch_raw(c, CA_WATCH_MODIFIED,
	          "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\","
	          "\"resourceVersion\":\"3\"},\"spec\":{\"valueSize\":1500}}");
	CHECK_INT(rv_at(c, "ns/a"), 3);
	s = stats(c);
	CHECK_INT(s.value_bytes, 2500);
	CHECK(s.bytes > s.max_bytes);
	CHECK(s.over_budget);
	watch(c, CA_WATCH_DELETED, "ns", "b", 4, NULL);
	CHECK(!ca_store_over_budget(c->store));
	check_bytes_exact(c);
	consumer_free(c);

	/* When the budget cannot pay for doubling the table, it fills to 7/8
	 * of its 16 slots and then refuses. Values report 0 bytes; each entry
	 * costs entry_bytes(6) = 32; doubling at the 13th entry would need
	 * 288 + 13 * 32 = 704 bytes. */
	CHECK_INT(ca_store_entry_bytes(6), 32);
	c = consumer_new(CA_STORE_KEY_NAME, 0, 700);
	if (!c)
		return;
	c->value_size = 0;
	c->log = false;
	for (int i = 0; i < 15; i++) {
		char name[8];
		snprintf(name, sizeof name, "p%02d", i);
		watch(c, CA_WATCH_ADDED, "ns", name, 1, NULL);
	}
	s = stats(c);
	CHECK_INT(s.slots, 16);
	CHECK_INT(s.entries, 14);
	CHECK_INT(s.rejected_full, 1);
	CHECK_INT(s.bytes, 16 * 9 + 14 * 32);
	CHECK_INT(c->live, 14);
	for (int i = 0; i < 14; i++) {
		char key[16];
		snprintf(key, sizeof key, "ns/p%02d", i);
		CHECK(ca_store_contains(c->store, key));
	}
	check_bytes_exact(c);
	consumer_free(c);
}

/* 200,000 pods: a LIST, lookups, half deleted by watch, a relist. */
#define SCALE_N 200000

static void scale_key(char *out, size_t len, int i)
{
	snprintf(out, len, "namespace-%03d/pod-%06d-7d9f8b6c5d-x2k4p", i % 1000, i);
}

static bool visit_count(void *arg, const char *key, void *value)
{
	(void)key;
	(void)value;
	(*(size_t *)arg)++;
	return true;
}

static void test_scale(void)
{
	struct consumer *c = consumer_new(CA_STORE_KEY_NAME, 0, 0);
	if (!c)
		return;
	c->log = false;
	c->value_size = 64;
	struct ca_buf b;
	ca_buf_init(&b, 0);
	ca_buf_append_str(
	        &b, "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"5\"},\"items\":[");
	size_t key_bytes = 0;
	for (int i = 0; i < SCALE_N; i++) {
		char key[96];
		scale_key(key, sizeof key, i);
		key_bytes += ca_store_entry_bytes(strlen(key));
		char *slash = strchr(key, '/');
		*slash = '\0';
		ca_buf_printf(
		        &b,
		        "%s{\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\",\"resourceVersion\":"
		        "\"%d\"},\"spec\":{\"priority\":%d}}",
		        i ? "," : "", slash + 1, key, i + 10, i);
	}
	ca_buf_append_str(&b, "]}");
	struct ca_kobj *page = NULL;
	CHECK_INT(ca_kobj_parse(b.data, b.len, &page), CA_OK);
	ca_buf_fini(&b);
	const struct ca_kobj *items = ca_kobj_get(page, "items");
	CHECK_INT(ca_kobj_array_len(items), SCALE_N);

	c->cbs.on_list_begin(c->store);
	for (size_t i = 0; i < ca_kobj_array_len(items); i++)
		c->cbs.on_object(c->store, CA_WATCH_ADDED, ca_kobj_array_at(items, i), true);
	c->cbs.on_synced(c->store, "5");
	struct ca_store_stats s = stats(c);
	CHECK_INT(s.entries, SCALE_N);
	CHECK_INT(s.adds, SCALE_N);
	CHECK_INT(s.value_bytes, (size_t)SCALE_N * 64);
	CHECK_INT(s.bytes, s.table_bytes + key_bytes + (size_t)SCALE_N * 64);
	CHECK(s.entries <= s.slots / 4 * 3 && s.entries >= s.slots / 8 * 3);
	CHECK(s.probe_max < 200);
	check_bytes_exact(c);
	fprintf(stderr, "store: %d entries, %zu slots, %zu bytes, probe_max %zu\n", SCALE_N,
	        s.slots, s.bytes, s.probe_max);

	int wrong = 0;
	for (int i = 0; i < SCALE_N; i++) {
		char key[96];
		scale_key(key, sizeof key, i);
		const struct pod *p = ca_store_get(c->store, key);
		if (!p || p->index != i || p->rv != i + 10)
			wrong++;
	}
	CHECK_INT(wrong, 0);

	/* Half deleted by watch (the even ones). */
	size_t half_keys = 0;
	for (int i = 0; i < SCALE_N; i++) {
		if (i % 2 == 0) {
			c->cbs.on_object(c->store, CA_WATCH_DELETED,
			                 ca_kobj_array_at(items, (size_t)i), false);
		} else {
			char key[96];
			scale_key(key, sizeof key, i);
			half_keys += ca_store_entry_bytes(strlen(key));
		}
	}
	s = stats(c);
	CHECK_INT(s.entries, SCALE_N / 2);
	CHECK_INT(s.deletes, SCALE_N / 2);
	CHECK_INT(c->deletes, SCALE_N / 2);
	CHECK_INT(s.bytes, s.table_bytes + half_keys + (size_t)(SCALE_N / 2) * 64);
	wrong = 0;
	for (int i = 0; i < SCALE_N; i++) {
		char key[96];
		scale_key(key, sizeof key, i);
		const struct pod *p = ca_store_get(c->store, key);
		if ((i % 2 == 0) != (p == NULL) || (p && p->index != i))
			wrong++;
	}
	CHECK_INT(wrong, 0);

	/* Relist with i % 4 == 1 (stored: updated) and i % 4 == 2 (deleted
	 * above: added again); i % 4 == 3 is missing and swept. */
	c->cbs.on_list_begin(c->store);
	size_t relist_keys = 0;
	for (int i = 0; i < SCALE_N; i++) {
		if (i % 4 != 1 && i % 4 != 2)
			continue;
		c->cbs.on_object(c->store, CA_WATCH_ADDED, ca_kobj_array_at(items, (size_t)i),
		                 true);
		char key[96];
		scale_key(key, sizeof key, i);
		relist_keys += ca_store_entry_bytes(strlen(key));
	}
	c->cbs.on_synced(c->store, "6");
	s = stats(c);
	CHECK_INT(s.entries, SCALE_N / 2);
	CHECK_INT(s.adds, SCALE_N + SCALE_N / 4);
	CHECK_INT(s.updates, SCALE_N / 4);
	CHECK_INT(s.swept, SCALE_N / 4);
	CHECK_INT(s.deletes, SCALE_N / 2 + SCALE_N / 4);
	CHECK_INT(s.sweeps, 2);
	CHECK_INT(c->adds, s.adds);
	CHECK_INT(c->updates, s.updates);
	CHECK_INT(c->deletes, s.deletes);
	CHECK_INT(s.bytes, s.table_bytes + relist_keys + (size_t)(SCALE_N / 2) * 64);
	wrong = 0;
	for (int i = 0; i < SCALE_N; i++) {
		char key[96];
		scale_key(key, sizeof key, i);
		bool want = i % 4 == 1 || i % 4 == 2;
		if (ca_store_contains(c->store, key) != want)
			wrong++;
	}
	CHECK_INT(wrong, 0);
	size_t visited = 0;
	ca_store_foreach(c->store, visit_count, &visited);
	CHECK_INT(visited, SCALE_N / 2);

	/* Everything deleted: the table shrinks back. */
	const char *none[] = {NULL};
	list_of(c, "ns", none, true);
	s = stats(c);
	CHECK_INT(s.entries, 0);
	CHECK_INT(s.slots, 16);
	CHECK_INT(s.bytes, 16 * 9);
	CHECK_INT(c->live, 0);
	ca_kobj_free(page);
	consumer_free(c);
}

/* Keys an attacker would pick: one long shared prefix, differing only at
 * the end. With a weak or unkeyed hash they pile up in one probe run. */
static void test_hostile_keys(void)
{
	struct consumer *c = consumer_new(CA_STORE_KEY_NAME, 0, 0);
	if (!c)
		return;
	c->log = false;
	char ns[CA_STORE_NAMESPACE_MAX + 1], name[CA_STORE_NAME_MAX + 1];
	memset(ns, 'n', sizeof ns - 1);
	ns[sizeof ns - 1] = '\0';
	memset(name, 'x', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	struct ca_buf b;
	ca_buf_init(&b, 0);
	ca_buf_append_str(&b, "{\"items\":[");
	const int n = 50000;
	for (int i = 0; i < n; i++) {
		/* The last 5 bytes differ; a trailing letter pair makes "…a" and
		 * "…b" neighbours. */
		snprintf(name + CA_STORE_NAME_MAX - 6, 7, "%05d%c", i / 2, i % 2 ? 'b' : 'a');
		ca_buf_printf(
		        &b,
		        "%s{\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\",\"resourceVersion\":"
		        "\"%d\"},\"spec\":{\"priority\":%d}}",
		        i ? "," : "", name, ns, i, i);
	}
	ca_buf_append_str(&b, "]}");
	c->cbs.on_list_begin(c->store);
	deliver_items(c, b.data);
	c->cbs.on_synced(c->store, "1");
	ca_buf_fini(&b);
	struct ca_store_stats s = stats(c);
	CHECK_INT(s.entries, n);
	/* Linear probing below 3/4 full with a good hash: a few dozen at most
	 * here; a hash that ignored the tail would give tens of thousands. */
	CHECK(s.probe_max < 200);
	fprintf(stderr, "hostile keys: %d entries, probe_max %zu\n", n, s.probe_max);
	int wrong = 0;
	for (int i = 0; i < n; i++) {
		char key[CA_STORE_KEY_MAX + 1];
		snprintf(name + CA_STORE_NAME_MAX - 6, 7, "%05d%c", i / 2, i % 2 ? 'b' : 'a');
		snprintf(key, sizeof key, "%s/%s", ns, name);
		const struct pod *p = ca_store_get(c->store, key);
		if (!p || p->index != i)
			wrong++;
	}
	CHECK_INT(wrong, 0);
	consumer_free(c);
}

/* Each store hashes with its own random key: the same keys land in a
 * different order. */
struct order {
	char keys[256][16];
	int n;
};

static bool collect_order(void *arg, const char *key, void *value)
{
	struct order *o = arg;
	(void)value;
	if (o->n < 256)
		ca_strlcpy(o->keys[o->n++], key, sizeof o->keys[0]);
	return true;
}

static void test_seeds(void)
{
	struct consumer *c1 = consumer_new(CA_STORE_KEY_NAME, 0, 0);
	struct consumer *c2 = consumer_new(CA_STORE_KEY_NAME, 0, 0);
	struct order *o1 = calloc(1, sizeof *o1), *o2 = calloc(1, sizeof *o2);
	if (c1 && c2 && o1 && o2) {
		c1->log = c2->log = false;
		for (int i = 0; i < 200; i++) {
			char name[16];
			snprintf(name, sizeof name, "p%d", i);
			watch(c1, CA_WATCH_ADDED, "ns", name, 1, NULL);
			watch(c2, CA_WATCH_ADDED, "ns", name, 1, NULL);
		}
		ca_store_foreach(c1->store, collect_order, o1);
		ca_store_foreach(c2->store, collect_order, o2);
		CHECK_INT(o1->n, 200);
		CHECK_INT(o2->n, 200);
		int same = 0;
		for (int i = 0; i < 200; i++)
			same += strcmp(o1->keys[i], o2->keys[i]) == 0;
		CHECK(same < 200);
	}
	free(o1);
	free(o2);
	consumer_free(c1);
	consumer_free(c2);
}

struct visit {
	struct consumer *c;
	int seen, stop_after;
	int wrong;
	bool mutate; /* start a LIST from inside the callback */
};

static bool visit(void *arg, const char *key, void *value)
{
	struct visit *v = arg;
	v->seen++;
	if (ca_store_get(v->c->store, key) != value || !pod_ok(value))
		v->wrong++;
	if (v->mutate)
		ca_store_list_begin(v->c->store);
	return v->seen != v->stop_after;
}

static void test_foreach(void)
{
	struct consumer *c = consumer_new(CA_STORE_KEY_NAME, 0, 0);
	if (!c)
		return;
	for (int i = 0; i < 10; i++) {
		char name[8];
		snprintf(name, sizeof name, "p%d", i);
		watch(c, CA_WATCH_ADDED, "ns", name, i, NULL);
	}
	struct visit v = {.c = c};
	ca_store_foreach(c->store, visit, &v);
	CHECK_INT(v.seen, 10);
	CHECK_INT(v.wrong, 0);
	v = (struct visit){.c = c, .stop_after = 3};
	ca_store_foreach(c->store, visit, &v);
	CHECK_INT(v.seen, 3);

	/* Changing the store from inside foreach is forbidden: asserted (the
	 * child aborts), or refused when assertions are compiled out. The
	 * change tried is one that allocates nothing, so that the child's
	 * heap is the parent's and valgrind has nothing to say about it. */
#ifdef NDEBUG
	v = (struct visit){.c = c, .mutate = true};
	ca_store_foreach(c->store, visit, &v);
	CHECK_INT(stats(c).lists, 0);
#else
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit no_core = {0, 0};
		setrlimit(RLIMIT_CORE, &no_core);
		if (!freopen("/dev/null", "w", stderr))
			_exit(3);
		v = (struct visit){.c = c, .mutate = true};
		ca_store_foreach(c->store, visit, &v);
		_exit(0); /* not reached when the assertion works */
	}
	int status = 0;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
#endif
	CHECK_INT(ca_store_count(c->store), 10);
	consumer_free(c);
}

/* The callbacks the store fills, and a consumer that wraps them. */
struct wrapper {
	struct ca_store *store;
	int begins, objects, synced;
	char rv[32];
};

static void w_begin(void *arg)
{
	struct wrapper *w = arg;
	w->begins++;
	ca_store_list_begin(w->store);
}

static void w_object(void *arg, enum ca_watch_type type, const struct ca_kobj *obj, bool from_list)
{
	struct wrapper *w = arg;
	w->objects++;
	ca_store_object(w->store, type, obj, from_list);
}

static void w_synced(void *arg, const char *rv)
{
	struct wrapper *w = arg;
	w->synced++;
	ca_strlcpy(w->rv, rv, sizeof w->rv);
	ca_store_list_done(w->store, rv);
}

static void test_reflector_callbacks(void)
{
	struct consumer *c = consumer_new(CA_STORE_KEY_NAME, 0, 0);
	if (!c)
		return;
	struct ca_reflector_callbacks cbs;
	memset(&cbs, 0xa5, sizeof cbs);
	ca_store_reflector_callbacks(c->store, &cbs);
	CHECK(cbs.on_list_begin == ca_store_list_begin);
	CHECK(cbs.on_object == ca_store_object);
	CHECK(cbs.on_synced == ca_store_list_done);
	CHECK(cbs.on_resource_version == NULL);

	struct wrapper w = {.store = c->store};
	const struct ca_reflector_callbacks wrapped = {
	        .on_list_begin = w_begin, .on_object = w_object, .on_synced = w_synced};
	const char *page =
	        "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"77\"},\"items\":["
	        "{\"metadata\":{\"name\":\"a\",\"namespace\":\"x\",\"resourceVersion\":\"70\"}},"
	        "{\"metadata\":{\"name\":\"b\",\"namespace\":\"x\",\"resourceVersion\":\"71\"}}]}";
	struct ca_kobj *o = NULL;
	CHECK_INT(ca_kobj_parse(page, strlen(page), &o), CA_OK);
	const struct ca_kobj *items = ca_kobj_get(o, "items");
	wrapped.on_list_begin(&w);
	for (size_t i = 0; i < ca_kobj_array_len(items); i++)
		wrapped.on_object(&w, CA_WATCH_ADDED, ca_kobj_array_at(items, i), true);
	wrapped.on_synced(&w, ca_kobj_str(o, "metadata.resourceVersion"));
	ca_kobj_free(o);
	CHECK_INT(w.begins, 1);
	CHECK_INT(w.objects, 2);
	CHECK_STR(w.rv, "77");
	CHECK(ca_store_synced(c->store));
	CHECK_INT(rv_at(c, "x/a"), 70);
	CHECK_INT(rv_at(c, "x/b"), 71);
	consumer_free(c);
}

/* ------------------------------------------------------------------ */
/* A real reflector against the simulated API server */

static struct {
	pid_t pid;
	char dir[128];
	char api[128];
	char ctl[128];
	char kubeconfig[256];
} sim;

static struct ca_loop *loop;

static bool sim_start(void)
{
	int pfd[2];
	snprintf(sim.dir, sizeof sim.dir, "/tmp/ca-kubesim-XXXXXX");
	if (!mkdtemp(sim.dir) || pipe(pfd) != 0)
		return false;
	sim.pid = fork();
	if (sim.pid < 0)
		return false;
	if (sim.pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execl("/usr/bin/python3", "python3", CA_SOURCE_ROOT "/tests/kubesim/kubesim.py",
		      "--state-dir", sim.dir, "--bookmark-interval", "1", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	char line[512];
	size_t n = 0;
	int64_t deadline = ca_now_monotonic_ms() + 60000;
	while (n < sizeof line - 1 && ca_now_monotonic_ms() < deadline) {
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		if (poll(&p, 1, 500) <= 0)
			continue;
		ssize_t r = read(pfd[0], line + n, sizeof line - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		line[n] = '\0';
		if (strchr(line, '\n'))
			break;
	}
	close(pfd[0]);
	line[n] = '\0';
	if (sscanf(line, "READY %127s %127s", sim.api, sim.ctl) != 2) {
		fprintf(stderr, "kubesim did not start: \"%s\"\n", line);
		return false;
	}
	snprintf(sim.kubeconfig, sizeof sim.kubeconfig, "%s/kubeconfig", sim.dir);
	return true;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void sim_stop(void)
{
	if (sim.pid > 0) {
		kill(sim.pid, SIGTERM);
		waitpid(sim.pid, NULL, 0);
		sim.pid = 0;
	}
	if (sim.dir[0])
		nftw(sim.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static size_t ctl_write(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

/* A blocking call to the control port; returns the HTTP status. */
static long ctl(const char *method, const char *path, const char *body)
{
	char url[512];
	snprintf(url, sizeof url, "%s%s", sim.ctl, path);
	CURL *e = curl_easy_init();
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
	if (body)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ctl_write);
	long code = 0;
	if (curl_easy_perform(e) == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	return code;
}

static long create_pod(const char *ns, const char *name)
{
	char body[256];
	snprintf(body, sizeof body,
	         "{\"resource\":\"pods\",\"object\":{\"metadata\":{\"name\":\"%s\",\"namespace\":"
	         "\"%s\"},"
	         "\"spec\":{\"nodeName\":\"node-a\",\"containers\":[{\"name\":\"c\",\"image\":"
	         "\"x\"}]}}}",
	         name, ns);
	return ctl("POST", "/objects", body);
}

static long delete_pod(const char *ns, const char *name)
{
	char path[256];
	snprintf(path, sizeof path, "/objects?resource=pods&namespace=%s&name=%s", ns, name);
	return ctl("DELETE", path, NULL);
}

struct waiter {
	bool (*pred)(void *);
	void *arg;
	int64_t deadline;
	bool ok;
};

static void wait_tick(void *arg)
{
	struct waiter *w = arg;
	if (w->pred(w->arg)) {
		w->ok = true;
		ca_loop_stop(loop);
	} else if (ca_now_monotonic_ms() >= w->deadline) {
		ca_loop_stop(loop);
	}
}

static bool run_until(bool (*pred)(void *), void *arg)
{
	struct waiter w = {pred, arg, ca_now_monotonic_ms() + 30000, false};
	struct ca_loop_timer *t = NULL;
	if (ca_loop_timer_new(loop, wait_tick, &w, &t) != CA_OK)
		return false;
	ca_loop_timer_start(t, 0, 10);
	ca_loop_run(loop);
	ca_loop_timer_free(t);
	return w.ok;
}

/* The consumer's own callbacks around the store's: it counts LISTs and
 * can pause the reflector after the first object of a LIST. */
struct e2e {
	struct consumer *c;
	struct ca_reflector *r;
	int begins, list_objects;
	bool pause_in_list;
	bool paused;
	uint64_t want_sweeps;
	size_t want_count;
};

static void e2e_begin(void *arg)
{
	struct e2e *t = arg;
	t->begins++;
	t->list_objects = 0;
	ca_store_list_begin(t->c->store);
}

static void e2e_object(void *arg, enum ca_watch_type type, const struct ca_kobj *obj,
                       bool from_list)
{
	struct e2e *t = arg;
	ca_store_object(t->c->store, type, obj, from_list);
	if (from_list && ++t->list_objects == 1 && t->pause_in_list) {
		t->pause_in_list = false;
		t->paused = true;
		ca_reflector_pause(t->r);
	}
}

static void e2e_synced(void *arg, const char *rv)
{
	struct e2e *t = arg;
	ca_store_list_done(t->c->store, rv);
}

static bool e2e_ready(void *arg)
{
	struct e2e *t = arg;
	struct ca_store_stats s = stats(t->c);
	return s.sweeps >= t->want_sweeps && s.entries == t->want_count;
}

static bool e2e_paused(void *arg)
{
	return ((struct e2e *)arg)->paused;
}

static bool e2e_has(void *arg)
{
	struct e2e *t = arg;
	const struct pod *p = pod_at(t->c, "st/p1");
	return p && strcmp(p->phase, "Succeeded") == 0 && !ca_store_contains(t->c->store, "st/p2");
}

static void test_with_reflector(void)
{
	struct ca_kube_options ko = {
	        .kubeconfig = sim.kubeconfig,
	        .user_agent = "collect-agent-test/0",
	        .request_timeout_ms = 20000,
	        .connect_timeout_ms = 5000,
	};
	char err[256] = "";
	struct ca_kube *k = NULL;
	struct e2e t = {0};
	CHECK_INT(ca_kube_new(&k, loop, &ko, err, sizeof err), CA_OK);
	t.c = consumer_new(CA_STORE_KEY_NAME, 0, 0);
	if (!k || !t.c)
		goto out;
	t.c->log = false;
	char name[16];
	for (int i = 1; i <= 6; i++) {
		snprintf(name, sizeof name, "p%d", i);
		long code = create_pod("st", name);
		CHECK(code == 200 || code == 201);
	}
	const struct ca_reflector_callbacks cbs = {
	        .on_list_begin = e2e_begin, .on_object = e2e_object, .on_synced = e2e_synced};
	struct ca_reflector_options ro = {
	        .name = "pods",
	        .path = "/api/v1/namespaces/st/pods",
	        .page_size = 2,
	        .watch_timeout_min_ms = 20000,
	        .watch_timeout_max_ms = 30000,
	        .backoff_initial_ms = 100,
	        .backoff_max_ms = 400,
	};
	CHECK_INT(ca_reflector_new(&t.r, k, &ro, &cbs, &t), CA_OK);
	if (!t.r)
		goto out;
	CHECK_INT(ca_reflector_start(t.r), CA_OK);
	t.want_sweeps = 1;
	t.want_count = 6;
	CHECK(run_until(e2e_ready, &t));
	CHECK(ca_store_synced(t.c->store));
	CHECK(ca_store_contains(t.c->store, "st/p6"));

	/* Watch: a change and a delete. */
	CHECK_INT(ctl("PUT", "/objects",
	              "{\"resource\":\"pods\",\"object\":{\"metadata\":{\"name\":\"p1\","
	              "\"namespace\":"
	              "\"st\"},\"status\":{\"phase\":\"Succeeded\"}}}"),
	          200);
	CHECK_INT(delete_pod("st", "p2"), 200);
	CHECK(run_until(e2e_has, &t));
	CHECK_INT(ca_store_count(t.c->store), 5);

	/* The watch goes down; while it is, p3 is deleted, p7 created and the
	 * history compacted: the watch gets 410 and the reflector relists.
	 * That relist is paused after its first object and its next page
	 * fails (HTTP 500), so it starts over: two list_begins, one sweep,
	 * and exactly p3 deleted. */
	uint64_t deletes = stats(t.c).deletes;
	t.pause_in_list = true;
	CHECK_INT(ctl("POST", "/faults", "{\"drop_watches\":true}"), 200);
	CHECK_INT(delete_pod("st", "p3"), 200);
	long code = create_pod("st", "p7");
	CHECK(code == 200 || code == 201);
	CHECK_INT(ctl("POST", "/compact", "{}"), 200);
	CHECK(run_until(e2e_paused, &t));
	CHECK_INT(t.begins, 2);
	CHECK_INT(ctl("POST", "/faults",
	              "{\"status\":500,\"count\":1,\"path_prefix\":\"/api/v1/namespaces/st/pods\","
	              "\"verb\":\"list\"}"),
	          200);
	ca_reflector_resume(t.r);
	t.want_sweeps = 2;
	t.want_count = 5;
	CHECK(run_until(e2e_ready, &t));
	CHECK_INT(t.begins, 3);
	struct ca_store_stats s = stats(t.c);
	CHECK_INT(s.lists, 3);
	CHECK_INT(s.sweeps, 2);
	CHECK_INT(s.swept, 1);
	CHECK_INT(s.deletes, deletes + 1);
	CHECK(!ca_store_contains(t.c->store, "st/p3"));
	CHECK(ca_store_contains(t.c->store, "st/p7"));
	for (int i = 1; i <= 7; i++) {
		snprintf(name, sizeof name, "st/p%d", i);
		CHECK(ca_store_contains(t.c->store, name) == (i != 2 && i != 3));
	}
	CHECK(!ca_store_over_budget(t.c->store));
out:
	ca_reflector_free(t.r);
	consumer_free(t.c);
	ca_kube_free(k);
}

int main(void)
{
	test_sizes();
	test_callbacks();
	test_relist();
	test_interrupted_relist();
	test_uid_keys();
	test_invalid();
	test_cap_entries();
	test_cap_bytes();
	test_scale();
	test_hostile_keys();
	test_seeds();
	test_foreach();
	test_reflector_callbacks();

	signal(SIGPIPE, SIG_IGN);
	unsetenv("KUBECONFIG");
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("HTTPS_PROXY");
	unsetenv("ALL_PROXY");
	unsetenv("all_proxy");
	ca_log_configure(getenv("CA_TEST_LOG") ? CA_LOG_DEBUG : CA_LOG_ERROR, false);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (ca_loop_new(&loop) == CA_OK && sim_start()) {
		test_with_reflector();
	} else {
		fprintf(stderr, "cannot start the simulated API server\n");
		CHECK(false);
	}
	sim_stop();
	ca_loop_free(loop);
	curl_global_cleanup();
	return check_report();
}
