/* Unit tests of ha/: the Lease name and identity, the acquire/renew
 * decision (client-go's tryAcquireOrRenew) judged by our own observation
 * time, the Lease parser, annotations, the ha.* configuration checks, and
 * the counters carried across a module's restart (core/prom.h). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config/config.h"
#include "config/config_int.h"
#include "core/loop.h"
#include "core/prom.h"
#include "ha/ha.h"

static void name_is(const char *cluster_id, const char *want)
{
	char out[300];
	ca_ha_default_lease_name(cluster_id, out, sizeof out);
	CHECK_STR(out, want);
	CHECK(ca_config_valid_subdomain(out));
}

static void test_lease_name(void)
{
	name_is("c1", "collect-agent-c1");
	name_is("", "collect-agent");
	name_is("arn:aws:eks:eu-west-1:123456789012:cluster/Prod_Cluster",
	        "collect-agent-arn-aws-eks-eu-west-1-123456789012-cluster-prod-cluster");
	name_is("projects/my-proj/locations/europe-west1/clusters/main",
	        "collect-agent-projects-my-proj-locations-europe-west1-clusters-main");
	name_is("..Weird..--Name--", "collect-agent-weird.name");
	name_is("a b\tc\xc3\xa9", "collect-agent-a-b-c");
	name_is("x.-y", "collect-agent-x.y");

	/* At most 253 bytes, still ending with a letter or digit. */
	char id[600];
	memset(id, 'a', sizeof id - 1);
	id[sizeof id - 1] = '\0';
	id[238] = '-'; /* the cut falls right after a separator */
	char out[300];
	ca_ha_default_lease_name(id, out, sizeof out);
	CHECK(strlen(out) <= 253);
	CHECK(ca_config_valid_subdomain(out));
	/* A small buffer cuts too, and the result is still a valid name. */
	char small[20];
	ca_ha_default_lease_name("cluster-with-a-long-name", small, sizeof small);
	CHECK(strlen(small) < sizeof small);
	CHECK(ca_config_valid_subdomain(small));
}

static void test_identity(void)
{
	char out[CA_HA_IDENTITY_MAX];
	ca_ha_identity("collect-agent-7d9f-abcde", "host", 42, out, sizeof out);
	CHECK_STR(out, "collect-agent-7d9f-abcde");
	ca_ha_identity("", "node-1", 4242, out, sizeof out);
	CHECK_STR(out, "node-1_4242");
	ca_ha_identity(NULL, NULL, 7, out, sizeof out);
	CHECK_STR(out, "unknown_7");
}

static struct ca_ha_record rec(const char *holder, int64_t duration_s, int64_t transitions,
                               const char *renew)
{
	struct ca_ha_record r;
	memset(&r, 0, sizeof r);
	snprintf(r.holder, sizeof r.holder, "%s", holder);
	r.lease_duration_s = duration_s;
	r.transitions = transitions;
	snprintf(r.acquire_time, sizeof r.acquire_time, "%s", "2026-12-05T23:00:00.000000Z");
	snprintf(r.renew_time, sizeof r.renew_time, "%s", renew);
	return r;
}

static void test_decide(void)
{
	int64_t t = -1;
	/* No Lease: create it, transitions 0. */
	CHECK_INT(ca_ha_decide(NULL, 0, 1000, "a", &t), CA_HA_CREATE);
	CHECK_INT(t, 0);

	/* Held by b, observed at 10 s: not ours until 15 s after that, by our
	 * clock. */
	struct ca_ha_record b = rec("b", 15, 3, "2026-12-05T23:00:00.000000Z");
	CHECK_INT(ca_ha_decide(&b, 10000, 10000, "a", &t), CA_HA_WAIT);
	CHECK_INT(ca_ha_decide(&b, 10000, 24999, "a", &t), CA_HA_WAIT);
	CHECK_INT(t, 3);
	CHECK_INT(ca_ha_decide(&b, 10000, 25000, "a", &t), CA_HA_ACQUIRE);
	CHECK_INT(t, 4); /* a new holder: one more transition */

	/* The holder's renewTime is never compared with our clock: a holder
	 * whose clock runs far ahead or behind changes nothing. */
	struct ca_ha_record ahead = rec("b", 15, 3, "2099-01-01T00:00:00.000000Z");
	struct ca_ha_record behind = rec("b", 15, 3, "2000-01-01T00:00:00.000000Z");
	CHECK_INT(ca_ha_decide(&ahead, 10000, 25001, "a", NULL), CA_HA_ACQUIRE);
	CHECK_INT(ca_ha_decide(&behind, 10000, 10001, "a", NULL), CA_HA_WAIT);

	/* Our own Lease: renew, transitions kept, even once expired. */
	struct ca_ha_record mine = rec("a", 15, 7, "2026-12-05T23:00:00.000000Z");
	CHECK_INT(ca_ha_decide(&mine, 0, 1000, "a", &t), CA_HA_RENEW);
	CHECK_INT(t, 7);
	CHECK_INT(ca_ha_decide(&mine, 0, 100000, "a", &t), CA_HA_RENEW);
	CHECK_INT(t, 7);

	/* Released (no holder, 1 s): free at once. */
	struct ca_ha_record released = rec("", 1, 7, "2026-12-05T23:00:00.000000Z");
	CHECK_INT(ca_ha_decide(&released, 5000, 5000, "a", &t), CA_HA_ACQUIRE);
	CHECK_INT(t, 8);

	/* Identities compare whole: "a" is not "ab". */
	struct ca_ha_record ab = rec("ab", 15, 0, "x");
	CHECK_INT(ca_ha_decide(&ab, 0, 1, "a", NULL), CA_HA_WAIT);
}

