/* events/classify.c: the table of known failure reasons.
 *
 * This array is the one place where reasons are mapped to a category and a
 * severity. docs/EVENTS.md lists it with the sources (tests/unit/
 * test_classify.c checks that every row is documented there). Rows with a
 * message_hint refine a reason whose meaning depends on the message (the
 * kubelet reports both a failing container start and a failing image pull
 * as "Failed"); they come before the reason's plain row, which is the
 * fallback every hinted reason must have. */
#include <string.h>

#include "events/events_int.h"

#define W CA_SEV_WARNING
#define C CA_SEV_CRITICAL
#define I CA_SEV_INFO
#define N CA_CLASSIFY_NORMAL_TOO

#define KUBELET "kubelet (pkg/kubelet/events/event.go)"
#define KUBELET_STATE "kubelet container state (pkg/kubelet/container/sync_result.go)"
#define KUBELET_IMAGES "kubelet image manager (pkg/kubelet/images/types.go)"
#define KUBELET_ADMIT "kubelet admission (pkg/kubelet/lifecycle/predicate.go)"
#define KUBELET_NODE "kubelet node status (pkg/kubelet/nodestatus/setters.go)"
#define KUBELET_EVICT "kubelet eviction manager (pkg/kubelet/eviction)"
#define KUBELET_DNS "kubelet DNS configurer (pkg/kubelet/network/dns/dns.go)"
#define SCHEDULER "kube-scheduler (pkg/scheduler/schedule_one.go)"
#define JOB "job controller (pkg/controller/job)"
#define CRONJOB "cronjob controller (pkg/controller/cronjob)"
#define WORKLOADS "replicaset/statefulset/daemonset/job controllers (pkg/controller)"
#define DAEMONSET "daemonset controller (pkg/controller/daemon)"
#define HPA "horizontal pod autoscaler (pkg/controller/podautoscaler)"
#define NODELIFE "node lifecycle controller (pkg/controller/nodelifecycle)"
#define TAINT "taint eviction controller (pkg/controller/tainteviction)"
#define PVCTRL "persistent volume controller (pkg/controller/volume/persistentvolume)"
#define VOLOPS "volume manager / attach-detach controller (pkg/volume/util/operationexecutor)"
#define ENDPOINTS "endpoints controllers (pkg/controller/endpoint, endpointslice)"
#define SVCCTRL "cloud service controller (k8s.io/cloud-provider/controllers/service)"
#define NODEIPAM "node IPAM controller (pkg/controller/nodeipam)"
#define IPREPAIR "kube-apiserver service IP repair (pkg/registry/core/service/ipallocator/controller)"
#define NPD_KERNEL "node-problem-detector (config/kernel-monitor.json)"
#define NPD_DOCKER "node-problem-detector (config/docker-monitor.json)"
#define NPD_SYSTEMD "node-problem-detector (config/systemd-monitor-counter.json)"
#define NPD_HEALTH "node-problem-detector (config/health-checker-*.json)"
#define NPD_NTP "node-problem-detector (config/plugin/check_ntp.sh)"
#define AUTOSCALER "cluster-autoscaler (cluster-autoscaler/processors/status)"
#define NODESHUTDOWN "kubelet node shutdown manager (pkg/kubelet/nodeshutdown)"
#define KUBELET_OOM "kubelet OOM watcher (pkg/kubelet/oom/oom_watcher_linux.go)"

