/* Unit tests for kube/kobj.h: the read-only view over parsed Kubernetes
 * objects, on objects captured from a real kube-apiserver; and for
 * kube/json_parse.h, the parser under it, on the edge cases where a JSON
 * parser usually goes wrong. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "core/buf.h"
#include "kube/json_parse.h"
#include "kube/kobj.h"
#include "kube/salvage.h"

static struct ca_kobj *parse_sample(const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", CA_SAMPLES_DIR, name);
	size_t len = 0;
	char *data = check_read_file(path, &len);
	CHECK(data != NULL);
	if (!data)
		return NULL;
	struct ca_kobj *o = NULL;
	CHECK_INT(ca_kobj_parse(data, len, &o), CA_OK);
	free(data);
	return o;
}

struct collect {
	char keys[16][64];
	size_t n;
	size_t stop_after; /* 0 = never stop */
};

static bool collect_member(void *arg, const char *key, const struct ca_kobj *value)
{
	struct collect *c = arg;
	CHECK(value != NULL);
	if (c->n < 16)
		snprintf(c->keys[c->n], sizeof c->keys[0], "%s", key);
	c->n++;
	return !(c->stop_after && c->n >= c->stop_after);
}

static bool has_key(const struct collect *c, const char *key)
{
	for (size_t i = 0; i < c->n && i < 16; i++) {
		if (strcmp(c->keys[i], key) == 0)
			return true;
	}
	return false;
}

static void test_pod(void)
{
	struct ca_kobj *pod = parse_sample("pod-crashloop-oomkilled.json");
	if (!pod)
		return;
	/* Dotted paths. */
	CHECK_STR(ca_kobj_str(pod, "kind"), "Pod");
	CHECK_STR(ca_kobj_str(pod, "metadata.name"), "checkout-6c9d8f7b5-x2k4p");
	CHECK_STR(ca_kobj_str(pod, "metadata.uid"), "054befa1-52ee-462d-ad9c-aa2bc56dcd58");
	CHECK_STR(ca_kobj_str(pod, "metadata.labels.app"), "checkout");
	CHECK_STR(ca_kobj_str(pod, "spec.nodeName"), "ip-10-0-12-34.eu-west-1.compute.internal");
	CHECK_STR(ca_kobj_str(pod, "status.phase"), "Running");
	/* A resourceVersion is a string, and stays one. */
	CHECK_STR(ca_kobj_str(pod, "metadata.resourceVersion"), "2225");
	CHECK_INT(ca_kobj_int(pod, "metadata.resourceVersion", -1), -1);

	/* Ints and bools. */
	CHECK_INT(ca_kobj_int(pod, "spec.terminationGracePeriodSeconds", -1), 30);
	CHECK_INT(ca_kobj_int(pod, "spec.priority", -1), 0);
	CHECK(ca_kobj_bool(pod, "spec.enableServiceLinks", false));

	/* Arrays. */
	const struct ca_kobj *cs = ca_kobj_get(pod, "status.containerStatuses");
	CHECK(cs != NULL);
	CHECK_INT(ca_kobj_array_len(cs), 2);
	const struct ca_kobj *c0 = ca_kobj_array_at(cs, 0);
	CHECK_STR(ca_kobj_str(c0, "name"), "checkout");
	CHECK_STR(ca_kobj_str(c0, "state.waiting.reason"), "CrashLoopBackOff");
	CHECK_STR(ca_kobj_str(c0, "lastState.terminated.reason"), "OOMKilled");
	CHECK_INT(ca_kobj_int(c0, "lastState.terminated.exitCode", 0), 137);
	CHECK_INT(ca_kobj_int(c0, "restartCount", -1), 7);
	CHECK(!ca_kobj_bool(c0, "ready", true));
	CHECK(!ca_kobj_bool(c0, "started", true));
	const struct ca_kobj *c1 = ca_kobj_array_at(cs, 1);
	CHECK_STR(ca_kobj_str(c1, "name"), "envoy");
	CHECK(ca_kobj_bool(c1, "ready", false));
	CHECK(ca_kobj_get(c1, "state.running") != NULL);
	CHECK(ca_kobj_get(c1, "state.waiting") == NULL);
	CHECK(ca_kobj_array_at(cs, 2) == NULL);
	CHECK(ca_kobj_array_at(cs, SIZE_MAX) == NULL);

	const struct ca_kobj *conds = ca_kobj_get(pod, "status.conditions");
	CHECK_INT(ca_kobj_array_len(conds), 4);
	size_t ready_false = 0;
	for (size_t i = 0; i < ca_kobj_array_len(conds); i++) {
		const struct ca_kobj *c = ca_kobj_array_at(conds, i);
		const char *type = ca_kobj_str(c, "type");
		const char *status = ca_kobj_str(c, "status");
		if (type && status && strcmp(type, "Ready") == 0 && strcmp(status, "False") == 0)
			ready_false++;
		/* lastProbeTime is an explicit null. */
		CHECK(ca_kobj_get(c, "lastProbeTime") != NULL);
		CHECK(ca_kobj_is_null(ca_kobj_get(c, "lastProbeTime")));
		CHECK(ca_kobj_str(c, "lastProbeTime") == NULL);
	}
	CHECK_INT(ready_false, 1);

	/* Resources are quantity strings. */
	const struct ca_kobj *containers = ca_kobj_get(pod, "spec.containers");
	const struct ca_kobj *res = ca_kobj_get(ca_kobj_array_at(containers, 0), "resources");
	CHECK_STR(ca_kobj_str(res, "limits.memory"), "512Mi");
	CHECK_STR(ca_kobj_str(res, "requests.cpu"), "250m");

	/* Wrong types and missing members give the default. */
	CHECK(ca_kobj_str(pod, "spec.priority") == NULL);          /* an int */
	CHECK(ca_kobj_str(pod, "metadata") == NULL);               /* an object */
	CHECK(ca_kobj_str(pod, "status.containerStatuses") == NULL); /* an array */
	CHECK_INT(ca_kobj_int(pod, "status.phase", 42), 42);       /* a string */
	CHECK_INT(ca_kobj_int(pod, "spec.enableServiceLinks", 42), 42); /* a bool */
	CHECK_INT(ca_kobj_int(pod, "no.such.path", -7), -7);
	CHECK(ca_kobj_bool(pod, "status.phase", true));            /* a string */
	CHECK(!ca_kobj_bool(pod, "spec.priority", false));         /* an int */
	CHECK(ca_kobj_get(pod, "status.phase.deeper") == NULL);    /* through a string */
	CHECK(ca_kobj_get(pod, "status.containerStatuses.0") == NULL); /* through an array */
	CHECK(ca_kobj_get(pod, "metadata.") == NULL);
	CHECK(ca_kobj_get(pod, ".metadata") == NULL);
	CHECK(ca_kobj_get(pod, "metadata..name") == NULL);
	CHECK_INT(ca_kobj_array_len(ca_kobj_get(pod, "metadata")), 0); /* not an array */
	CHECK(ca_kobj_array_at(ca_kobj_get(pod, "metadata"), 0) == NULL);
	CHECK(!ca_kobj_is_null(ca_kobj_get(pod, "metadata")));
	CHECK(ca_kobj_is_null(ca_kobj_get(pod, "metadata.deletionTimestamp"))); /* absent */

	/* NULL and empty paths mean the object itself. */
	CHECK(ca_kobj_get(pod, NULL) == pod);
	CHECK(ca_kobj_get(pod, "") == pod);
	CHECK_STR(ca_kobj_str(ca_kobj_get(pod, "kind"), NULL), "Pod");
	CHECK_INT(ca_kobj_int(ca_kobj_get(c0, "restartCount"), NULL, -1), 7);

	/* foreach over labels, and stopping early. */
	struct collect col;
	memset(&col, 0, sizeof col);
	ca_kobj_foreach(ca_kobj_get(pod, "metadata.labels"), collect_member, &col);
	CHECK_INT(col.n, 2);
	CHECK(has_key(&col, "app"));
	CHECK(has_key(&col, "pod-template-hash"));
	memset(&col, 0, sizeof col);
	col.stop_after = 1;
	ca_kobj_foreach(ca_kobj_get(pod, "status"), collect_member, &col);
	CHECK_INT(col.n, 1);
	memset(&col, 0, sizeof col);
	ca_kobj_foreach(containers, collect_member, &col); /* an array: nothing */
	ca_kobj_foreach(NULL, collect_member, &col);
	CHECK_INT(col.n, 0);

	ca_kobj_free(pod);
}

