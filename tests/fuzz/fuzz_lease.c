/* Fuzz target for ha/ha.h's reading of a Lease (an API server's answer,
 * untrusted): ca_ha_parse_record on any bytes either refuses them
 * (CA_EPROTO) or gives a record whose strings are terminated and within
 * their arrays; the decision over that record is one of the four actions
 * with leaseTransitions never negative, our own identity always renews,
 * and observing a record twice keeps the first observation time. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ha/ha.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_lease: %s\n", what);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ca_ha_record r;
	enum ca_err rc = ca_ha_parse_record((const char *)data, size, &r);
	if (rc != CA_OK && rc != CA_EPROTO)
		fail("unexpected status");
	if (rc != CA_OK)
		return 0;
	if (memchr(r.holder, '\0', sizeof r.holder) == NULL ||
	    memchr(r.acquire_time, '\0', sizeof r.acquire_time) == NULL ||
	    memchr(r.renew_time, '\0', sizeof r.renew_time) == NULL)
		fail("unterminated string");
	int64_t t = -1;
	enum ca_ha_action a = ca_ha_decide(&r, 1000, 2000, "fuzz-identity", &t);
	if (a != CA_HA_WAIT && a != CA_HA_ACQUIRE && a != CA_HA_RENEW)
		fail("bad action for a record");
	if (t < 0)
		fail("negative transitions");
	if (r.holder[0] && ca_ha_decide(&r, 0, 0, r.holder, NULL) != CA_HA_RENEW)
		fail("the holder itself does not renew");
	if (ca_ha_observe(&r, &r, 1234, 99999) != 1234)
		fail("an unchanged record moved the observation time");
	return 0;
}
