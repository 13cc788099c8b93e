/* config/config.h: the agent's configuration, loaded from one YAML file,
 * overridden by COLLECT_AGENT_<SECTION>_<KEY> environment variables and then
 * by the few CLI flags, and validated with errors that name the key, the bad
 * value and what is allowed.
 *
 * Unlike other modules this struct is public: it is plain data that every
 * module reads once at start-up, and accessors would only add noise. The
 * loader owns every string and list in it; ca_config_fini() frees them. The
 * config is read-only once loaded; any thread may read it.
 *
 * Durations are int64 milliseconds; sizes are bytes or counts. */
#ifndef CA_CONFIG_CONFIG_H
#define CA_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* A list of owned strings. */
struct ca_strlist {
	char **items;
	size_t count;
};

enum ca_encoding { CA_ENCODING_JSON = 0, CA_ENCODING_PROTOBUF };

struct ca_config {
	struct {
		char *id;                 /* "" = detect */
		struct ca_strlist detect; /* ordered sources: env config eks gke aks node-labels kube-system-uid */
		char *node_label_key;
		int64_t metadata_timeout_ms;      /* per cloud metadata request; 500ms */
		char *aws_metadata_endpoint;      /* http://169.254.169.254 */
		char *gce_metadata_endpoint;      /* http://metadata.google.internal */
		char *azure_metadata_endpoint;    /* http://169.254.169.254 */
	} cluster;
	struct {
		struct ca_strlist servers;        /* nats://host:port URLs */
		enum ca_encoding encoding;
		char *subject_prefix;             /* "agent" */
		char *name;                       /* connection name; "" = collect-agent/<cluster_id> */
		int64_t connect_timeout_ms;       /* 2s */
		int64_t reconnect_wait_ms;        /* 2s: first reconnect delay, doubled to reconnect_wait_max */
		int64_t reconnect_wait_max_ms;    /* 30s */
		int64_t reconnect_jitter_ms;      /* 100ms */
		int max_reconnects;               /* -1 = forever */
		int64_t reconnect_buffer_bytes;   /* 8 MiB */
		int64_t flush_timeout_ms;         /* on shutdown; 2s */
		int64_t publish_buffer_bytes;     /* 4 MiB: messages waiting for the publisher thread */
		int64_t ping_interval_ms;         /* 3s: a stalled server is noticed after max_pings_out pings */
		int max_pings_out;                /* 2 */
		int64_t write_deadline_ms;        /* 1s: a socket write that cannot finish fails */
		struct {
			bool enabled;                 /* events, samples, results through JetStream (acked) */
			bool create_stream;           /* create the stream at start when missing */
			char *stream_name;            /* "" = AGENT_<cluster ID> */
			int64_t duplicate_window_ms;  /* 2m: the stream's de-duplication window when created */
			int64_t ack_timeout_ms;       /* 5s: a publish unacknowledged this long is retried */
			int64_t max_pending_bytes;    /* 4 MiB: published, not yet acknowledged */
			char *when_full;              /* drop_oldest (while publishes fail) or backpressure */
			int64_t retry_backoff_ms;     /* 500ms: first retry delay, doubled ... */
			int64_t retry_backoff_max_ms; /* 30s: ... up to this */
		} jetstream;
		struct {
			bool enabled;
			char *ca_file;
			char *cert_file;
			char *key_file;
			bool insecure_skip_verify;
		} tls;
		struct {
			char *token;          /* secret: from file or env, never logged */
			char *token_file;
			char *user;
			char *password;       /* secret */
			char *password_file;
			char *credentials_file; /* .creds (JWT + seed) */
			char *nkey_seed_file;
		} auth;
	} nats;
	struct {
		char *kubeconfig;
		char *context;
		char *service_account_dir;    /* in-cluster token, ca.crt and namespace */
		int64_t request_timeout_ms;   /* 10s */
		int64_t connect_timeout_ms;   /* 5s */
		int64_t stall_timeout_ms;     /* 10m: a watch with no progress this long fails liveness */
		int64_t watch_timeout_min_ms; /* 5m: server-side timeoutSeconds is random in [min, max] */
		int64_t watch_timeout_max_ms; /* 10m */
		int64_t page_size;            /* 500: LIST limit */
		int64_t max_list_page_bytes;  /* 4 MiB: one LIST page's body; over it, smaller pages */
		bool allow_insecure_http;     /* send credentials to an http:// API server */
		int64_t max_object_bytes;     /* 1 MiB: a bigger watch line is skipped and counted */
		int64_t backoff_initial_ms;   /* 800ms */
		int64_t backoff_max_ms;       /* 30s */
	} kubernetes;
	struct {
		bool enabled;
		int64_t buffer_size;          /* 1000 events */
		int64_t buffer_bytes;         /* 4 MiB: cap on the queued events' bytes */
		int64_t max_object_bytes;     /* 1 MiB: a bigger Event is skipped and counted */
		int64_t since_ms;             /* 5m */
		int64_t dedup_window_ms;      /* 1m */
		int64_t dedup_window_bytes;   /* 4 MiB: cap on the events held by open windows */
		char *state_file;
		char *spool_dir;              /* "" = no spool */
		int64_t spool_max_bytes;      /* 64 MiB on disk */
		int64_t spool_segment_bytes;  /* 4 MiB per segment file */
		char *api;                    /* "core/v1" or "events.k8s.io/v1" */
		struct ca_strlist namespaces; /* empty = all */
		struct ca_strlist exclude_namespaces;
		struct ca_strlist include_types;   /* default [Warning] */
		struct ca_strlist include_reasons; /* empty = all */
		struct ca_strlist exclude_reasons;
		struct ca_strlist include_kinds;
		struct ca_strlist exclude_kinds;
		char *message_regex;          /* "" = none; POSIX extended */
		char *exclude_message_regex;
		char *min_severity;           /* info|warning|critical */
		int64_t max_message_bytes;    /* 4096: longer messages are cut with a marker */
		int64_t namespace_rate;       /* events per second per namespace; 0 = unlimited */
		int64_t namespace_burst;
	} events;
	struct {
		bool enabled;
		int64_t interval_ms;          /* 60s */
		int64_t max_unhealthy_pods;   /* 50 */
		int64_t max_payload_bytes;    /* 0 = the server's max_payload */
		int64_t pending_threshold_ms; /* 5m: Pending longer than this is unhealthy */
		bool usage;                   /* read metrics.k8s.io when served */
		int64_t max_pods;             /* 150000: store caps (and the memory budget) */
		int64_t max_nodes;            /* 5000 */
		int64_t max_namespaces;       /* 10000 */
		int64_t max_object_bytes;     /* 1 MiB: longest pod/node/namespace watch line */
	} metrics;
	struct {
		bool enabled;
		int64_t max_concurrent;       /* 4 running at once */
		int64_t queue_size;           /* 64 waiting for a slot; more are rejected as busy */
		int64_t default_timeout_ms;   /* 30s */
		int64_t max_timeout_ms;       /* 5m */
		int64_t max_output_bytes;     /* 1 MiB, each of stdout and stderr */
		int64_t max_command_bytes;    /* 64 KiB */
		int64_t max_age_ms;           /* 5m: issued_at further from now is refused */
		int64_t replay_cache_size;    /* 10000 command ids remembered for max_age */
		bool require_signature;
		struct ca_strlist public_key_files; /* PEM ed25519 public keys */
		struct ca_strlist reply_prefixes; /* a result goes to a reply subject only under these */
		struct ca_strlist allowed_tools;
		struct ca_strlist tool_paths;     /* "name=/absolute/path" of tools other than kubectl */
		struct ca_strlist actions;        /* "tool action [subaction]" */
		struct ca_strlist allowed_resources; /* [] = every resource not denied */
		struct ca_strlist denied_resources;  /* [secret]: matched case-insensitively inside a name */
		struct ca_strlist allowed_namespaces; /* [] = all */
		struct ca_strlist denied_namespaces;
		char *kubectl_path;           /* "" = the first of /usr/bin/kubectl, /usr/local/bin/kubectl */
		char *work_dir;               /* /tmp: each command's private dir is made here */
		int64_t max_memory_bytes;     /* RLIMIT_AS, 8 GiB */
		int64_t max_cpu_ms;           /* RLIMIT_CPU, 1m */
		int64_t max_processes;        /* RLIMIT_NPROC (per user), 256 */
		int64_t max_open_files;       /* RLIMIT_NOFILE, 256 */
		int64_t max_file_bytes;       /* RLIMIT_FSIZE, 16 MiB */
	} exec;
	struct {
		int64_t interval_ms;          /* 30s */
	} heartbeat;
	struct {
		bool enabled;                 /* leader election on a Lease (docs/HA.md) */
		char *lease_name;             /* "" = collect-agent-<cluster_id>, sanitised */
		char *lease_namespace;        /* "" = $POD_NAMESPACE, else the in-cluster namespace */
		int64_t lease_duration_ms;    /* 15s, whole seconds */
		int64_t renew_deadline_ms;    /* 10s: a leader not renewed this long steps down */
		int64_t retry_period_ms;      /* 2s */
		int64_t checkpoint_interval_ms; /* 5s: the events resume point rides along at most this often */
	} ha;
	struct {
		char *listen;                 /* "0.0.0.0:8080" */
		char *listen_host;            /* derived from listen */
		int port;                     /* derived from listen */
	} http;
	struct {
		char *level;                  /* debug|info|warn|error */
		char *format;                 /* json|text */
	} log;
};