static void test_node(void)
{
	struct ca_kobj *node = parse_sample("node-eks-ready.json");
	if (!node)
		return;
	const struct ca_kobj *labels = ca_kobj_get(node, "metadata.labels");
	CHECK(labels != NULL);
	/* Label keys hold dots and slashes: only ca_kobj_member finds them. */
	CHECK_STR(ca_kobj_str(ca_kobj_member(labels, "topology.kubernetes.io/zone"), NULL),
	          "eu-west-1a");
	CHECK_STR(ca_kobj_str(ca_kobj_member(labels, "node.kubernetes.io/instance-type"), NULL),
	          "m6i.xlarge");
	CHECK_STR(ca_kobj_str(ca_kobj_member(labels, "kubernetes.io/os"), NULL), "linux");
	CHECK(ca_kobj_get(labels, "topology.kubernetes.io/zone") == NULL);
	CHECK(ca_kobj_member(labels, "topology") == NULL);
	CHECK(ca_kobj_member(labels, NULL) == NULL);
	CHECK(ca_kobj_member(NULL, "x") == NULL);
	CHECK(ca_kobj_member(ca_kobj_get(node, "status.conditions"), "0") == NULL);

	CHECK_STR(ca_kobj_str(node, "spec.providerID"), "aws:///eu-west-1a/i-0abc123def4567890");
	CHECK_STR(ca_kobj_str(node, "status.capacity.cpu"), "4");
	CHECK_STR(ca_kobj_str(node, "status.allocatable.pods"), "58");
	CHECK_STR(ca_kobj_str(node, "status.nodeInfo.kubeletVersion"), "v1.28.5-eks-5e0fdde");

	const struct ca_kobj *conds = ca_kobj_get(node, "status.conditions");
	CHECK_INT(ca_kobj_array_len(conds), 4);
	const char *ready = NULL;
	for (size_t i = 0; i < ca_kobj_array_len(conds); i++) {
		const struct ca_kobj *c = ca_kobj_array_at(conds, i);
		const char *type = ca_kobj_str(c, "type");
		if (type && strcmp(type, "Ready") == 0)
			ready = ca_kobj_str(c, "status");
	}
	CHECK_STR(ready, "True");

	const struct ca_kobj *taints = ca_kobj_get(node, "spec.taints");
	CHECK_INT(ca_kobj_array_len(taints), 1);
	CHECK_STR(ca_kobj_str(ca_kobj_array_at(taints, 0), "effect"), "NoSchedule");

	struct collect col;
	memset(&col, 0, sizeof col);
	ca_kobj_foreach(labels, collect_member, &col);
	CHECK_INT(col.n, 8);
	CHECK(has_key(&col, "eks.amazonaws.com/nodegroup"));
	ca_kobj_free(node);
}