static void test_observe(void)
{
	struct ca_ha_record r1 = rec("b", 15, 3, "2026-12-05T23:00:00.000000Z");
	struct ca_ha_record same = r1;
	struct ca_ha_record renewed = rec("b", 15, 3, "2026-12-05T23:00:02.000000Z");
	struct ca_ha_record other = rec("c", 15, 4, "2026-12-05T23:00:00.000000Z");
	CHECK_INT(ca_ha_observe(NULL, &r1, 0, 500), 500);
	CHECK_INT(ca_ha_observe(&r1, &same, 500, 9000),
	          500); /* unchanged: the clock keeps running */
	CHECK_INT(ca_ha_observe(&r1, &renewed, 500, 9000), 9000);
	CHECK_INT(ca_ha_observe(&r1, &other, 500, 9000), 9000);

	/* A holder renewing keeps a standby waiting; one that stops does not. */
	int64_t observed = ca_ha_observe(NULL, &r1, 0, 0);
	observed = ca_ha_observe(&r1, &renewed, observed, 14000);
	CHECK_INT(ca_ha_decide(&renewed, observed, 20000, "a", NULL), CA_HA_WAIT);
	observed = ca_ha_observe(&renewed, &renewed, observed, 29000);
	CHECK_INT(ca_ha_decide(&renewed, observed, 29000, "a", NULL), CA_HA_ACQUIRE);
}

static void test_parse(void)
{
	struct ca_ha_record r;
	const char *lease =
	        "{\"kind\":\"Lease\",\"apiVersion\":\"coordination.k8s.io/"
	        "v1\",\"metadata\":{\"name\":\"x\","
	        "\"resourceVersion\":\"198\",\"annotations\":{\"collect-agent.io/"
	        "events-resource-version\":\"123\"}},"
	        "\"spec\":{\"holderIdentity\":\"b\",\"leaseDurationSeconds\":15,\"acquireTime\":"
	        "\"2026-12-05T23:00:00.000000Z\",\"renewTime\":\"2026-12-05T23:00:01.000000Z\","
	        "\"leaseTransitions\":1}}";
	CHECK_INT(ca_ha_parse_record(lease, strlen(lease), &r), CA_OK);
	CHECK_STR(r.holder, "b");
	CHECK_INT(r.lease_duration_s, 15);
	CHECK_INT(r.transitions, 1);
	CHECK_STR(r.renew_time, "2026-12-05T23:00:01.000000Z");

	const char *empty = "{\"kind\":\"Lease\",\"metadata\":{\"name\":\"e\"},\"spec\":{}}";
	CHECK_INT(ca_ha_parse_record(empty, strlen(empty), &r), CA_OK);
	CHECK_STR(r.holder, "");
	CHECK_INT(ca_ha_decide(&r, 0, 0, "a", NULL), CA_HA_ACQUIRE);

	const char *status = "{\"kind\":\"Status\",\"code\":404}";
	CHECK_INT(ca_ha_parse_record(status, strlen(status), &r), CA_EPROTO);
	CHECK_INT(ca_ha_parse_record("{", 1, &r), CA_EPROTO);
	const char *badspec = "{\"kind\":\"Lease\",\"spec\":[1]}";
	CHECK_INT(ca_ha_parse_record(badspec, strlen(badspec), &r), CA_EPROTO);

	/* A holder longer than any identity is someone else's, whatever its
	 * first 255 bytes say. */
	char big[1200], id[CA_HA_IDENTITY_MAX];
	memset(id, 'a', sizeof id - 1);
	id[sizeof id - 1] = '\0';
	snprintf(big, sizeof big,
	         "{\"kind\":\"Lease\",\"spec\":{\"leaseDurationSeconds\":15,\"holderIdentity\":\"%"
	         "s%s\"}}",
	         id, id);
	CHECK_INT(ca_ha_parse_record(big, strlen(big), &r), CA_OK);
	id[sizeof id - 2] = '\0';
	CHECK(strcmp(r.holder, id) != 0);
	CHECK_INT(ca_ha_decide(&r, 0, 0, id, NULL), CA_HA_WAIT);
}

