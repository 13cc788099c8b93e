/* Unit tests for kube/kobj.h: the read-only view over parsed Kubernetes
 * objects, on objects captured from a real kube-apiserver. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kube/kobj.h"

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

int main(void)
{
	test_pod();
	test_node();
	test_parse_edges();
	return check_report();
}