static void test_parse_edges(void)
{
	struct ca_kobj *o = (struct ca_kobj *)1;
	CHECK_INT(ca_kobj_parse("{\"a\":", 5, &o), CA_EPROTO);
	CHECK(o == NULL);
	CHECK_INT(ca_kobj_parse("", 0, &o), CA_EPROTO);
	CHECK_INT(ca_kobj_parse("{} {}", 5, &o), CA_EPROTO);
	/* Only len bytes are read: no NUL terminator needed. */
	static const char buf[] = "{\"n\":12,\"r\":3.0,\"f\":2.5,\"big\":9223372036854775807,"
	                          "\"neg\":-4,\"t\":true,\"z\":null,\"s\":\"x\"}GARBAGE";
	CHECK_INT(ca_kobj_parse(buf, sizeof buf - 1 - 7, &o), CA_OK);
	CHECK_INT(ca_kobj_int(o, "n", 0), 12);
	CHECK_INT(ca_kobj_int(o, "r", 0), 3);     /* an integral real */
	CHECK_INT(ca_kobj_int(o, "f", -1), -1);   /* never truncated */
	CHECK_INT(ca_kobj_int(o, "big", 0), INT64_MAX);
	CHECK_INT(ca_kobj_int(o, "neg", 0), -4);
	CHECK(ca_kobj_bool(o, "t", false));
	CHECK(ca_kobj_bool(o, "z", true));        /* null is not a bool */
	CHECK(ca_kobj_is_null(ca_kobj_get(o, "z")));
	CHECK(!ca_kobj_is_null(ca_kobj_get(o, "s")));
	CHECK_INT(ca_kobj_array_len(o), 0);
	ca_kobj_free(o);
	ca_kobj_free(NULL);

	/* A top-level array. */
	CHECK_INT(ca_kobj_parse("[1,\"two\",{\"k\":3}]", 17, &o), CA_OK);
	CHECK_INT(ca_kobj_array_len(o), 3);
	CHECK_INT(ca_kobj_int(ca_kobj_array_at(o, 0), NULL, 0), 1);
	CHECK_STR(ca_kobj_str(ca_kobj_array_at(o, 1), NULL), "two");
	CHECK_INT(ca_kobj_int(ca_kobj_array_at(o, 2), "k", 0), 3);
	CHECK(ca_kobj_get(o, "k") == NULL);
	ca_kobj_free(o);

	/* Lookups on NULL are harmless. */
	CHECK(ca_kobj_get(NULL, "a") == NULL);
	CHECK(ca_kobj_str(NULL, NULL) == NULL);
	CHECK_INT(ca_kobj_int(NULL, "a", 5), 5);
	CHECK(ca_kobj_bool(NULL, "a", true));
	CHECK_INT(ca_kobj_array_len(NULL), 0);
	CHECK(ca_kobj_array_at(NULL, 0) == NULL);
}

/* ------------------------------------------------------------------------ */
/* kube/json_parse.h */

/* One arena for every test document, so its reuse across documents of all
 * shapes and sizes is exercised too. */
static struct ca_json_doc *jdoc;

struct to_json_ctx {
	json_t *obj;
	const struct ca_kobj *parent;
};

static json_t *to_json(const struct ca_kobj *o);

static bool add_member(void *arg, const char *key, const struct ca_kobj *v)
{
	struct to_json_ctx *c = arg;
	/* foreach gives each key once, with the value a lookup gives. */
	CHECK(json_object_get(c->obj, key) == NULL);
	CHECK(ca_kobj_member(c->parent, key) == v);
	json_object_set_new(c->obj, key, to_json(v));
	return true;
}

/* The tape seen through the kobj API (and the node types), as the jansson
 * tree it stands for, so the tests below compare trees. */
static json_t *to_json(const struct ca_kobj *o)
{
	switch (o->type) {
	case CA_JSON_NULL: return json_null();
	case CA_JSON_TRUE: return json_true();
	case CA_JSON_FALSE: return json_false();
	case CA_JSON_INT: return json_integer((json_int_t)o->v.i);
	case CA_JSON_REAL: return json_real(o->v.d);
	case CA_JSON_STRING:
		CHECK_INT(strlen(ca_kobj_str(o, NULL)), o->n);
		return json_stringn_nocheck(o->v.s, o->n);
	case CA_JSON_ARRAY: {
		json_t *a = json_array();
		CHECK_INT(ca_kobj_array_len(o), o->n);
		for (size_t i = 0; i < ca_kobj_array_len(o); i++)
			json_array_append_new(a, to_json(ca_kobj_array_at(o, i)));
		CHECK(ca_kobj_array_at(o, o->n) == NULL);
		return a;
	}
	case CA_JSON_OBJECT: {
		struct to_json_ctx c = {json_object(), o};
		ca_kobj_foreach(o, add_member, &c);
		return c.obj;
	}
	default:
		CHECK(!"unexpected node type");
		return NULL;
	}
}

/* Parse a copy of s[0..n) in a buffer of exactly n bytes, so a read past
 * the end shows under ASan and valgrind. */
static enum ca_err jparse_n(const char *s, size_t n, json_t **out, char *why, size_t whylen)
{
	char *copy = malloc(n ? n : 1);
	CHECK(copy != NULL);
	if (!copy)
		return CA_ENOMEM;
	memcpy(copy, s, n);
	const struct ca_kobj *root = (const struct ca_kobj *)1;
	enum ca_err err = ca_kube_json_parse(jdoc, copy, n, &root, why, whylen);
	free(copy);
	CHECK(err == CA_OK ? root != NULL : root == NULL);
	*out = err == CA_OK && root ? to_json(root) : NULL;
	return err;
}