static void test_annotations(void)
{
	struct ca_loop *loop = NULL;
	struct ca_ha *ha = NULL;
	struct ca_config cfg;
	char err[256];
	CHECK_INT(ca_config_init_defaults(&cfg), CA_OK);
	CHECK_INT(ca_loop_new(&loop), CA_OK);
	CHECK_INT(ca_ha_new(&ha, loop, NULL, &cfg, "a", "Bad_NS", "x", NULL, NULL, err, sizeof err),
	          CA_EINVAL);
	CHECK(strstr(err, "Bad_NS") != NULL);
	CHECK_INT(ca_ha_new(&ha, loop, NULL, &cfg, "a", "default", "collect-agent-c1", NULL, NULL,
	                    err, sizeof err),
	          CA_OK);
	CHECK(!ca_ha_leading(ha));
	CHECK(ca_ha_annotation(ha, "collect-agent.io/events-resource-version") == NULL);
	CHECK_INT(ca_ha_set_annotation(ha, "collect-agent.io/events-resource-version", "123"),
	          CA_OK);
	CHECK_INT(ca_ha_set_annotation(ha, "collect-agent.io/events-resource-version", "124"),
	          CA_OK);
	CHECK_INT(ca_ha_set_annotation(ha, "shop.events.collect-agent.io/resource-version", "9"),
	          CA_OK);
	CHECK_INT(ca_ha_set_annotation(ha, "no slash allowed here", "1"), CA_EINVAL);
	CHECK_INT(ca_ha_set_annotation(ha, "Bad_Prefix/name", "1"), CA_EINVAL);
	CHECK_INT(ca_ha_set_annotation(ha, "collect-agent.io/", "1"), CA_EINVAL);
	CHECK_INT(ca_ha_set_annotation(ha, "collect-agent.io/x", "a\nb"), CA_EINVAL);
	int full = 0;
	for (size_t i = 0; i < ca_ha_max_annotations(&cfg) + 1; i++) {
		char key[64];
		snprintf(key, sizeof key, "n%zu.events.collect-agent.io/resource-version", i);
		if (ca_ha_set_annotation(ha, key, "1") == CA_ETOOBIG)
			full++;
	}
	CHECK(full >= 1);
	struct ca_ha_stats st;
	ca_ha_get_stats(ha, &st);
	CHECK(!st.leading);
	CHECK_INT(st.errors, 0);
	ca_ha_free(ha);
	ca_ha_free(NULL);
	ca_loop_free(loop);
	ca_config_fini(&cfg);
}

static void config_error(const char *yaml, const char *want)
{
	struct ca_config cfg;
	char err[512] = "";
	CHECK_INT(ca_config_init_defaults(&cfg), CA_OK);
	enum ca_err rc = ca_config_load_from_memory(&cfg, yaml, strlen(yaml), "t", err, sizeof err);
	CHECK_INT(rc, CA_EINVAL);
	if (!strstr(err, want))
		fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, want);
	CHECK(strstr(err, want) != NULL);
	ca_config_fini(&cfg);
}