static const struct ca_classify_entry table[] = {
	/* ---- crash: containers that fail to start or keep dying ---- */
	{ "BackOff", "pulling image", "image", W, 0, KUBELET },
	{ "BackOff", NULL, "crash", W, 0, KUBELET },
	{ "CrashLoopBackOff", NULL, "crash", W, 0, KUBELET_STATE },
	{ "Failed", "pull image", "image", W, 0, KUBELET },
	{ "Failed", "ImagePull", "image", W, 0, KUBELET },
	{ "Failed", "InvalidImageName", "image", W, 0, KUBELET },
	{ "Failed", "ErrImageNeverPull", "image", W, 0, KUBELET },
	{ "Failed", "CreateContainerConfigError", "config", W, 0, KUBELET },
	{ "Failed", NULL, "crash", W, 0, KUBELET },
	{ "FailedCreatePodContainer", NULL, "crash", W, 0, KUBELET },
	{ "FailedKillPod", NULL, "crash", W, 0, KUBELET },
	{ "ExceededGracePeriod", NULL, "crash", W, 0, KUBELET },
	{ "FailedPostStartHook", NULL, "crash", W, 0, KUBELET },
	{ "FailedPreStopHook", NULL, "crash", W, 0, KUBELET },
	{ "FailedSync", NULL, "crash", W, 0, KUBELET },
	{ "RunContainerError", NULL, "crash", W, 0, KUBELET_STATE },
	{ "CreateContainerError", NULL, "crash", W, 0, KUBELET_STATE },
	{ "ContainerCannotRun", NULL, "crash", W, 0, KUBELET_STATE },
	{ "StartError", NULL, "crash", W, 0, KUBELET_STATE },
	{ "ContainerStatusUnknown", NULL, "crash", W, 0, KUBELET_STATE },
	{ "Error", NULL, "crash", W, 0, KUBELET_STATE },
	{ "BackoffLimitExceeded", NULL, "crash", W, 0, JOB },
	{ "DeadlineExceeded", NULL, "crash", W, 0, JOB },
	{ "PodFailurePolicy", NULL, "crash", W, 0, JOB },
	{ "MaxFailedIndexesExceeded", NULL, "crash", W, 0, JOB },
	{ "FailedDaemonPod", NULL, "crash", W, 0, DAEMONSET },

	/* ---- oom ---- */
	{ "OOMKilling", NULL, "oom", W, 0, NPD_KERNEL },
	{ "OOMKilled", NULL, "oom", W, 0, KUBELET_STATE },
	{ "SystemOOM", NULL, "oom", W, 0, KUBELET_OOM },

	/* ---- image ---- */
	{ "ErrImagePull", NULL, "image", W, 0, KUBELET_IMAGES },
	{ "ImagePullBackOff", NULL, "image", W, 0, KUBELET_IMAGES },
	{ "ErrImageNeverPull", NULL, "image", W, 0, KUBELET },
	{ "InvalidImageName", NULL, "image", W, 0, KUBELET_IMAGES },
	{ "InspectFailed", NULL, "image", W, 0, KUBELET },
	{ "ImageInspectError", NULL, "image", W, 0, KUBELET_IMAGES },
	{ "RegistryUnavailable", NULL, "image", W, 0, KUBELET_IMAGES },
	{ "SignatureValidationFailed", NULL, "image", W, 0, KUBELET_IMAGES },

	/* ---- scheduling and admission ---- */
	{ "FailedScheduling", NULL, "scheduling", W, 0, SCHEDULER },
	{ "NotTriggerScaleUp", NULL, "scheduling", W, N, AUTOSCALER },
	{ "OutOfcpu", NULL, "scheduling", W, 0, KUBELET_ADMIT },
	{ "OutOfmemory", NULL, "scheduling", W, 0, KUBELET_ADMIT },
	{ "OutOfpods", NULL, "scheduling", W, 0, KUBELET_ADMIT },
	{ "OutOfephemeral-storage", NULL, "scheduling", W, 0, KUBELET_ADMIT },
	{ "UnexpectedAdmissionError", NULL, "scheduling", W, 0, KUBELET_ADMIT },
	{ "NodeAffinity", NULL, "scheduling", W, 0, KUBELET_ADMIT },
	{ "TopologyAffinityError", NULL, "scheduling", W, 0, KUBELET_ADMIT },

	/* ---- config: controllers refused by quota, webhooks, bad specs ---- */
	{ "CreateContainerConfigError", NULL, "config", W, 0, KUBELET_STATE },
	{ "FailedValidation", NULL, "config", W, 0, KUBELET },
	{ "FailedCreate", NULL, "config", W, 0, WORKLOADS },
	{ "FailedDelete", NULL, "config", W, 0, WORKLOADS },
	{ "SysctlForbidden", NULL, "config", W, 0, KUBELET_ADMIT },
	{ "FailedPrepareDynamicResources", NULL, "config", W, 0, KUBELET },
	{ "MissSchedule", NULL, "config", W, 0, CRONJOB },
	{ "TooManyMissedTimes", NULL, "config", W, 0, CRONJOB },
	{ "UnparseableSchedule", NULL, "config", W, 0, CRONJOB },
	{ "FailedGetScale", NULL, "config", W, 0, HPA },
	{ "FailedRescale", NULL, "config", W, 0, HPA },
	{ "FailedComputeMetricsReplicas", NULL, "config", W, 0, HPA },
	{ "FailedGetResourceMetric", NULL, "config", W, 0, HPA },
	{ "FailedGetContainerResourceMetric", NULL, "config", W, 0, HPA },
	{ "FailedGetPodsMetric", NULL, "config", W, 0, HPA },
	{ "FailedGetObjectMetric", NULL, "config", W, 0, HPA },
	{ "FailedGetExternalMetric", NULL, "config", W, 0, HPA },
	{ "FailedUpdateStatus", NULL, "config", W, 0, HPA },
	{ "SelectorRequired", NULL, "config", W, 0, HPA },
	{ "InvalidSelector", NULL, "config", W, 0, HPA },
	{ "AmbiguousSelector", NULL, "config", W, 0, HPA },

	/* ---- storage ---- */
	{ "FailedMount", NULL, "storage", W, 0, KUBELET },
	{ "FailedAttachVolume", NULL, "storage", W, 0, KUBELET },
	{ "FailedMapVolume", NULL, "storage", W, 0, KUBELET },
	{ "VolumeResizeFailed", NULL, "storage", W, 0, KUBELET },
	{ "FileSystemResizeFailed", NULL, "storage", W, 0, KUBELET },
	{ "FailedMountOnFilesystemMismatch", NULL, "storage", W, 0, KUBELET },
	{ "AlreadyMountedVolume", NULL, "storage", I, 0, KUBELET },
	{ "FailedBinding", NULL, "storage", W, 0, PVCTRL },
	{ "ProvisioningFailed", NULL, "storage", W, 0, PVCTRL },
	{ "VolumeFailedDelete", NULL, "storage", W, 0, PVCTRL },
	{ "VolumeFailedRecycle", NULL, "storage", W, 0, PVCTRL },
	{ "VolumeMismatch", NULL, "storage", W, 0, PVCTRL },
	{ "ClaimLost", NULL, "storage", W, 0, PVCTRL },
	{ "ClaimMisbound", NULL, "storage", W, 0, PVCTRL },
	{ "FailedDetachVolume", NULL, "storage", W, 0, VOLOPS },
	{ "Ext4Error", NULL, "storage", W, 0, NPD_KERNEL },
	{ "Ext4Warning", NULL, "storage", W, 0, NPD_KERNEL },
	{ "IOError", NULL, "storage", W, 0, NPD_KERNEL },
	{ "FilesystemIsReadOnly", NULL, "storage", C, N, NPD_KERNEL },

	/* ---- node ---- */
	{ "NodeNotReady", NULL, "node", C, N, NODELIFE },
	{ "NodeNotSchedulable", NULL, "node", I, 0, KUBELET },
	{ "KubeletSetupFailed", NULL, "node", C, 0, KUBELET },
	{ "Rebooted", NULL, "node", W, 0, KUBELET },
	{ "Shutdown", NULL, "node", W, N, NODESHUTDOWN },
	{ "ContainerGCFailed", NULL, "node", W, 0, KUBELET },
	{ "ImageGCFailed", NULL, "node", W, 0, KUBELET },
	{ "FreeDiskSpaceFailed", NULL, "node", W, 0, KUBELET },
	{ "InvalidDiskCapacity", NULL, "node", W, 0, KUBELET },
	{ "FailedNodeAllocatableEnforcement", NULL, "node", W, 0, KUBELET },
	{ "EvictionThresholdMet", NULL, "node", W, N, KUBELET_EVICT },
	{ "NodeHasDiskPressure", NULL, "node", W, N, KUBELET_NODE },
	{ "NodeHasInsufficientMemory", NULL, "node", W, N, KUBELET_NODE },
	{ "NodeHasInsufficientPID", NULL, "node", W, N, KUBELET_NODE },
	{ "RemovingNode", NULL, "node", W, N, NODELIFE },
	{ "DeletingNode", NULL, "node", W, N, NODELIFE },
	{ "TaskHung", NULL, "node", W, 0, NPD_KERNEL },
	{ "KernelOops", NULL, "node", C, 0, NPD_KERNEL },
	{ "KernelDeadlock", NULL, "node", C, N, NPD_KERNEL },
	{ "AUFSUmountHung", NULL, "node", W, N, NPD_KERNEL },
	{ "DockerHung", NULL, "node", C, N, NPD_KERNEL },
	{ "MemoryReadError", NULL, "node", C, 0, NPD_KERNEL },
	{ "CorruptDockerOverlay2", NULL, "node", W, 0, NPD_DOCKER },
	{ "KubeletUnhealthy", NULL, "node", C, N, NPD_HEALTH },
	{ "ContainerRuntimeUnhealthy", NULL, "node", C, N, NPD_HEALTH },
	{ "FrequentKubeletRestart", NULL, "node", W, N, NPD_SYSTEMD },
	{ "FrequentDockerRestart", NULL, "node", W, N, NPD_SYSTEMD },
	{ "FrequentContainerdRestart", NULL, "node", W, N, NPD_SYSTEMD },
	{ "NTPIsDown", NULL, "node", W, N, NPD_NTP },

	/* ---- network ---- */
	{ "NetworkNotReady", NULL, "network", C, 0, KUBELET },
	{ "FailedCreatePodSandBox", NULL, "network", W, 0, KUBELET },
	{ "FailedPodSandBoxStatus", NULL, "network", W, 0, KUBELET },
	{ "SandboxChanged", NULL, "network", I, 0, KUBELET },
	{ "DNSConfigForming", NULL, "network", W, 0, KUBELET_DNS },
	{ "MissingClusterDNS", NULL, "network", W, 0, KUBELET_DNS },
	{ "HostPortConflict", NULL, "network", W, 0, KUBELET_ADMIT },
	{ "UnregisterNetDevice", NULL, "network", W, 0, NPD_KERNEL },
	{ "FailedToCreateEndpoint", NULL, "network", W, 0, ENDPOINTS },
	{ "FailedToUpdateEndpoint", NULL, "network", W, 0, ENDPOINTS },
	{ "FailedToUpdateEndpointSlices", NULL, "network", W, 0, ENDPOINTS },
	{ "SyncLoadBalancerFailed", NULL, "network", W, 0, SVCCTRL },
	{ "UpdateLoadBalancerFailed", NULL, "network", W, 0, SVCCTRL },
	{ "UnAvailableLoadBalancer", NULL, "network", W, 0, SVCCTRL },
	{ "CIDRNotAvailable", NULL, "network", W, N, NODEIPAM },
	{ "CIDRAssignmentFailed", NULL, "network", W, 0, NODEIPAM },
	{ "ClusterIPOutOfRange", NULL, "network", W, 0, IPREPAIR },
	{ "ClusterIPAlreadyAllocated", NULL, "network", W, 0, IPREPAIR },
	{ "ClusterIPNotAllocated", NULL, "network", W, 0, IPREPAIR },

	/* ---- probe ---- */
	{ "Unhealthy", NULL, "probe", W, 0, KUBELET },
	{ "ProbeWarning", NULL, "probe", I, 0, KUBELET },

	/* ---- eviction and preemption ---- */
	{ "Evicted", NULL, "eviction", W, 0, KUBELET_EVICT },
	{ "Preempting", NULL, "eviction", W, 0, KUBELET },
	{ "Preempted", NULL, "eviction", W, N, SCHEDULER },
	{ "TaintManagerEviction", NULL, "eviction", W, N, TAINT },
};