static json_t *jparse(const char *s)
{
	json_t *j = NULL;
	char why[128];
	enum ca_err err = jparse_n(s, strlen(s), &j, why, sizeof why);
	if (err != CA_OK)
		fprintf(stderr, "parse of %s failed: %s\n", s, why);
	CHECK_INT(err, CA_OK);
	CHECK(j != NULL);
	return j;
}

static bool jaccepts_n(const char *s, size_t n)
{
	json_t *j = (json_t *)1;
	char why[128];
	enum ca_err err = jparse_n(s, n, &j, why, sizeof why);
	bool ok = err == CA_OK;
	CHECK(ok ? j != NULL && why[0] == '\0' : j == NULL && err == CA_EPROTO && why[0] != '\0');
	json_decref(ok ? j : NULL);
	return ok;
}

static bool jaccepts(const char *s)
{
	return jaccepts_n(s, strlen(s));
}

/* n nested arrays (or {"a": objects) around an optional scalar. */
static char *nested(size_t n, bool objects, const char *inner)
{
	size_t open = objects ? 5 : 1, il = strlen(inner);
	char *s = malloc(n * (open + 1) + il + 1);
	if (!s)
		return NULL;
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		memcpy(s + at, objects ? "{\"a\":" : "[", open);
		at += open;
	}
	memcpy(s + at, inner, il);
	at += il;
	for (size_t i = 0; i < n; i++)
		s[at++] = objects ? '}' : ']';
	s[at] = '\0';
	return s;
}

static void test_json_grammar(void)
{
	CHECK(jaccepts("{}"));
	CHECK(jaccepts("[]"));
	CHECK(jaccepts(" \t\r\n{ \"a\" : [ 1 , 2 , { } , [ ] ] } \n"));
	CHECK(jaccepts("true"));
	CHECK(jaccepts("null"));
	CHECK(jaccepts(" 42 "));
	CHECK(jaccepts("\"x\""));

	CHECK(!jaccepts(""));
	CHECK(!jaccepts("   "));
	CHECK(!jaccepts("[1,]"));            /* trailing comma */
	CHECK(!jaccepts("{\"a\":1,}"));
	CHECK(!jaccepts("[,1]"));
	CHECK(!jaccepts("[1,,2]"));
	CHECK(!jaccepts("{\"a\" 1}"));
	CHECK(!jaccepts("{\"a\":}"));
	CHECK(!jaccepts("{1:2}"));           /* keys are strings */
	CHECK(!jaccepts("{'a':1}"));
	CHECK(!jaccepts("{\"a\":[1,2"));     /* unclosed */
	CHECK(!jaccepts("[1,2}"));           /* mismatched */
	CHECK(!jaccepts("{\"a\":1}x"));      /* trailing garbage */
	CHECK(!jaccepts("{} {}"));
	CHECK(!jaccepts("[tru]"));
	CHECK(!jaccepts("[nul]"));
	CHECK(!jaccepts("[True]"));
	CHECK(!jaccepts("[truex]"));
	CHECK(!jaccepts("[true1]"));
	CHECK(!jaccepts("[Infinity]"));
	CHECK(!jaccepts("[NaN]"));
	CHECK(!jaccepts("{\v\"a\":1}"));     /* not JSON whitespace */
	CHECK(!jaccepts("\xef\xbb\xbf{}"));  /* a BOM is not skipped (as jansson) */
	CHECK(!jaccepts("/* c */ {}"));

	/* jansson loses a NUL byte read just after a number or bare word;
	 * the parser matches that, and only that. */
	CHECK(jaccepts_n("1\0", 2));
	CHECK(jaccepts_n("[true\0,null\0]", 13));
	CHECK(!jaccepts_n("[1\0\0]", 5));
	CHECK(!jaccepts_n("\"a\"\0", 4));
	CHECK(!jaccepts_n("{}\0", 3));
	CHECK(!jaccepts_n("[1,\0 2]", 7));

	/* The error text says where. */
	json_t *j = (json_t *)1;
	char why[128];
	CHECK_INT(jparse_n("{\"a\":[1,2}", 10, &j, why, sizeof why), CA_EPROTO);
	CHECK(j == NULL);
	CHECK(strstr(why, "at byte 9") != NULL);
	CHECK_INT(jparse_n("[1] x", 5, &j, NULL, 0), CA_EPROTO); /* no error buffer */
	const struct ca_kobj *r = NULL;
	CHECK_INT(ca_kube_json_parse(jdoc, NULL, 0, &r, why, sizeof why), CA_EINVAL);
	CHECK_INT(ca_kube_json_parse(jdoc, "{}", 2, NULL, why, sizeof why), CA_EINVAL);
	CHECK_INT(ca_kube_json_parse(NULL, "{}", 2, &r, why, sizeof why), CA_EINVAL);
	char tiny[4];
	CHECK_INT(jparse_n("[", 1, &j, tiny, sizeof tiny), CA_EPROTO);
	CHECK_INT(strlen(tiny), 3); /* truncated, terminated */
}

