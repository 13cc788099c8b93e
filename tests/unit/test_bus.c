/* tests/unit/test_bus.c: the bus against a real nats-server (Debian's),
 * started here with fork/exec on free loopback ports, with the ca_loop
 * running in this thread. */
#include <arpa/inet.h>
#include <dirent.h>
#include <ftw.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include "check.h"
#include "bus/bus.h"
#include "core/loop.h"
#include "core/prom.h"
#include "core/timeutil.h"
#include "log/log.h"

/* ------------------------------------------------------------ processes */

static const char *nats_server_path(void)
{
	static const char *const candidates[] = { "/usr/sbin/nats-server", "/usr/bin/nats-server",
	                                          "/usr/local/bin/nats-server" };
	for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
		if (access(candidates[i], X_OK) == 0)
			return candidates[i];
	return NULL;
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	int port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static bool port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Run argv (no shell); stdout/stderr go to /dev/null unless CA_TEST_VERBOSE
 * is set. Returns the pid or -1. */
static pid_t spawn(char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		if (!getenv("CA_TEST_VERBOSE")) {
			int null = open("/dev/null", O_RDWR);
			if (null >= 0) {
				dup2(null, 0);
				dup2(null, 1);
				dup2(null, 2);
			}
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int run_wait(char *const argv[])
{
	pid_t pid = spawn(argv);
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct server {
	pid_t pid;
	int port;
	const char *extra[12]; /* extra arguments, NULL-terminated */
};

static bool server_start(struct server *s)
{
	char port[16];
	snprintf(port, sizeof port, "%d", s->port);
	const char *argv[24] = { nats_server_path(), "-a", "127.0.0.1", "-p", port };
	size_t n = 5;
	for (size_t i = 0; s->extra[i] && n < 23; i++)
		argv[n++] = s->extra[i];
	argv[n] = NULL;
	s->pid = spawn((char *const *)argv);
	if (s->pid < 0)
		return false;
	int64_t deadline = ca_now_monotonic_ms() + 10000;
	while (ca_now_monotonic_ms() < deadline) {
		if (port_open(s->port))
			return true;
		int status;
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = -1;
			return false;
		}
		usleep(20 * 1000);
	}
	return false;
}

static void server_stop(struct server *s)
{
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = -1;
}

/* ------------------------------------------------------------ loop helpers */

static struct ca_loop *loop;

struct waiter {
	bool (*pred)(void *);
	void *arg;
	int64_t deadline;
	bool ok;
};

static void wait_tick(void *a)
{
	struct waiter *w = a;
	if (w->pred && w->pred(w->arg)) {
		w->ok = true;
		ca_loop_stop(loop);
	} else if (ca_now_monotonic_ms() >= w->deadline) {
		ca_loop_stop(loop);
	}
}

/* Run the loop until pred(arg) holds or timeout_ms passed. pred NULL: just
 * run for timeout_ms. */
static bool run_until(bool (*pred)(void *), void *arg, int64_t timeout_ms)
{
	struct waiter w = { pred, arg, ca_now_monotonic_ms() + timeout_ms, false };
	struct ca_loop_timer *t = NULL;
	if (ca_loop_timer_new(loop, wait_tick, &w, &t) != CA_OK)
		return false;
	ca_loop_timer_start(t, 0, 10);
	ca_loop_run(loop);
	ca_loop_timer_free(t);
	return w.ok;
}

/* ------------------------------------------------------------ bus fixture */

#define MAX_MSGS 64

struct got {
	char subject[128], reply[128], content_type[64], msg_id[64];
	bool has_ct, has_id;
	char data[256];
	size_t len;
};

struct client {
	struct ca_bus *bus;
	struct ca_config cfg;
	char *servers[2];
	int connects, reconnects, disconnects;
	bool last_reconnected;
	struct got msgs[MAX_MSGS];
	int nmsgs;
	int total; /* every message, also past MAX_MSGS */
};

static void cb_connected(void *arg, bool reconnected)
{
	struct client *c = arg;
	CHECK(ca_bus_connected(c->bus));
	if (reconnected)
		c->reconnects++;
	else
		c->connects++;
	c->last_reconnected = reconnected;
}

static void cb_disconnected(void *arg)
{
	struct client *c = arg;
	c->disconnects++;
}

static void cb_message(void *arg, const struct ca_bus_msg *m)
{
	struct client *c = arg;
	c->total++;
	if (c->nmsgs >= MAX_MSGS)
		return;
	struct got *g = &c->msgs[c->nmsgs++];
	memset(g, 0, sizeof *g);
	ca_strlcpy(g->subject, m->subject, sizeof g->subject);
	if (m->reply)
		ca_strlcpy(g->reply, m->reply, sizeof g->reply);
	g->has_ct = m->content_type != NULL;
	g->has_id = m->msg_id != NULL;
	if (m->content_type)
		ca_strlcpy(g->content_type, m->content_type, sizeof g->content_type);
	if (m->msg_id)
		ca_strlcpy(g->msg_id, m->msg_id, sizeof g->msg_id);
	g->len = m->len;
	memcpy(g->data, m->data, m->len < sizeof g->data - 1 ? m->len : sizeof g->data - 1);
}

static const struct ca_bus_callbacks callbacks = { cb_connected, cb_disconnected, cb_message, NULL };

/* Fill c->cfg by hand for url; the caller may adjust it before bus_make. */
static void client_init(struct client *c, const char *url)
{
	memset(c, 0, sizeof *c);
	c->servers[0] = (char *)url;
	c->cfg.nats.servers.items = c->servers;
	c->cfg.nats.servers.count = 1;
	c->cfg.nats.connect_timeout_ms = 1000;
	c->cfg.nats.reconnect_wait_ms = 50;
	c->cfg.nats.reconnect_wait_max_ms = 200;
	c->cfg.nats.reconnect_jitter_ms = 20;
	c->cfg.nats.max_reconnects = -1;
	c->cfg.nats.reconnect_buffer_bytes = 8 * 1024 * 1024;
	c->cfg.nats.flush_timeout_ms = 1000;
	c->cfg.cluster.id = (char *)"test-cluster";
}

static enum ca_err client_make(struct client *c)
{
	char err[256] = "";
	enum ca_err rc = ca_bus_new(&c->bus, loop, &c->cfg, &callbacks, c, err, sizeof err);
	if (rc != CA_OK)
		fprintf(stderr, "ca_bus_new: %s: %s\n", ca_strerror(rc), err);
	return rc;
}

static bool pred_connected(void *a)
{
	return ((struct client *)a)->connects + ((struct client *)a)->reconnects > 0;
}
static bool pred_disconnected(void *a)
{
	return ((struct client *)a)->disconnects > 0;
}
static bool pred_reconnected(void *a)
{
	return ((struct client *)a)->reconnects > 0;
}

struct count_wait {
	struct client *c[3];
	int want;
};
static bool pred_msgs(void *a)
{
	struct count_wait *w = a;
	int n = 0;
	for (int i = 0; i < 3; i++)
		if (w->c[i])
			n += w->c[i]->nmsgs;
	return n >= w->want;
}

static void url_for(char *out, size_t len, const char *scheme, const char *userinfo, int port)
{
	snprintf(out, len, "%s://%s%s127.0.0.1:%d", scheme, userinfo ? userinfo : "",
	         userinfo ? "@" : "", port);
}

static char tmpdir[64];

static void tmp_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", tmpdir, name);
}

static bool write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	fputs(text, f);
	return fclose(f) == 0;
}

/* ------------------------------------------------------------ tests */

static void test_pubsub_headers(void)
{
	struct server srv = { .port = free_port() };
	CHECK(server_start(&srv));
	char url[64];
	url_for(url, sizeof url, "nats", NULL, srv.port);
	struct client c;
	client_init(&c, url);
	CHECK_INT(client_make(&c), CA_OK);
	if (!c.bus)
		goto out;
	CHECK_INT(ca_bus_max_payload(c.bus), 0);
	CHECK_INT(ca_bus_publish(c.bus, "t.x", NULL, NULL, "x", 1), CA_EAGAIN); /* before connect */
	/* Subscribing before connecting must work. */
	CHECK_INT(ca_bus_subscribe(c.bus, "t.hdr", NULL, 0, 0), CA_OK);
	CHECK_INT(ca_bus_subscribe(c.bus, "", NULL, 0, 0), CA_EINVAL);
	CHECK_INT(ca_bus_connect(c.bus), CA_OK);
	CHECK_INT(ca_bus_connect(c.bus), CA_EINVAL);
	CHECK(run_until(pred_connected, &c, 5000));
	CHECK_INT(c.connects, 1);
	CHECK(!c.last_reconnected);
	CHECK(ca_bus_connected(c.bus));
	CHECK(ca_bus_max_payload(c.bus) == 1024 * 1024);

	CHECK_INT(ca_bus_publish(c.bus, "t.hdr", "application/json", "id-1", "{\"a\":1}", 7), CA_OK);
	CHECK_INT(ca_bus_publish(c.bus, "t.hdr", NULL, NULL, "raw", 3), CA_OK);
	CHECK_INT(ca_bus_publish_request(c.bus, "t.hdr", "t.reply.1", "application/x-protobuf", "id-3",
	                                 "\x08\x01", 2), CA_OK);
	CHECK_INT(ca_bus_flush(c.bus, 2000), CA_OK);
	struct count_wait w = { { &c, NULL, NULL }, 3 };
	CHECK(run_until(pred_msgs, &w, 5000));
	CHECK_INT(c.nmsgs, 3);
	CHECK_STR(c.msgs[0].subject, "t.hdr");
	CHECK(c.msgs[0].has_ct);
	CHECK_STR(c.msgs[0].content_type, "application/json");
	CHECK_STR(c.msgs[0].msg_id, "id-1");
	CHECK_INT(c.msgs[0].len, 7);
	CHECK_STR(c.msgs[0].data, "{\"a\":1}");
	CHECK_STR(c.msgs[0].reply, "");
	CHECK(!c.msgs[1].has_ct);
	CHECK(!c.msgs[1].has_id);
	CHECK_STR(c.msgs[1].data, "raw");
	CHECK_STR(c.msgs[2].content_type, "application/x-protobuf");
	CHECK_STR(c.msgs[2].msg_id, "id-3");
	CHECK_STR(c.msgs[2].reply, "t.reply.1");
	CHECK_INT(c.msgs[2].len, 2);
	CHECK(memcmp(c.msgs[2].data, "\x08\x01", 2) == 0);

	/* Metrics and health. */
	struct ca_buf b;
	ca_buf_init(&b, 0);
	struct ca_prom p;
	ca_prom_init(&p, &b, "test-cluster");
	ca_bus_render_metrics(c.bus, &p);
	CHECK(b.data && strstr(b.data, "agent_connected{cluster_id=\"test-cluster\"} 1"));
	CHECK(b.data && strstr(b.data, "agent_nats_published_messages_total{cluster_id=\"test-cluster\"} 3"));
	CHECK(b.data && strstr(b.data, "agent_nats_received_messages_total{cluster_id=\"test-cluster\"} 3"));
	CHECK(b.data && strstr(b.data, "agent_nats_publish_errors_total{cluster_id=\"test-cluster\"} 1"));
	CHECK(b.data && strstr(b.data, "# TYPE agent_nats_reconnects_total counter"));
	ca_buf_reset(&b);
	ca_bus_health_json(c.bus, &b);
	char expect[128];
	snprintf(expect, sizeof expect, "{\"connected\":true,\"server\":\"nats://127.0.0.1:%d\"", srv.port);
	CHECK(b.data && strncmp(b.data, expect, strlen(expect)) == 0);
	CHECK(b.data && strstr(b.data, "\"reconnects\":0"));
	CHECK(b.data && b.data[b.len - 1] == '}');
	ca_buf_fini(&b);

	ca_bus_close(c.bus);
	CHECK(!ca_bus_connected(c.bus));
	CHECK_INT(ca_bus_publish(c.bus, "t.hdr", NULL, NULL, "x", 1), CA_EIO);
out:
	ca_bus_free(c.bus);
	server_stop(&srv);
}

static void test_queue_group(void)
{
	struct server srv = { .port = free_port() };
	CHECK(server_start(&srv));
	char url[64];
	url_for(url, sizeof url, "nats", NULL, srv.port);
	struct client a, b, pub;
	client_init(&a, url);
	client_init(&b, url);
	client_init(&pub, url);
	CHECK_INT(client_make(&a), CA_OK);
	CHECK_INT(client_make(&b), CA_OK);
	CHECK_INT(client_make(&pub), CA_OK);
	if (!a.bus || !b.bus || !pub.bus)
		goto out;
	CHECK_INT(ca_bus_subscribe(a.bus, "t.cmd", "workers", 0, 0), CA_OK);
	CHECK_INT(ca_bus_subscribe(b.bus, "t.cmd", "workers", 0, 0), CA_OK);
	CHECK_INT(ca_bus_connect(a.bus), CA_OK);
	CHECK_INT(ca_bus_connect(b.bus), CA_OK);
	CHECK_INT(ca_bus_connect(pub.bus), CA_OK);
	CHECK(run_until(pred_connected, &a, 5000));
	CHECK(run_until(pred_connected, &b, 5000));
	CHECK(run_until(pred_connected, &pub, 5000));
	/* Make sure both subscriptions reached the server before publishing. */
	CHECK_INT(ca_bus_flush(a.bus, 2000), CA_OK);
	CHECK_INT(ca_bus_flush(b.bus, 2000), CA_OK);
	const int n = 40;
	for (int i = 0; i < n; i++) {
		char id[16];
		snprintf(id, sizeof id, "m-%d", i);
		CHECK_INT(ca_bus_publish(pub.bus, "t.cmd", "application/json", id, "{}", 2), CA_OK);
	}
	CHECK_INT(ca_bus_flush(pub.bus, 2000), CA_OK);
	struct count_wait w = { { &a, &b, NULL }, n };
	CHECK(run_until(pred_msgs, &w, 5000));
	run_until(NULL, NULL, 200); /* would surface duplicates */
	CHECK_INT(a.nmsgs + b.nmsgs, n);
	/* Every id exactly once across both members. */
	int seen[40] = { 0 };
	for (int k = 0; k < 2; k++) {
		struct client *c = k ? &b : &a;
		for (int i = 0; i < c->nmsgs; i++) {
			int idx = (int)strtol(c->msgs[i].msg_id + 2, NULL, 10);
			if (idx >= 0 && idx < n)
				seen[idx]++;
		}
	}
	for (int i = 0; i < n; i++)
		CHECK_INT(seen[i], 1);
	CHECK_INT(pub.nmsgs, 0);
out:
	ca_bus_free(a.bus);
	ca_bus_free(b.bus);
	ca_bus_free(pub.bus);
	server_stop(&srv);
}

static void test_server_down_and_reconnect(void)
{
	struct server srv = { .port = free_port() };
	char url[64];
	url_for(url, sizeof url, "nats", NULL, srv.port);
	struct client c;
	client_init(&c, url);
	c.cfg.nats.reconnect_buffer_bytes = 4096;
	CHECK_INT(client_make(&c), CA_OK);
	if (!c.bus)
		return;
	CHECK_INT(ca_bus_connect(c.bus), CA_OK); /* nothing listens yet */
	CHECK_INT(ca_bus_subscribe(c.bus, "t.buf", NULL, 0, 0), CA_OK);
	run_until(NULL, NULL, 300);
	CHECK(!ca_bus_connected(c.bus));
	CHECK_INT(c.connects, 0);
	CHECK_INT(c.disconnects, 0);

	CHECK(server_start(&srv));
	CHECK(run_until(pred_connected, &c, 5000));
	CHECK_INT(c.connects, 1);
	CHECK_INT(c.reconnects, 0);
	CHECK_INT(ca_bus_reconnects(c.bus), 0);
	CHECK_INT(ca_bus_flush(c.bus, 2000), CA_OK);

	server_stop(&srv);
	CHECK(run_until(pred_disconnected, &c, 5000));
	CHECK_INT(c.disconnects, 1);
	CHECK(!ca_bus_connected(c.bus));
	CHECK_INT(ca_bus_flush(c.bus, 100), CA_EAGAIN);
	for (int i = 0; i < 3; i++) {
		char id[16];
		snprintf(id, sizeof id, "buf-%d", i);
		CHECK_INT(ca_bus_publish(c.bus, "t.buf", "text/plain", id, "queued", 6), CA_OK);
	}
	/* The reconnect buffer (4 KiB here) is full for a bigger message. */
	static char big[8192];
	memset(big, 'b', sizeof big);
	CHECK_INT(ca_bus_publish(c.bus, "t.buf", NULL, NULL, big, sizeof big), CA_EAGAIN);

	struct ca_buf b;
	ca_buf_init(&b, 0);
	ca_bus_health_json(c.bus, &b);
	CHECK(b.data && strncmp(b.data, "{\"connected\":false,\"server\":null", 32) == 0);
	CHECK(b.data && !strstr(b.data, "\"last_error\":null"));
	ca_buf_fini(&b);

	CHECK(server_start(&srv));
	CHECK(run_until(pred_reconnected, &c, 10000));
	CHECK_INT(c.reconnects, 1);
	CHECK(c.last_reconnected);
	CHECK_INT(ca_bus_reconnects(c.bus), 1);
	CHECK(ca_bus_connected(c.bus));
	struct count_wait w = { { &c, NULL, NULL }, 3 };
	CHECK(run_until(pred_msgs, &w, 5000));
	CHECK_INT(c.nmsgs, 3);
	for (int i = 0; i < c.nmsgs && i < 3; i++) {
		char id[16];
		snprintf(id, sizeof id, "buf-%d", i);
		CHECK_STR(c.msgs[i].msg_id, id);
		CHECK_STR(c.msgs[i].data, "queued");
	}
	ca_buf_init(&b, 0);
	struct ca_prom p;
	ca_prom_init(&p, &b, "");
	ca_bus_render_metrics(c.bus, &p);
	CHECK(b.data && strstr(b.data, "agent_nats_reconnects_total{cluster_id=\"\"} 1"));
	CHECK(b.data && strstr(b.data, "agent_nats_disconnects_total{cluster_id=\"\"} 1"));
	ca_buf_fini(&b);
	ca_bus_free(c.bus);
	server_stop(&srv);
}

/* Incoming messages are bounded by the subscription's pending limits: with
 * the loop not turning, what does not fit is dropped and counted, and what
 * arrives is whole and in order. */
static void test_pending_limits(void)
{
	enum { N = 50 };
	struct server srv = { .port = free_port() };
	CHECK(server_start(&srv));
	char url[64];
	url_for(url, sizeof url, "nats", NULL, srv.port);
	struct client c, pub;
	client_init(&c, url);
	client_init(&pub, url);
	CHECK_INT(client_make(&c), CA_OK);
	CHECK_INT(client_make(&pub), CA_OK);
	if (!c.bus || !pub.bus)
		goto out;
	CHECK_INT(ca_bus_subscribe(c.bus, "t.cap", NULL, 8, 2048), CA_OK);
	CHECK_INT(ca_bus_connect(c.bus), CA_OK);
	CHECK_INT(ca_bus_connect(pub.bus), CA_OK);
	CHECK(run_until(pred_connected, &c, 5000));
	CHECK(run_until(pred_connected, &pub, 5000));
	CHECK_INT(ca_bus_flush(c.bus, 2000), CA_OK); /* the subscription is live */
	static char payload[200];
	memset(payload, 'p', sizeof payload);
	for (int i = 0; i < N; i++)
		CHECK_INT(ca_bus_publish(pub.bus, "t.cap", NULL, NULL, payload, sizeof payload), CA_OK);
	CHECK_INT(ca_bus_flush(pub.bus, 2000), CA_OK);
	usleep(300 * 1000); /* the loop does not turn: everything waits or drops */
	run_until(NULL, NULL, 300);
	struct ca_buf b;
	ca_buf_init(&b, 0);
	struct ca_prom p;
	ca_prom_init(&p, &b, "");
	ca_bus_render_metrics(c.bus, &p);
	const char *d = b.data ? strstr(b.data, "agent_nats_dropped_messages_total{cluster_id=\"\"} ") : NULL;
	long dropped = d ? strtol(d + strlen("agent_nats_dropped_messages_total{cluster_id=\"\"} "), NULL, 10) : -1;
	CHECK(c.total > 0);
	CHECK(c.total < N);
	CHECK(dropped > 0);
	CHECK_INT(c.total + dropped, N);
	ca_buf_fini(&b);
out:
	ca_bus_free(c.bus);
	ca_bus_free(pub.bus);
	server_stop(&srv);
}

/* Connect with cfg tweaked by the caller; returns whether it got connected
 * within timeout_ms. The bus is freed before returning. */
static bool try_connect(struct client *c, int64_t timeout_ms)
{
	bool ok = false;
	if (client_make(c) != CA_OK)
		return false;
	CHECK_INT(ca_bus_connect(c->bus), CA_OK);
	ok = run_until(pred_connected, c, timeout_ms) && ca_bus_connected(c->bus);
	ca_bus_free(c->bus);
	c->bus = NULL;
	return ok;
}

static void test_auth(void)
{
	struct server srv = { .port = free_port(), .extra = { "--auth", "s3cret-token" } };
	CHECK(server_start(&srv));
	char url[64];
	url_for(url, sizeof url, "nats", NULL, srv.port);
	struct client c;

	client_init(&c, url);
	c.cfg.nats.auth.token = (char *)"s3cret-token";
	CHECK(try_connect(&c, 5000));

	/* A 5 KiB token (any size the config loader accepts) goes through to
	 * a server whose control lines are long enough for it (nats-server's
	 * default max_control_line, 4 KiB, would refuse the CONNECT line). */
	static char long_token[5 * 1024 + 1], conf_text[6 * 1024];
	char conf[128];
	memset(long_token, 't', sizeof long_token - 1);
	snprintf(conf_text, sizeof conf_text, "max_control_line: 16384\nauthorization { token: \"%s\" }\n",
	         long_token);
	tmp_path(conf, sizeof conf, "long-token.conf");
	CHECK(write_file(conf, conf_text));
	struct server srv_long = { .port = free_port(), .extra = { "-c", conf } };
	CHECK(server_start(&srv_long));
	char url_long[64];
	url_for(url_long, sizeof url_long, "nats", NULL, srv_long.port);
	client_init(&c, url_long);
	c.cfg.nats.auth.token = long_token;
	CHECK(try_connect(&c, 5000));
	server_stop(&srv_long);

	client_init(&c, url);
	c.cfg.nats.auth.token = (char *)"wrong";
	CHECK_INT(client_make(&c), CA_OK);
	if (c.bus) {
		CHECK_INT(ca_bus_connect(c.bus), CA_OK);
		CHECK(!run_until(pred_connected, &c, 1000));
		CHECK(!ca_bus_connected(c.bus));
		CHECK_INT(c.connects, 0);
		struct ca_buf b;
		ca_buf_init(&b, 0);
		ca_bus_health_json(c.bus, &b);
		CHECK(b.data && strstr(b.data, "\"connected\":false"));
		CHECK(b.data && !strstr(b.data, "wrong"));
		CHECK(b.data && !strstr(b.data, "\"last_error\":null"));
		ca_buf_fini(&b);
		ca_bus_free(c.bus);
		c.bus = NULL;
	}

	client_init(&c, url);
	CHECK(!try_connect(&c, 500)); /* no credentials at all */

	server_stop(&srv);

	struct server srv2 = { .port = free_port(), .extra = { "--user", "agent", "--pass", "pw-123" } };
	CHECK(server_start(&srv2));
	url_for(url, sizeof url, "nats", NULL, srv2.port);
	client_init(&c, url);
	c.cfg.nats.auth.user = (char *)"agent";
	c.cfg.nats.auth.password = (char *)"pw-123";
	CHECK(try_connect(&c, 5000));

	client_init(&c, url);
	c.cfg.nats.auth.user = (char *)"agent";
	c.cfg.nats.auth.password = (char *)"bad";
	CHECK(!try_connect(&c, 1000));

	/* Credentials in the URL work and never show up in health output. */
	char url2[96];
	url_for(url2, sizeof url2, "nats", "agent:pw-123", srv2.port);
	client_init(&c, url2);
	CHECK_INT(client_make(&c), CA_OK);
	if (c.bus) {
		CHECK_INT(ca_bus_connect(c.bus), CA_OK);
		CHECK(run_until(pred_connected, &c, 5000));
		struct ca_buf b;
		ca_buf_init(&b, 0);
		ca_bus_health_json(c.bus, &b);
		CHECK(b.data && !strstr(b.data, "pw-123"));
		CHECK(b.data && strstr(b.data, "\"connected\":true"));
		ca_buf_fini(&b);
		ca_bus_free(c.bus);
	}
	server_stop(&srv2);
}

static void test_max_payload(void)
{
	char conf[128];
	tmp_path(conf, sizeof conf, "small.conf");
	CHECK(write_file(conf, "max_payload: 1024\n"));
	struct server srv = { .port = free_port(), .extra = { "-c", conf } };
	CHECK(server_start(&srv));
	char url[64];
	url_for(url, sizeof url, "nats", NULL, srv.port);
	struct client c;
	client_init(&c, url);
	CHECK_INT(client_make(&c), CA_OK);
	if (!c.bus)
		goto out;
	CHECK_INT(ca_bus_subscribe(c.bus, "t.size", NULL, 0, 0), CA_OK);
	CHECK_INT(ca_bus_connect(c.bus), CA_OK);
	CHECK(run_until(pred_connected, &c, 5000));
	CHECK_INT(ca_bus_max_payload(c.bus), 1024);
	static char data[2048];
	memset(data, 'p', sizeof data);
	CHECK_INT(ca_bus_publish(c.bus, "t.size", "text/plain", "big", data, 2000), CA_ETOOBIG);
	CHECK_INT(ca_bus_publish(c.bus, "t.size", "text/plain", "big", data, 1024), CA_ETOOBIG);
	CHECK_INT(ca_bus_publish(c.bus, "t.size", "text/plain", "small", data, 100), CA_OK);
	struct count_wait w = { { &c, NULL, NULL }, 1 };
	CHECK(run_until(pred_msgs, &w, 5000));
	CHECK_INT(c.nmsgs, 1);
	CHECK_STR(c.msgs[0].msg_id, "small");
	/* The connection is still fine after the refusals. */
	CHECK(ca_bus_connected(c.bus));
out:
	ca_bus_free(c.bus);
	server_stop(&srv);
}

static bool pred_total(void *a)
{
	const struct count_wait *w = a;
	return w->c[0]->total >= w->want;
}

/* Many publishes in a row (the bus frees each published nats.c message on
 * the loop thread instead of through nats.c's collector thread): all of
 * them arrive, in order, with their headers, payloads and reply subjects;
 * valgrind and ASan runs of this test catch a message freed too early. */
static void test_publish_many(void)
{
	enum { N = 3000 };
	struct server srv = { .port = free_port() };
	CHECK(server_start(&srv));
	char url[64];
	url_for(url, sizeof url, "nats", NULL, srv.port);
	struct client c;
	client_init(&c, url);
	CHECK_INT(client_make(&c), CA_OK);
	if (!c.bus)
		goto out;
	CHECK_INT(ca_bus_subscribe(c.bus, "t.many", NULL, N, 0), CA_OK);
	CHECK_INT(ca_bus_connect(c.bus), CA_OK);
	CHECK(run_until(pred_connected, &c, 5000));
	int ok = 0;
	for (int i = 0; i < N; i++) {
		char id[32], data[128], reply[32];
		snprintf(id, sizeof id, "id-%d", i);
		int len = snprintf(data, sizeof data, "payload-%d-%.*s", i, i % 60,
		                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		snprintf(reply, sizeof reply, "r.%d", i);
		enum ca_err rc;
		if (i % 3 == 0)
			rc = ca_bus_publish(c.bus, "t.many", "application/json", id, data, (size_t)len);
		else if (i % 3 == 1)
			rc = ca_bus_publish(c.bus, "t.many", NULL, NULL, data, (size_t)len);
		else
			rc = ca_bus_publish_request(c.bus, "t.many", reply, "text/plain", id, data, (size_t)len);
		ok += rc == CA_OK;
	}
	CHECK_INT(ok, N);
	CHECK_INT(ca_bus_flush(c.bus, 5000), CA_OK);
	struct count_wait w = { { &c, NULL, NULL }, N };
	CHECK(run_until(pred_total, &w, 10000));
	CHECK_INT(c.total, N);
	CHECK_INT(c.nmsgs, MAX_MSGS);
	for (int i = 0; i < c.nmsgs; i++) {
		const struct got *g = &c.msgs[i];
		char id[32], data[128], reply[32];
		snprintf(id, sizeof id, "id-%d", i);
		int len = snprintf(data, sizeof data, "payload-%d-%.*s", i, i % 60,
		                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		snprintf(reply, sizeof reply, "r.%d", i);
		CHECK_INT(g->len, (size_t)len);
		CHECK_STR(g->data, data);
		CHECK_STR(g->subject, "t.many");
		CHECK_INT(g->has_ct, i % 3 != 1);
		CHECK_INT(g->has_id, i % 3 != 1);
		if (i % 3 == 0) {
			CHECK_STR(g->content_type, "application/json");
			CHECK_STR(g->msg_id, id);
			CHECK_STR(g->reply, "");
		} else if (i % 3 == 2) {
			CHECK_STR(g->content_type, "text/plain");
			CHECK_STR(g->msg_id, id);
			CHECK_STR(g->reply, reply);
		}
	}
	struct ca_buf b;
	ca_buf_init(&b, 0);
	struct ca_prom p;
	ca_prom_init(&p, &b, "test-cluster");
	ca_bus_render_metrics(c.bus, &p);
	CHECK(b.data && strstr(b.data, "agent_nats_published_messages_total{cluster_id=\"test-cluster\"} 3000\n"));
	CHECK(b.data && strstr(b.data, "agent_nats_publish_errors_total{cluster_id=\"test-cluster\"} 0\n"));
	ca_buf_fini(&b);
out:
	ca_bus_free(c.bus);
	server_stop(&srv);
}

/* The bus frees published messages in place only when nats.c's message
 * starts with {next = NULL, freeCb = natsMsg_free} (destroy_published() in
 * bus.c); otherwise it silently falls back to nats.c's collector thread and
 * its per-publish wake-ups. Check that the installed libnats still matches,
 * so an upgrade that changes the layout fails here instead of quietly
 * costing ~2 context switches per event. Runs after a bus connected, so the
 * library (and its collector) is initialised. */
static void test_msg_layout(void)
{
	void *sym = dlsym(RTLD_DEFAULT, "natsMsg_free");
	CHECK(sym != NULL);
	natsMsg *m = NULL;
	CHECK_INT(natsMsg_Create(&m, "t.layout", NULL, "x", 1), NATS_OK);
	if (!m)
		return;
	void *words[2];
	memcpy(words, m, sizeof words);
	CHECK(words[0] == NULL);
	CHECK(sym != NULL && words[1] == sym);
	natsMsg_Destroy(m);
}

static bool make_certs(void)
{
	char ca_key[128], ca_pem[128], other_key[128], other_pem[128];
	char key[128], csr[128], pem[128], ext[128], serial[128];
	tmp_path(ca_key, sizeof ca_key, "ca.key");
	tmp_path(ca_pem, sizeof ca_pem, "ca.pem");
	tmp_path(other_key, sizeof other_key, "other.key");
	tmp_path(other_pem, sizeof other_pem, "other.pem");
	tmp_path(key, sizeof key, "server.key");
	tmp_path(csr, sizeof csr, "server.csr");
	tmp_path(pem, sizeof pem, "server.pem");
	tmp_path(ext, sizeof ext, "ext.cnf");
	tmp_path(serial, sizeof serial, "ca.srl");
	if (!write_file(ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"))
		return false;
	char *const ca_cmd[] = { "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
	                         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ca_key, "-out",
	                         ca_pem, "-days", "2", "-subj", "/CN=collect-agent test CA", NULL };
	char *const other_cmd[] = { "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
	                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", other_key,
	                            "-out", other_pem, "-days", "2", "-subj", "/CN=unrelated CA", NULL };
	char *const csr_cmd[] = { "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
	                          "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
	                          "-subj", "/CN=localhost", NULL };
	char *const sign_cmd[] = { "openssl", "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
	                           "-CAserial", serial, "-CAcreateserial", "-out", pem, "-days", "2",
	                           "-extfile", ext, NULL };
	return run_wait(ca_cmd) == 0 && run_wait(other_cmd) == 0 && run_wait(csr_cmd) == 0 &&
	       run_wait(sign_cmd) == 0;
}

static void test_tls(void)
{
	if (!make_certs()) {
		CHECK(!"openssl could not make the test certificates");
		return;
	}
	char ca_pem[128], other_pem[128], key[128], pem[128];
	tmp_path(ca_pem, sizeof ca_pem, "ca.pem");
	tmp_path(other_pem, sizeof other_pem, "other.pem");
	tmp_path(key, sizeof key, "server.key");
	tmp_path(pem, sizeof pem, "server.pem");
	struct server srv = { .port = free_port(), .extra = { "--tls", "--tlscert", pem, "--tlskey", key } };
	CHECK(server_start(&srv));
	char url[64];
	url_for(url, sizeof url, "nats", NULL, srv.port);

	struct client c;
	client_init(&c, url);
	c.cfg.nats.tls.enabled = true;
	c.cfg.nats.tls.ca_file = ca_pem;
	CHECK_INT(client_make(&c), CA_OK);
	if (c.bus) {
		CHECK_INT(ca_bus_subscribe(c.bus, "t.tls", NULL, 0, 0), CA_OK);
		CHECK_INT(ca_bus_connect(c.bus), CA_OK);
		CHECK(run_until(pred_connected, &c, 5000));
		CHECK_INT(ca_bus_publish(c.bus, "t.tls", "text/plain", "tls-1", "secure", 6), CA_OK);
		struct count_wait w = { { &c, NULL, NULL }, 1 };
		CHECK(run_until(pred_msgs, &w, 5000));
		CHECK_STR(c.msgs[0].data, "secure");
		ca_bus_free(c.bus);
	}

	/* tls:// implies TLS. */
	char turl[64];
	url_for(turl, sizeof turl, "tls", NULL, srv.port);
	client_init(&c, turl);
	c.cfg.nats.tls.ca_file = ca_pem;
	CHECK(try_connect(&c, 5000));

	/* A CA that did not sign the server's certificate: never ready. */
	client_init(&c, url);
	c.cfg.nats.tls.enabled = true;
	c.cfg.nats.tls.ca_file = other_pem;
	CHECK(!try_connect(&c, 1500));
	CHECK_INT(c.connects, 0);

	/* Skipping verification accepts it (for labs only). */
	client_init(&c, url);
	c.cfg.nats.tls.enabled = true;
	c.cfg.nats.tls.ca_file = other_pem;
	c.cfg.nats.tls.insecure_skip_verify = true;
	CHECK(try_connect(&c, 5000));

	/* Plain client against a TLS-only server: not connected. */
	client_init(&c, url);
	CHECK(!try_connect(&c, 800));

	/* A missing CA file fails at construction with a reason. */
	client_init(&c, url);
	c.cfg.nats.tls.enabled = true;
	c.cfg.nats.tls.ca_file = (char *)"/nonexistent/ca.pem";
	CHECK_INT(client_make(&c), CA_EINVAL);
	server_stop(&srv);
}

static void test_bad_config(void)
{
	struct client c;
	client_init(&c, "nats://127.0.0.1:1");
	c.cfg.nats.servers.count = 0;
	char err[128] = "";
	CHECK_INT(ca_bus_new(&c.bus, loop, &c.cfg, &callbacks, &c, err, sizeof err), CA_EINVAL);
	CHECK(c.bus == NULL);
	CHECK(strstr(err, "nats.servers") != NULL);
	ca_bus_free(NULL);

	/* Closing a bus that never connected (nothing listens) returns. */
	client_init(&c, "nats://127.0.0.1:1");
	CHECK_INT(client_make(&c), CA_OK);
	if (c.bus) {
		CHECK_INT(ca_bus_connect(c.bus), CA_OK);
		run_until(NULL, NULL, 100);
		ca_bus_close(c.bus);
		ca_bus_close(c.bus);
		CHECK_INT(c.connects, 0);
		ca_bus_free(c.bus);
	}
}

/* Passwords may hold '@' or '/': nats.c takes the user info up to the last
 * '@' (url.c uses strrchr), so the redacted URL must cut there too. */
static void test_redacted_urls(void)
{
	struct client c;
	client_init(&c, "nats://agent:p@ss@127.0.0.1:1");
	c.servers[1] = (char *)"nats://agent:pa/ss@127.0.0.1:2";
	c.cfg.nats.servers.count = 2;
	CHECK_INT(client_make(&c), CA_OK);
	if (!c.bus)
		return;
	struct ca_buf b;
	ca_buf_init(&b, 0);
	ca_bus_health_json(c.bus, &b);
	CHECK(b.data && strstr(b.data, "\"nats://127.0.0.1:1\""));
	CHECK(b.data && strstr(b.data, "\"nats://127.0.0.1:2\""));
	CHECK(b.data && !strstr(b.data, "ss@"));
	CHECK(b.data && !strstr(b.data, "pa/ss"));
	CHECK(b.data && !strstr(b.data, "agent"));
	ca_buf_fini(&b);
	ca_bus_free(c.bus);
}

static void cleanup_tmpdir(void)
{
	DIR *d = opendir(tmpdir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[512];
		snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(tmpdir);
}

/* ------------------------------------------------ delivery confirmation */

struct seq_wait {
	struct ca_bus *bus;
	uint64_t want;
};
static bool pred_confirmed(void *a)
{
	const struct seq_wait *w = a;
	return ca_bus_confirmed_seq(w->bus) >= w->want;
}

static void publish_n(struct ca_bus *bus, int from, int n, bool durable, int *ok)
{
	for (int i = from; i < from + n; i++) {
		char id[32], data[64];
		snprintf(id, sizeof id, "id-%d", i);
		int len = snprintf(data, sizeof data, "payload-%d", i);
		enum ca_err rc = durable ? ca_bus_publish_durable(bus, "t.js", "text/plain", id, data, (size_t)len)
		                         : ca_bus_publish(bus, "t.js", "text/plain", id, data, (size_t)len);
		*ok += rc == CA_OK;
	}
}

/* Core NATS: confirmed follows published once a PING/PONG came back; a
 * stopped server stops it, and it catches up after the server resumes. */
static void test_confirmed_core(void)
{
	struct server srv = { .port = free_port() };
	CHECK(server_start(&srv));
	char url[64];
	url_for(url, sizeof url, "nats", NULL, srv.port);
	struct client c;
	client_init(&c, url);
	c.cfg.nats.ping_interval_ms = 60000; /* the stop must not end in a reconnect here */
	CHECK_INT(client_make(&c), CA_OK);
	if (!c.bus)
		goto out;
	CHECK_INT(ca_bus_published_seq(c.bus), 0);
	CHECK_INT(ca_bus_confirmed_seq(c.bus), 0);
	CHECK_INT(ca_bus_connect(c.bus), CA_OK);
	CHECK(run_until(pred_connected, &c, 5000));
	int ok = 0;
	publish_n(c.bus, 0, 50, false, &ok);
	CHECK_INT(ok, 50);
	CHECK_INT(ca_bus_published_seq(c.bus), 50);
	struct seq_wait w = { c.bus, 50 };
	CHECK(run_until(pred_confirmed, &w, 5000));
	CHECK_INT(ca_bus_confirmed_seq(c.bus), 50);

	kill(srv.pid, SIGSTOP);
	publish_n(c.bus, 50, 20, true, &ok); /* durable without JetStream: core */
	CHECK_INT(ok, 70);
	CHECK_INT(ca_bus_published_seq(c.bus), 70);
	run_until(NULL, NULL, 600);
	CHECK_INT(ca_bus_confirmed_seq(c.bus), 50);
	kill(srv.pid, SIGCONT);
	w.want = 70;
	CHECK(run_until(pred_confirmed, &w, 10000));
	CHECK_INT(ca_bus_confirmed_seq(c.bus), 70);
out:
	ca_bus_free(c.bus);
	server_stop(&srv);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* A nats-server with JetStream storing in a fresh directory (store, 64
 * bytes), its URL in url (64 bytes). False (a failed check) without one. */
static bool js_server_start(struct server *srv, char *store, char *url)
{
	ca_strlcpy(store, "/tmp/ca-bus-js-XXXXXX", 64);
	if (!mkdtemp(store)) {
		CHECK(false);
		return false;
	}
	*srv = (struct server){.port = free_port(), .extra = {"-js", "-sd", store}};
	CHECK(server_start(srv));
	url_for(url, 64, "nats", NULL, srv->port);
	return true;
}

/* JetStream: nothing goes out before the stream is named; then the stream
 * is created, every message acknowledged in order and confirmed; closing
 * with acknowledgements pending (a stopped server) frees everything
 * (valgrind and ASan runs check). */
static void test_jetstream(void)
{
	char store[64], url[64];
	struct server srv;
	if (!js_server_start(&srv, store, url))
		return;
	struct client c, sub;
	client_init(&c, url);
	client_init(&sub, url);
	c.cfg.nats.jetstream.enabled = true;
	c.cfg.nats.jetstream.create_stream = true;
	c.cfg.nats.jetstream.duplicate_window_ms = 120000;
	c.cfg.nats.jetstream.ack_timeout_ms = 1000;
	c.cfg.nats.jetstream.max_pending_bytes = 1 << 20;
	c.cfg.nats.jetstream.retry_backoff_ms = 50;
	c.cfg.nats.jetstream.retry_backoff_max_ms = 200;
	c.cfg.nats.ping_interval_ms = 60000;
	CHECK_INT(client_make(&c), CA_OK);
	CHECK_INT(client_make(&sub), CA_OK);
	if (!c.bus || !sub.bus)
		goto out;
	CHECK_INT(ca_bus_subscribe(sub.bus, "t.js", NULL, 0, 0), CA_OK);
	CHECK_INT(ca_bus_connect(sub.bus), CA_OK);
	CHECK_INT(ca_bus_connect(c.bus), CA_OK);
	CHECK(run_until(pred_connected, &c, 5000));
	CHECK(run_until(pred_connected, &sub, 5000));
	CHECK_INT(ca_bus_publish_durable(c.bus, "t.js", NULL, "x", "x", 1), CA_EAGAIN);
	const char *subjects[] = { "t.js" };
	CHECK_INT(ca_bus_jetstream_bind(c.bus, "test-cluster", subjects, 1), CA_OK);
	CHECK_INT(ca_bus_jetstream_bind(c.bus, "test-cluster", subjects, 1), CA_EINVAL);
	int ok = 0;
	publish_n(c.bus, 0, 40, true, &ok);
	CHECK_INT(ok, 40);
	struct seq_wait w = { c.bus, 40 };
	CHECK(run_until(pred_confirmed, &w, 10000));
	struct count_wait cw = { { &sub, NULL, NULL }, 40 };
	CHECK(run_until(pred_total, &cw, 5000));
	for (int i = 0; i < sub.nmsgs && i < 40; i++) {
		char id[32];
		snprintf(id, sizeof id, "id-%d", i);
		CHECK_STR(sub.msgs[i].msg_id, id);
	}
	struct ca_buf b;
	ca_buf_init(&b, 0);
	struct ca_prom p;
	ca_prom_init(&p, &b, "test-cluster");
	ca_bus_render_metrics(c.bus, &p);
	CHECK(b.data && strstr(b.data, "agent_nats_js_acked_total{cluster_id=\"test-cluster\"} 40\n"));
	CHECK(b.data && strstr(b.data, "agent_nats_js_acks_pending{cluster_id=\"test-cluster\"} 0\n"));
	ca_buf_reset(&b);
	ca_bus_health_json(c.bus, &b);
	CHECK(b.data && strstr(b.data, "\"stream\":\"AGENT_test-cluster\",\"state\":\"ok\""));
	CHECK(b.data && strstr(b.data, "\"published_seq\":40,\"confirmed_seq\":40"));
	ca_buf_fini(&b);

	/* Close with acknowledgements pending. */
	kill(srv.pid, SIGSTOP);
	publish_n(c.bus, 40, 10, true, &ok);
	CHECK_INT(ok, 50);
	run_until(NULL, NULL, 300);
	CHECK(ca_bus_confirmed_seq(c.bus) < 50);
	ca_bus_free(c.bus);
	c.bus = NULL;
	kill(srv.pid, SIGCONT);
out:
	ca_bus_free(c.bus);
	ca_bus_free(sub.bus);
	server_stop(&srv);
	nftw(store, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A durable message larger than nats.jetstream.max_pending_bytes can never
 * be held until acknowledged: ca_bus_max_payload() says so to the callers
 * that size their messages by it (metric parts, command results), and a
 * larger one is CA_ETOOBIG, not CA_EAGAIN for ever (found in review). */
static void test_jetstream_larger_than_pending(void)
{
	char store[64], url[64];
	struct server srv;
	if (!js_server_start(&srv, store, url))
		return;
	struct client c;
	client_init(&c, url);
	c.cfg.nats.jetstream.enabled = true;
	c.cfg.nats.jetstream.create_stream = true;
	c.cfg.nats.jetstream.duplicate_window_ms = 120000;
	c.cfg.nats.jetstream.ack_timeout_ms = 1000;
	c.cfg.nats.jetstream.max_pending_bytes = 64 << 10;
	c.cfg.nats.jetstream.retry_backoff_ms = 50;
	c.cfg.nats.jetstream.retry_backoff_max_ms = 200;
	char *data = NULL;
	CHECK_INT(client_make(&c), CA_OK);
	if (!c.bus)
		goto out;
	/* Bounded by max_pending_bytes before the server's limit is known. */
	size_t before = ca_bus_max_payload(c.bus);
	CHECK(before > 32 << 10 && before < 64 << 10);
	CHECK_INT(ca_bus_connect(c.bus), CA_OK);
	CHECK(run_until(pred_connected, &c, 5000));
	const char *subjects[] = {"t.js"};
	CHECK_INT(ca_bus_jetstream_bind(c.bus, "test-cluster", subjects, 1), CA_OK);
	/* The server allows 1 MiB: max_pending_bytes is the smaller limit. */
	size_t mp = ca_bus_max_payload(c.bus);
	CHECK(mp == before);
	size_t len = 100000;
	data = calloc(1, len);
	if (!data)
		goto out;
	memset(data, 'a', len);
	CHECK_INT(ca_bus_publish_durable(c.bus, "t.js", "application/json", "big", data, len),
	          CA_ETOOBIG);
	CHECK(ca_bus_published_seq(c.bus) == 0);
	/* What it offers is accepted and acknowledged. */
	CHECK_INT(ca_bus_publish_durable(c.bus, "t.js", "application/json", "fits", data, mp),
	          CA_OK);
	struct seq_wait w = { c.bus, 1 };
	CHECK(run_until(pred_confirmed, &w, 10000));
out:
	free(data);
	ca_bus_free(c.bus);
	server_stop(&srv);
	nftw(store, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (!nats_server_path()) {
		fprintf(stderr, "nats-server not found\n");
		return 1;
	}
	ca_log_configure(getenv("CA_TEST_VERBOSE") ? CA_LOG_DEBUG : CA_LOG_ERROR, false);
	ca_strlcpy(tmpdir, "/tmp/ca-bus-XXXXXX", sizeof tmpdir);
	if (!mkdtemp(tmpdir) || ca_loop_new(&loop) != CA_OK) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	test_bad_config();
	test_redacted_urls();
	test_pubsub_headers();
	test_msg_layout();
	test_publish_many();
	test_pending_limits();
	test_queue_group();
	test_server_down_and_reconnect();
	test_auth();
	test_max_payload();
	test_tls();
	test_confirmed_core();
	test_jetstream();
	test_jetstream_larger_than_pending();
	ca_loop_free(loop);
	ca_bus_library_cleanup(5000);
	ca_bus_openssl_exit(); /* the TLS tests ran: see bus/openssl_exit.c */
	cleanup_tmpdir();
	return check_report();
}
