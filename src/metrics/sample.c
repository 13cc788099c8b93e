/* metrics/sample.c: the pure parts of a sample: which reason a pod shows
 * now, and how a sample is shared out across parts. */
#include <stddef.h>
#include <stdint.h>

#include "metrics/metrics_int.h"

#define OOM_RECENT_MS (60 * 60 * 1000)

static const char *const unhealthy_names[] = {
        [CA_UNHEALTHY_NONE] = "",
        [CA_UNHEALTHY_NOT_READY] = "NotReady",
        [CA_UNHEALTHY_PENDING] = "PendingTooLong",
        [CA_UNHEALTHY_CREATE_CONFIG] = "CreateContainerConfigError",
        [CA_UNHEALTHY_ERR_IMAGE_PULL] = "ErrImagePull",
        [CA_UNHEALTHY_IMAGE_PULL_BACKOFF] = "ImagePullBackOff",
        [CA_UNHEALTHY_CRASHLOOP] = "CrashLoopBackOff",
        [CA_UNHEALTHY_OOM] = "OOMKilled",
};

const char *ca_metrics_unhealthy_name(enum ca_unhealthy u)
{
	return (unsigned)u < sizeof unhealthy_names / sizeof unhealthy_names[0] ? unhealthy_names[u]
	                                                                        : "";
}

enum ca_unhealthy ca_metrics_pod_unhealthy(const struct ca_pod_rec *p, int64_t now_ms,
                                           int64_t pending_threshold_ms, int64_t *since_ms)
{
	/* A finished pod is history, not trouble. */
	if (p->phase == CA_PHASE_SUCCEEDED || p->phase == CA_PHASE_FAILED)
		return CA_UNHEALTHY_NONE;
	int64_t oom_ms = (int64_t)p->oom_s * 1000, created_ms = (int64_t)p->created_s * 1000;
	*since_ms = (int64_t)p->since_s * 1000;
	if (oom_ms && now_ms - oom_ms < OOM_RECENT_MS) {
		*since_ms = oom_ms;
		return CA_UNHEALTHY_OOM;
	}
	switch ((enum ca_pod_waiting)p->waiting) {
	case CA_WAIT_CRASHLOOP:
		return CA_UNHEALTHY_CRASHLOOP;
	case CA_WAIT_IMAGE_PULL_BACKOFF:
		return CA_UNHEALTHY_IMAGE_PULL_BACKOFF;
	case CA_WAIT_ERR_IMAGE_PULL:
		return CA_UNHEALTHY_ERR_IMAGE_PULL;
	case CA_WAIT_CREATE_CONFIG:
		return CA_UNHEALTHY_CREATE_CONFIG;
	case CA_WAIT_NONE:
		break;
	}
	if (p->phase == CA_PHASE_PENDING && created_ms &&
	    now_ms - created_ms > pending_threshold_ms) {
		*since_ms = created_ms;
		return CA_UNHEALTHY_PENDING;
	}
	if (p->phase == CA_PHASE_RUNNING && (p->flags & CA_POD_HAS_READY) &&
	    !(p->flags & CA_POD_READY))
		return CA_UNHEALTHY_NOT_READY;
	return CA_UNHEALTHY_NONE;
}

uint32_t ca_metrics_plan_parts(size_t fixed, const size_t *sizes, size_t n, size_t max_payload,
                               uint32_t *starts)
{
	uint32_t parts = 0;
	size_t used = 0;
	starts[0] = 0;
	if (fixed > max_payload)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (sizes[i] > max_payload - fixed)
			return 0;
		if (i > starts[parts] && used + sizes[i] > max_payload - fixed) {
			starts[++parts] = (uint32_t)i;
			used = 0;
		}
		used += sizes[i];
	}
	starts[++parts] = (uint32_t)n;
	return parts;
}