static void test_json_strings(void)
{
	json_t *j = jparse("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\\u0001\", "
	                   "\"\\ud83d\\ude00\", \"caf\xc3\xa9 \xf0\x9d\x84\x9e\", \"a\x7f\"]");
	CHECK_STR(json_string_value(json_array_get(j, 0)), "\"\\/\b\f\n\r\t");
	CHECK_STR(json_string_value(json_array_get(j, 1)), "\xc3\xa9\xe2\x82\xac\x01");
	CHECK_STR(json_string_value(json_array_get(j, 2)), "\xf0\x9f\x98\x80");
	CHECK_STR(json_string_value(json_array_get(j, 3)), "caf\xc3\xa9 \xf0\x9d\x84\x9e");
	CHECK_STR(json_string_value(json_array_get(j, 4)), "a\x7f");
	CHECK_INT(json_string_length(json_array_get(j, 2)), 4);
	json_decref(j);

	/* Escaped keys, and a key escaped while the value is escaped too. */
	j = jparse("{\"k\\\"ey\":\"v\\n\",\"\\u00e9\":2,\"a\\/b\":\"\\t\"}");
	CHECK_STR(json_string_value(json_object_get(j, "k\"ey")), "v\n");
	CHECK_INT(json_integer_value(json_object_get(j, "\xc3\xa9")), 2);
	CHECK_STR(json_string_value(json_object_get(j, "a/b")), "\t");
	json_decref(j);

	/* Escaped strings longer than the parser's local scratch space. */
	{
		char src[9000], want[2000];
		size_t at = 0, w = 0;
		src[at++] = '{';
		src[at++] = '"';
		for (int i = 0; i < 600; i++) {
			memcpy(src + at, "k\\t", 3);
			at += 3;
			want[w++] = 'k';
			want[w++] = '\t';
		}
		want[w] = '\0';
		memcpy(src + at, "\":\"", 3);
		at += 3;
		for (int i = 0; i < 900; i++) {
			memcpy(src + at, "\\u00e9x", 7);
			at += 7;
		}
		memcpy(src + at, "\"}", 3);
		j = jparse(src);
		CHECK_INT(json_object_size(j), 1);
		const char *v = json_string_value(json_object_get(j, want));
		CHECK(v != NULL);
		CHECK_INT(v ? strlen(v) : 0, 900 * 3);
		CHECK(v && memcmp(v, "\xc3\xa9x\xc3\xa9x", 6) == 0);
		json_decref(j);
	}

	/* Surrogates: pairs only, in the right order. */
	CHECK(!jaccepts("[\"\\ud800\"]"));
	CHECK(!jaccepts("[\"\\ud800x\"]"));
	CHECK(!jaccepts("[\"\\ud800\\ud800\"]"));
	CHECK(!jaccepts("[\"\\ud800\\n\"]"));
	CHECK(!jaccepts("[\"\\udc00\"]"));
	CHECK(!jaccepts("[\"\\udc00\\ud800\"]"));
	CHECK(!jaccepts("[\"\\ud800\\u"));
	/* Bad escapes. */
	CHECK(!jaccepts("[\"\\x\"]"));
	CHECK(!jaccepts("[\"\\'\"]"));
	CHECK(!jaccepts("[\"\\u12\"]"));
	CHECK(!jaccepts("[\"\\u12g4\"]"));
	CHECK(!jaccepts("[\"\\U0041\"]"));
	CHECK(!jaccepts("[\"abc\\"));
	CHECK(!jaccepts("[\"abc"));
	/* An escaped NUL in a value becomes U+FFFD (Go writes NUL that way);
	 * in a key it is refused; a raw NUL and raw control bytes are errors. */
	json_t *nul = jparse("{\"a\":\"x\\u0000y\\u0000\"}");
	CHECK_STR(json_string_value(json_object_get(nul, "a")), "x\xEF\xBF\xBDy\xEF\xBF\xBD");
	json_decref(nul);
	CHECK(!jaccepts("{\"a\\u0000\":1}"));
	CHECK(!jaccepts_n("{\"a\":\"x\0y\"}", 11));
	CHECK(!jaccepts("[\"a\tb\"]"));
	CHECK(!jaccepts("[\"a\nb\"]"));
	CHECK(!jaccepts("[\"a\x1f\"]"));
	/* Invalid UTF-8: overlong, encoded surrogate, above U+10FFFF, bad
	 * leads, truncated, stray continuation, outside a string. */
	CHECK(jaccepts("[\"\xf4\x8f\xbf\xbf\"]")); /* U+10FFFF */
	CHECK(jaccepts("[\"\xed\x9f\xbf\xee\x80\x80\"]")); /* around the surrogates */
	CHECK(!jaccepts("[\"\xc0\xaf\"]"));
	CHECK(!jaccepts("[\"\xc1\xbf\"]"));
	CHECK(!jaccepts("[\"\xe0\x80\xaf\"]"));
	CHECK(!jaccepts("[\"\xf0\x80\x80\xaf\"]"));
	CHECK(!jaccepts("[\"\xed\xa0\x80\"]"));
	CHECK(!jaccepts("[\"\xf4\x90\x80\x80\"]"));
	CHECK(!jaccepts("[\"\xf5\x80\x80\x80\"]"));
	CHECK(!jaccepts("[\"\xff\"]"));
	CHECK(!jaccepts("[\"\xe2\x82\"]"));
	CHECK(!jaccepts("[\"\xe2\x82"));
	CHECK(!jaccepts("[\"\x80\"]"));
	CHECK(!jaccepts("[\"\xc3\"\"]"));
	CHECK(!jaccepts("\xc3\xa9"));
}