static const char *const categories[] = {
	"crash", "oom", "image", "scheduling", "storage", "node",
	"network", "probe", "eviction", "config", "other",
};

const struct ca_classify_entry *ca_events_classify_table(size_t *n)
{
	*n = sizeof table / sizeof table[0];
	return table;
}

const char *ca_events_severity_name(enum ca_event_severity s)
{
	switch (s) {
	case CA_SEV_CRITICAL: return "critical";
	case CA_SEV_WARNING: return "warning";
	case CA_SEV_INFO: break;
	}
	return "info";
}

enum ca_err ca_events_severity_parse(const char *s, enum ca_event_severity *out)
{
	if (!s)
		return CA_EINVAL;
	if (strcmp(s, "info") == 0)
		*out = CA_SEV_INFO;
	else if (strcmp(s, "warning") == 0)
		*out = CA_SEV_WARNING;
	else if (strcmp(s, "critical") == 0)
		*out = CA_SEV_CRITICAL;
	else
		return CA_EINVAL;
	return CA_OK;
}

bool ca_events_category_valid(const char *category)
{
	if (!category)
		return false;
	for (size_t i = 0; i < sizeof categories / sizeof categories[0]; i++)
		if (strcmp(category, categories[i]) == 0)
			return true;
	return false;
}

/* A linear scan: ~150 rows, and the first byte rejects almost all of them,
 * which costs less per event than hashing the reason would. */
static const struct ca_classify_entry *lookup(const char *reason, const char *message)
{
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		const struct ca_classify_entry *e = &table[i];
		if (e->reason[0] != reason[0] || strcmp(e->reason, reason) != 0)
			continue;
		if (e->message_hint && (!message || !strstr(message, e->message_hint)))
			continue;
		return e;
	}
	return NULL;
}

void ca_events_classify(const char *reason, const char *type, const char *message,
                        const char **category, const char **severity)
{
	bool normal = type && strcmp(type, "Normal") == 0;
	const struct ca_classify_entry *e = reason && reason[0] ? lookup(reason, message) : NULL;

	if (!e) {
		*category = "other";
		*severity = (type && strcmp(type, "Warning") == 0) ? "warning" : "info";
		return;
	}
	*category = e->category;
	if (normal && !(e->flags & CA_CLASSIFY_NORMAL_TOO))
		*severity = "info";
	else
		*severity = ca_events_severity_name(e->severity);
}