/* Values given on the command line; NULL means not given. Borrowed. */
struct ca_config_flags {
	const char *config_path;
	const char *kubeconfig;
	const char *nats_servers;  /* comma-separated */
	const char *cluster_id;
	const char *log_level;
};

/* Fill cfg with the documented defaults (config/collect-agent.yaml). */
enum ca_err ca_config_init_defaults(struct ca_config *cfg);

/* Load: defaults, then the YAML file (if flags->config_path, or
 * $COLLECT_AGENT_CONFIG), then env overrides from envp (NULL = environ),
 * then flags; then validate. On failure returns CA_EINVAL (or CA_EIO for an
 * unreadable file) and writes one human sentence into err naming the key,
 * the value and what is allowed (YAML syntax errors name the line). Unknown
 * keys do not fail: each is reported as a warning through ca_log. cfg must
 * be fini'd by the caller in both cases. */
enum ca_err ca_config_load(struct ca_config *cfg, const struct ca_config_flags *flags,
                           char *const *envp, char *err, size_t errlen);

/* Validate an already-filled config (ca_config_load calls it). */
enum ca_err ca_config_validate(struct ca_config *cfg, char *err, size_t errlen);

void ca_config_fini(struct ca_config *cfg);

/* The documented default config file, byte for byte as shipped in
 * config/collect-agent.yaml (compiled in). */
const char *ca_config_default_yaml(void);

/* The timeoutSeconds range for watches: kubernetes.watch_timeout_min/max,
 * the maximum capped at half of kubernetes.stall_timeout (a quiet watch's
 * only progress may be its renewal; liveness must not fail on a quiet
 * cluster) and at least a second (timeoutSeconds counts whole seconds). */
void ca_config_watch_timeouts(const struct ca_config *cfg, int64_t *min_ms, int64_t *max_ms);

/* s is a Kubernetes namespace name: an RFC 1123 label (1-63 of [a-z0-9-],
 * starting and ending with a letter or digit), so it goes into a URL path
 * as it is. Any thread. */
bool ca_config_valid_namespace(const char *s);

/* s is a DNS-1123 subdomain (the names of most objects, a Lease's among
 * them): at most 253 of [a-z0-9.-], each dot-separated part starting and
 * ending with a letter or digit. Any thread. */
bool ca_config_valid_subdomain(const char *s);

#endif