static void test_json_numbers(void)
{
	json_t *j = jparse("[9223372036854775807,-9223372036854775808,-0,0,1.0,1e2,-0.0,"
	                   "1e-400,1.5E+3,0.1,-12,123456789012345678]");
	CHECK(json_is_integer(json_array_get(j, 0)));
	CHECK(json_integer_value(json_array_get(j, 0)) == INT64_MAX);
	CHECK(json_integer_value(json_array_get(j, 1)) == INT64_MIN);
	CHECK(json_is_integer(json_array_get(j, 2)));
	CHECK_INT(json_integer_value(json_array_get(j, 2)), 0);
	CHECK(json_is_real(json_array_get(j, 4))); /* 1.0 stays a real */
	CHECK(json_real_value(json_array_get(j, 4)) == 1.0);
	CHECK(json_is_real(json_array_get(j, 5)));
	CHECK(json_real_value(json_array_get(j, 5)) == 100.0);
	CHECK(json_is_real(json_array_get(j, 6)));
	CHECK(signbit(json_real_value(json_array_get(j, 6))));
	CHECK(json_is_real(json_array_get(j, 7))); /* underflow is accepted */
	CHECK(json_real_value(json_array_get(j, 7)) == 0.0);
	CHECK(json_real_value(json_array_get(j, 8)) == 1500.0);
	CHECK(json_real_value(json_array_get(j, 9)) == 0.1);
	CHECK_INT(json_integer_value(json_array_get(j, 10)), -12);
	CHECK(json_integer_value(json_array_get(j, 11)) == 123456789012345678LL);
	json_decref(j);

	/* A real longer than the parser's local copy. */
	char lng[300] = "0.";
	memset(lng + 2, '0', 250);
	memcpy(lng + 252, "15e250", 7);
	j = jparse(lng);
	CHECK(json_is_real(j));
	CHECK(json_real_value(j) == 0.15);
	json_decref(j);

	CHECK(!jaccepts("[9223372036854775808]"));  /* too big integer */
	CHECK(!jaccepts("[-9223372036854775809]"));
	CHECK(!jaccepts("[9999999999999999999]"));
	CHECK(!jaccepts("[123456789012345678901234567890]"));
	CHECK(jaccepts("[9223372036854775808.0]"));   /* a real may be large */
	CHECK(!jaccepts("[1e400]"));                  /* overflow to infinity */
	CHECK(!jaccepts("[-1e400]"));
	CHECK(!jaccepts("[01]"));
	CHECK(!jaccepts("[-01]"));
	CHECK(!jaccepts("[00]"));
	CHECK(!jaccepts("[1.]"));
	CHECK(!jaccepts("[.5]"));
	CHECK(!jaccepts("[1.e5]"));
	CHECK(!jaccepts("[1e]"));
	CHECK(!jaccepts("[1e+]"));
	CHECK(!jaccepts("[-]"));
	CHECK(!jaccepts("[+1]"));
	CHECK(!jaccepts("[0x10]"));
	CHECK(!jaccepts("-"));
	CHECK(!jaccepts("1."));
}

static void test_json_structure(void)
{
	/* A duplicated key keeps its last value (jansson's default). */
	json_t *j = jparse("{\"a\":1,\"b\":2,\"a\":{\"x\":1},\"a\":\"last\"}");
	CHECK_INT(json_object_size(j), 2);
	CHECK_STR(json_string_value(json_object_get(j, "a")), "last");
	json_decref(j);

	/* Empty containers at every level. */
	j = jparse("{\"a\":[],\"b\":{},\"c\":[[],{}],\"d\":\"\"}");
	CHECK_INT(json_array_size(json_object_get(j, "a")), 0);
	CHECK_INT(json_object_size(json_object_get(j, "b")), 0);
	CHECK_INT(json_array_size(json_object_get(j, "c")), 2);
	CHECK_STR(json_string_value(json_object_get(j, "d")), "");
	json_decref(j);

	/* Depth: jansson's limit, the top-level value counting as 1. */
	char *s = nested(2048, false, "");
	CHECK(s && jaccepts(s));
	free(s);
	s = nested(2049, false, "");
	CHECK(s && !jaccepts(s));
	free(s);
	s = nested(2047, false, "1");
	CHECK(s && jaccepts(s));
	free(s);
	s = nested(2048, false, "1"); /* the scalar is at depth 2049 */
	CHECK(s && !jaccepts(s));
	free(s);
	s = nested(2047, true, "null");
	CHECK(s && jaccepts(s));
	free(s);
	s = nested(2048, true, "{}");
	CHECK(s && !jaccepts(s));
	free(s);
	s = nested(100000, false, "");
	CHECK(s && !jaccepts(s));
	free(s);

	/* The node cap: 4096 values plus one per 6 bytes. A dense array of
	 * 100,000 zeros (2 bytes a value) is refused as too big, while the same
	 * count of values at API JSON's density (a 9-byte string each) parses. */
	struct ca_json_doc *doc = NULL;
	CHECK_INT(ca_kube_json_doc_new(&doc), CA_OK);
	struct ca_buf dense, sparse;
	ca_buf_init(&dense, 0);
	ca_buf_init(&sparse, 0);
	ca_buf_append_str(&dense, "[");
	ca_buf_append_str(&sparse, "[");
	for (int i = 0; i < 100000; i++) {
		ca_buf_append_str(&dense, i ? ",0" : "0");
		ca_buf_append_str(&sparse, i ? ",\"abcdefg\"" : "\"abcdefg\"");
	}
	ca_buf_append_str(&dense, "]");
	ca_buf_append_str(&sparse, "]");
	const struct ca_kobj *root = NULL;
	char why[160];
	CHECK_INT(ca_kube_json_parse(doc, dense.data, dense.len, &root, why, sizeof why), CA_ETOOBIG);
	CHECK(root == NULL && strstr(why, "more values than its size allows") != NULL);
	CHECK_INT(ca_kube_json_parse(doc, sparse.data, sparse.len, &root, why, sizeof why), CA_OK);
	CHECK_INT(ca_kobj_array_len(root), 100000);
	ca_buf_fini(&dense);
	ca_buf_fini(&sparse);
	ca_kube_json_doc_free(doc);
}

