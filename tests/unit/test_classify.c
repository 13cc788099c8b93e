/* Unit tests of the reason table (src/events/classify.c) and its docs. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "events/events_int.h"

static void check_table(void)
{
	size_t n = 0;
	const struct ca_classify_entry *t = ca_events_classify_table(&n);
	size_t plain = 0;

	for (size_t i = 0; i < n; i++) {
		CHECK(t[i].reason && t[i].reason[0]);
		CHECK(ca_events_category_valid(t[i].category));
		CHECK(strcmp(t[i].category, "other") != 0); /* other is for unknown reasons */
		CHECK(t[i].source && t[i].source[0]);
		CHECK(t[i].severity == CA_SEV_INFO || t[i].severity == CA_SEV_WARNING ||
		      t[i].severity == CA_SEV_CRITICAL);
		if (!t[i].message_hint)
			plain++;
		bool has_plain = false;
		for (size_t j = 0; j < n; j++) {
			if (j == i || strcmp(t[i].reason, t[j].reason) != 0)
				continue;
			/* The same (reason, hint) twice would make one row dead. */
			bool same_hint = (!t[i].message_hint && !t[j].message_hint) ||
			                 (t[i].message_hint && t[j].message_hint &&
			                  strcmp(t[i].message_hint, t[j].message_hint) == 0);
			if (same_hint)
				fprintf(stderr, "duplicate row: %s\n", t[i].reason);
			CHECK(!same_hint);
			if (!t[j].message_hint) {
				has_plain = true;
				/* Hinted rows must come before the plain fallback. */
				if (t[i].message_hint)
					CHECK(i < j);
			}
		}
		if (t[i].message_hint)
			CHECK(has_plain);
	}
	/* The issue asks for at least 85 known failure reasons. */
	CHECK(plain >= 85);
	printf("classification table: %zu rows, %zu distinct reasons\n", n, plain);
}

static void expect(const char *reason, const char *type, const char *message,
                   const char *category, const char *severity)
{
	const char *c = NULL, *s = NULL;
	ca_events_classify(reason, type, message, &c, &s);
	CHECK_STR(c, category);
	CHECK_STR(s, severity);
}

static void check_spots(void)
{
	expect("BackOff", "Warning", "Back-off restarting failed container web in pod web-1",
	       "crash", "warning");
	expect("BackOff", "Warning", "Back-off pulling image \"nginx:nope\"", "image", "warning");
	expect("CrashLoopBackOff", "Warning", "", "crash", "warning");
	expect("OOMKilling", "Warning", "Memory cgroup out of memory: Killed process 1234", "oom", "warning");
	expect("OOMKilled", "Warning", NULL, "oom", "warning");
	expect("Failed", "Warning", "Failed to pull image \"x\": rpc error", "image", "warning");
	expect("Failed", "Warning", "Error: ErrImagePull", "image", "warning");
	expect("Failed", "Warning", "Error: ImagePullBackOff", "image", "warning");
	expect("Failed", "Warning", "Error: failed to create containerd task", "crash", "warning");
	expect("Failed", "Warning", "Error: CreateContainerConfigError", "config", "warning");
	expect("FailedScheduling", "Warning", "0/3 nodes are available", "scheduling", "warning");
	expect("FailedMount", "Warning", "MountVolume.SetUp failed", "storage", "warning");
	expect("FailedAttachVolume", "Warning", "Multi-Attach error", "storage", "warning");
	expect("ErrImagePull", "Warning", "", "image", "warning");
	expect("ImagePullBackOff", "Warning", "", "image", "warning");
	expect("Unhealthy", "Warning", "Liveness probe failed: HTTP probe failed", "probe", "warning");
	expect("Evicted", "Warning", "The node was low on resource: memory.", "eviction", "warning");
	expect("FailedCreatePodSandBox", "Warning", "failed to setup network", "network", "warning");
	expect("NetworkNotReady", "Warning", "network is not ready", "network", "critical");
	expect("FailedKillPod", "Warning", "", "crash", "warning");
	expect("KubeletSetupFailed", "Warning", "", "node", "critical");
	/* NodeNotReady comes as a Normal event from the node lifecycle
	 * controller and is a failure all the same. */
	expect("NodeNotReady", "Normal", "Node node-a status is now: NodeNotReady", "node", "critical");
	expect("NodeNotReady", "Warning", "Node is not ready", "node", "critical");
	/* A Normal event with a failure reason not marked so is info. */
	expect("FailedScheduling", "Normal", "", "scheduling", "info");
	expect("Preempted", "Normal", "Preempted by pod x", "eviction", "warning");
	/* Unknown reasons: category other, severity from the type. */
	expect("SomethingNew", "Warning", "", "other", "warning");
	expect("SomethingNew", "Normal", "", "other", "info");
	expect("SomethingNew", NULL, NULL, "other", "info");
	expect("", "Warning", "", "other", "warning");
	expect(NULL, "Warning", NULL, "other", "warning");
	/* Case matters: Kubernetes reasons are CamelCase identifiers. */
	expect("backoff", "Warning", "", "other", "warning");
}

/* Every row of the table is documented in docs/EVENTS.md with its source. */
static void check_docs(void)
{
	size_t len = 0, n = 0;
	char *doc = check_read_file(CA_SOURCE_ROOT "/docs/EVENTS.md", &len);
	CHECK(doc != NULL);
	if (!doc)
		return;
	const struct ca_classify_entry *t = ca_events_classify_table(&n);
	for (size_t i = 0; i < n; i++) {
		char needle[160];
		snprintf(needle, sizeof needle, "| `%s` |", t[i].reason);
		bool found = strstr(doc, needle) != NULL;
		if (!found)
			fprintf(stderr, "docs/EVENTS.md lacks %s\n", needle);
		CHECK(found);
	}
	free(doc);
}

int main(void)
{
	check_table();
	check_spots();
	check_docs();
	return check_report();
}