static void test_config(void)
{
	struct ca_config cfg;
	char err[512] = "";
	CHECK_INT(ca_config_init_defaults(&cfg), CA_OK);
	CHECK(!cfg.ha.enabled);
	CHECK_INT(cfg.ha.lease_duration_ms, 15000);
	CHECK_INT(cfg.ha.renew_deadline_ms, 10000);
	CHECK_INT(cfg.ha.retry_period_ms, 2000);
	CHECK_INT(cfg.ha.checkpoint_interval_ms, 5000);
	const char *ok = "ha:\n  enabled: true\n  lease_duration: 3s\n  renew_deadline: 2s\n  "
	                 "retry_period: 500ms\n"
	                 "  lease_name: my.lease-1\n  lease_namespace: collect-agent\n";
	CHECK_INT(ca_config_load_from_memory(&cfg, ok, strlen(ok), "t", err, sizeof err), CA_OK);
	CHECK(cfg.ha.enabled);
	CHECK_STR(cfg.ha.lease_name, "my.lease-1");
	ca_config_fini(&cfg);

	config_error("ha:\n  renew_deadline: 15s\n", "ha.renew_deadline");
	config_error("ha:\n  renew_deadline: 15s\n", "shorter than ha.lease_duration (15s)");
	config_error("ha:\n  retry_period: 9s\n", "ha.retry_period");
	config_error("ha:\n  retry_period: 9s\n", "1.2");
	config_error("ha:\n  lease_duration: 1500ms\n  renew_deadline: 1s\n  retry_period: 100ms\n",
	             "whole seconds");
	config_error("ha:\n  lease_duration: 0s\n", "ha.lease_duration");
	config_error("ha:\n  lease_name: Bad_Name\n", "ha.lease_name");
	config_error("ha:\n  lease_name: Bad_Name\n", "DNS-1123");
	config_error("ha:\n  lease_name: a..b\n", "ha.lease_name");
	config_error("ha:\n  lease_namespace: Not-A-Namespace\n", "ha.lease_namespace");
	config_error("ha:\n  checkpoint_interval: 2h\n", "ha.checkpoint_interval");
	config_error("ha:\n  enabled: maybe\n", "ha.enabled");

	CHECK(ca_config_valid_subdomain("a"));
	CHECK(ca_config_valid_subdomain("a.b-c.d1"));
	CHECK(!ca_config_valid_subdomain(""));
	CHECK(!ca_config_valid_subdomain("-a"));
	CHECK(!ca_config_valid_subdomain("a-"));
	CHECK(!ca_config_valid_subdomain("a.-b"));
	CHECK(!ca_config_valid_subdomain("a-.b"));
	CHECK(!ca_config_valid_subdomain(".a"));
	CHECK(!ca_config_valid_subdomain("a."));
	CHECK(!ca_config_valid_subdomain("A"));
	char long_name[300];
	memset(long_name, 'a', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	CHECK(!ca_config_valid_subdomain(long_name));
	long_name[253] = '\0';
	CHECK(ca_config_valid_subdomain(long_name));
}

static void render(struct ca_prom *p, double counter, double gauge)
{
	ca_prom_single(p, "x_total", "counter", "c", counter);
	ca_prom_single(p, "x_size", "gauge", "g", gauge);
	ca_prom_family(p, "x_by", "counter", "l");
	ca_prom_sample(p, "x_by", "reason", "a", counter);
}

static void test_carry(void)
{
	struct ca_prom_carry *carry = NULL;
	struct ca_buf out, scratch;
	struct ca_prom p;
	CHECK_INT(ca_prom_carry_new(&carry), CA_OK);
	/* A module's first term ends at 5; its second counts from 0 again. */
	ca_buf_init(&scratch, 0);
	ca_prom_init_capture(&p, &scratch, "c1", carry);
	render(&p, 5, 9);
	ca_buf_fini(&scratch);
	ca_buf_init(&out, 0);
	ca_prom_init(&p, &out, "c1");
	ca_prom_set_carry(&p, carry);
	render(&p, 2, 3);
	CHECK(strstr(out.data, "x_total{cluster_id=\"c1\"} 7\n") != NULL);
	CHECK(strstr(out.data, "x_size{cluster_id=\"c1\"} 3\n") !=
	      NULL); /* gauges are not carried */
	CHECK(strstr(out.data, "x_by{cluster_id=\"c1\",reason=\"a\"} 7\n") != NULL);
	ca_buf_fini(&out);
	/* A module not running writes zeros: the carry still shows. */
	ca_buf_init(&out, 0);
	ca_prom_init(&p, &out, "c1");
	ca_prom_set_carry(&p, carry);
	render(&p, 0, 0);
	CHECK(strstr(out.data, "x_total{cluster_id=\"c1\"} 5\n") != NULL);
	ca_buf_fini(&out);
	ca_prom_carry_free(carry);
	ca_prom_carry_free(NULL);
}

int main(void)
{
	test_lease_name();
	test_identity();
	test_decide();
	test_observe();
	test_parse();
	test_annotations();
	test_config();
	test_carry();
	return check_report();
}