/* A LIST page with bad items keeps its good ones (kube/salvage.h). */
static void test_list_salvage(void)
{
	static const char page[] =
		"{\"kind\":\"EventList\",\"apiVersion\":\"v1\","
		"\"metadata\":{\"resourceVersion\":\"5\",\"continue\":\"c,]}\\\"x\"},"
		"\"items\":[{\"a\":1}, {\"b\":1e999},{\"c\":\"\xff\"},"
		"{\"d\":[1,{\"e\":\"]}\"}]},7,{\"f\":100000000000000000000000}]}";
	struct ca_buf out;
	size_t bad = 0;
	ca_buf_init(&out, 0);
	struct ca_kobj *whole = NULL;
	CHECK(ca_kobj_parse(page, sizeof page - 1, &whole) != CA_OK); /* as a whole: refused */
	CHECK_INT(ca_kube_list_salvage(page, sizeof page - 1, &out, &bad), CA_OK);
	CHECK_INT(bad, 4);
	struct ca_kobj *o = NULL;
	CHECK_INT(ca_kobj_parse(out.data, out.len, &o), CA_OK);
	CHECK_STR(ca_kobj_str(o, "metadata.resourceVersion"), "5");
	CHECK_STR(ca_kobj_str(o, "metadata.continue"), "c,]}\"x");
	const struct ca_kobj *items = ca_kobj_get(o, "items");
	CHECK_INT(ca_kobj_array_len(items), 2);
	CHECK_INT(ca_kobj_int(ca_kobj_array_at(items, 0), "a", 0), 1);
	CHECK_STR(ca_kobj_str(ca_kobj_array_at(ca_kobj_get(ca_kobj_array_at(items, 1), "d"), 1), "e"), "]}");
	ca_kobj_free(o);
	/* No frame to find: refused, nothing made up. */
	static const char *broken[] = { "", "[]", "{\"items\":{}}", "{\"items\":[{\"a\":1}", "{\"metadata\":{}}",
	                                 "{\"items\":[\"unterminated]}" };
	for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
		CHECK_INT(ca_kube_list_salvage(broken[i], strlen(broken[i]), &out, &bad), CA_EPROTO);
		CHECK_INT(out.len, 0);
	}
	ca_buf_fini(&out);
}

/* Every captured API response parses to the tree jansson builds. */
static void test_json_samples_match_jansson(void)
{
	static const char *const names[] = {
		"api-v1-resources.json", "list-events-page1.json", "list-events-k8s-io-v1.json",
		"list-nodes.json", "list-pods-page1.json", "node-eks-ready.json",
		"pod-crashloop-oomkilled.json", "status-403.json", "watch-events-stream.jsonl",
		"watch-pods-bookmarks.jsonl",
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char path[1024];
		snprintf(path, sizeof path, "%s/%s", CA_SAMPLES_DIR, names[i]);
		size_t len = 0;
		char *data = check_read_file(path, &len);
		CHECK(data != NULL);
		if (!data)
			continue;
		bool lines = strstr(names[i], ".jsonl") != NULL;
		size_t docs = 0;
		for (char *at = data; at < data + len;) {
			char *nl = lines ? memchr(at, '\n', (size_t)(data + len - at)) : NULL;
			size_t n = nl ? (size_t)(nl - at) : (size_t)(data + len - at);
			if (n > 0) {
				json_error_t error;
				json_t *ref = json_loadb(at, n, JSON_DECODE_ANY, &error);
				json_t *mine = NULL;
				CHECK(ref != NULL);
				CHECK_INT(jparse_n(at, n, &mine, NULL, 0), CA_OK);
				CHECK(json_equal(ref, mine));
				json_decref(ref);
				json_decref(mine);
				docs++;
			}
			at += n + 1;
		}
		CHECK(docs > 0);
		free(data);
	}
}

/* ------------------------------------------------------------------------ */
/* The tape under the view: duplicates, large objects and arrays, arena reuse */

struct seen {
	char keys[64][16];
	const struct ca_kobj *values[64];
	size_t n, stop_after;
};

static bool note_member(void *arg, const char *key, const struct ca_kobj *v)
{
	struct seen *c = arg;
	if (c->n < 64) {
		snprintf(c->keys[c->n], sizeof c->keys[0], "%s", key);
		c->values[c->n] = v;
	}
	c->n++;
	return !(c->stop_after && c->n >= c->stop_after);
}

static void test_tape(void)
{
	/* Duplicated keys, as jansson resolved them: the last value, at the
	 * position of the first occurrence; every duplicate still on the tape. */
	struct ca_kobj *o = NULL;
	const char *dup = "{\"a\":1,\"b\":2,\"a\":{\"x\":1},\"c\":[1],\"a\":\"last\"}";
	CHECK_INT(ca_kobj_parse(dup, strlen(dup), &o), CA_OK);
	CHECK_STR(ca_kobj_str(o, "a"), "last");
	CHECK_STR(ca_kobj_str(ca_kobj_member(o, "a"), NULL), "last");
	CHECK(ca_kobj_get(o, "a.x") == NULL);
	CHECK_INT(ca_kobj_int(o, "b", 0), 2);
	struct seen c;
	memset(&c, 0, sizeof c);
	ca_kobj_foreach(o, note_member, &c);
	CHECK_INT(c.n, 3);
	CHECK_STR(c.keys[0], "a");
	CHECK_STR(ca_kobj_str(c.values[0], NULL), "last");
	CHECK_STR(c.keys[1], "b");
	CHECK_STR(c.keys[2], "c");
	CHECK_INT(ca_kobj_array_len(c.values[2]), 1);
	ca_kobj_free(o);

	/* An object large enough to be deduplicated by sorting. */
	struct ca_buf b;
	ca_buf_init(&b, 1 << 20);
	CHECK(ca_buf_append(&b, "{", 1) == CA_OK);
	for (int i = 0; i < 40; i++)
		CHECK(ca_buf_printf(&b, "\"k%d\":{\"v\":%d,\"l\":[%d,[]]},", i, i, i) == CA_OK);
	CHECK(ca_buf_printf(&b, "\"k5\":\"dup5\",\"k0\":\"dup0\",\"k39\":{\"v\":-1},\"z\":null}") == CA_OK);
	CHECK_INT(ca_kobj_parse(b.data, b.len, &o), CA_OK);
	memset(&c, 0, sizeof c);
	ca_kobj_foreach(o, note_member, &c);
	CHECK_INT(c.n, 41);
	CHECK_STR(c.keys[0], "k0");
	CHECK_STR(ca_kobj_str(c.values[0], NULL), "dup0");
	CHECK_STR(c.keys[5], "k5");
	CHECK_STR(ca_kobj_str(c.values[5], NULL), "dup5");
	CHECK_INT(ca_kobj_int(c.values[7], "v", 0), 7);
	CHECK_STR(c.keys[39], "k39");
	CHECK_INT(ca_kobj_int(c.values[39], "v", 0), -1);
	CHECK_STR(c.keys[40], "z");
	CHECK(ca_kobj_is_null(c.values[40]));
	for (size_t i = 0; i < c.n && i < 64; i++)
		CHECK(ca_kobj_member(o, c.keys[i]) == c.values[i]);
	memset(&c, 0, sizeof c);
	c.stop_after = 3;
	ca_kobj_foreach(o, note_member, &c);
	CHECK_INT(c.n, 3);
	CHECK_INT(ca_kobj_int(o, "k12.l", -5), -5); /* an array is not an int */
	CHECK_INT(ca_kobj_int(ca_kobj_array_at(ca_kobj_get(o, "k12.l"), 0), NULL, 0), 12);
	ca_kobj_free(o);

	/* Arrays below and above the size that gets an element table, with
	 * elements of different sizes, nested. */
	for (int n = 0; n < 70; n += 3) {
		ca_buf_reset(&b);
		CHECK(ca_buf_append(&b, "{\"a\":[", 6) == CA_OK);
		for (int i = 0; i < n; i++) {
			if (i % 3 == 0)
				CHECK(ca_buf_printf(&b, "%s%d", i ? "," : "", i) == CA_OK);
			else if (i % 3 == 1)
				CHECK(ca_buf_printf(&b, "%s{\"i\":%d,\"x\":[1,2,{}]}", i ? "," : "", i) == CA_OK);
			else
				CHECK(ca_buf_printf(&b, "%s[%d,[[],[%d]]]", i ? "," : "", i, i) == CA_OK);
		}
		CHECK(ca_buf_printf(&b, "],\"after\":true}") == CA_OK);
		CHECK_INT(ca_kobj_parse(b.data, b.len, &o), CA_OK);
		const struct ca_kobj *a = ca_kobj_get(o, "a");
		CHECK_INT(ca_kobj_array_len(a), (size_t)n);
		for (int i = n - 1; i >= 0; i--) {
			const struct ca_kobj *e = ca_kobj_array_at(a, (size_t)i);
			int64_t got = i % 3 == 0 ? ca_kobj_int(e, NULL, -1)
			              : i % 3 == 1 ? ca_kobj_int(e, "i", -1)
			                           : ca_kobj_int(ca_kobj_array_at(e, 0), NULL, -1);
			CHECK_INT(got, i);
		}
		CHECK(ca_kobj_array_at(a, (size_t)n) == NULL);
		CHECK(ca_kobj_bool(o, "after", false));
		ca_kobj_free(o);
	}

	/* One arena, documents of very different sizes in turn: each result
	 * is right, and the input is never written (strings are rewritten in
	 * the arena's copy). */
	const struct ca_kobj *r = NULL;
	char small[] = "{\"k\\u00e9y\":\"a\\nb\",\"plain\":\"x\"}";
	CHECK_INT(ca_kube_json_parse(jdoc, b.data, b.len, &r, NULL, 0), CA_OK);
	CHECK_INT(ca_kube_json_parse(jdoc, small, strlen(small), &r, NULL, 0), CA_OK);
	CHECK_STR(small, "{\"k\\u00e9y\":\"a\\nb\",\"plain\":\"x\"}");
	CHECK_STR(ca_kobj_str(r, "k\xc3\xa9y"), "a\nb");
	CHECK_STR(ca_kobj_str(r, "plain"), "x");
	CHECK_INT(ca_kube_json_parse(jdoc, "[1,", 3, &r, NULL, 0), CA_EPROTO);
	CHECK(r == NULL);
	CHECK_INT(ca_kube_json_parse(jdoc, "[1]", 3, &r, NULL, 0), CA_OK);
	CHECK_INT(ca_kobj_int(ca_kobj_array_at(r, 0), NULL, 0), 1);
	CHECK_INT(ca_kube_json_parse(jdoc, b.data, b.len, &r, NULL, 0), CA_OK);
	CHECK_INT(ca_kobj_array_len(ca_kobj_get(r, "a")), 69);
	CHECK_INT(ca_kobj_int(ca_kobj_array_at(ca_kobj_get(r, "a"), 67), "i", 0), 67);
	ca_buf_fini(&b);
}

int main(void)
{
	if (ca_kube_json_doc_new(&jdoc) != CA_OK)
		return 1;
	test_pod();
	test_node();
	test_parse_edges();
	test_json_grammar();
	test_json_strings();
	test_json_numbers();
	test_json_structure();
	test_json_samples_match_jansson();
	test_list_salvage();
	test_tape();
	ca_kube_json_doc_free(jdoc);
	ca_kube_json_doc_free(NULL);
	return check_report();
}
