/* cluster/parse.c: pure parsers for the cluster-ID detector (see
 * cluster_int.h). Nothing here allocates, logs or touches the network. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "cluster/cluster.h"
#include "cluster/cluster_int.h"
#include "core/buf.h"

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static void clear(char *out, size_t outlen)
{
	if (out && outlen)
		out[0] = '\0';
}

/* Copy n bytes of s into out; false (out "") when they do not fit. */
static bool copy_n(char *out, size_t outlen, const char *s, size_t n)
{
	if (!out)
		return true;
	if (outlen == 0 || n >= outlen) {
		clear(out, outlen);
		return false;
	}
	memcpy(out, s, n);
	out[n] = '\0';
	return true;
}

/* ------------------------------------------------------------------ IDs */

bool ca_cluster_valid_id(const char *id)
{
	if (!id)
		return false;
	size_t n = strlen(id);
	if (n == 0 || n > CA_CLUSTER_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_alnum(id[i]) && id[i] != '-')
			return false;
	return id[0] != '-' && id[n - 1] != '-';
}

void ca_cluster_normalize_id(const char *name, char *out, size_t outlen)
{
	if (!out || outlen == 0)
		return;
	out[0] = '\0';
	if (!name)
		return;
	size_t limit = outlen - 1 < CA_CLUSTER_ID_MAX ? outlen - 1 : CA_CLUSTER_ID_MAX;
	size_t n = 0;
	for (const char *p = name; *p && n < limit; p++) {
		char c = (char)tolower((unsigned char)*p);
		if (!is_lower_alnum(c))
			c = '-';
		if (c == '-' && n == 0)
			continue; /* leading '-' */
		out[n++] = c;
	}
	while (n > 0 && out[n - 1] == '-')
		n--;
	out[n] = '\0';
}

/* ------------------------------------------------------------------ AWS */

bool ca_cluster_aws_provider_id(const char *provider_id, char *az, size_t azlen,
                                char *instance, size_t instancelen)
{
	clear(az, azlen);
	clear(instance, instancelen);
	if (!provider_id || strncmp(provider_id, "aws://", 6) != 0)
		return false;
	const char *p = provider_id + 6;
	if (*p == '/')
		p++; /* aws:///<az>/<id>: empty host */
	const char *slash = strchr(p, '/');
	if (!slash || slash == p || !slash[1] || strchr(slash + 1, '/'))
		return false;
	if (!copy_n(az, azlen, p, (size_t)(slash - p)))
		return false;
	if (!copy_n(instance, instancelen, slash + 1, strlen(slash + 1))) {
		clear(az, azlen);
		return false;
	}
	return true;
}

bool ca_cluster_aws_region_from_zone(const char *az, char *region, size_t regionlen)
{
	clear(region, regionlen);
	if (!az || !*az)
		return false;
	/* Regions are <part>-<part>[-<part>]-<digits>: find the first '-'
	 * separated part (not the first two) that starts with a digit; the
	 * region ends after its digits. */
	const char *p = az;
	unsigned part = 0;
	while (*p) {
		const char *end = strchr(p, '-');
		if (!end)
			end = p + strlen(p);
		if (end == p)
			return false;
		for (const char *q = p; q < end; q++)
			if (!is_lower_alnum(*q))
				return false;
		if (part >= 2 && isdigit((unsigned char)*p)) {
			const char *d = p;
			while (d < end && isdigit((unsigned char)*d))
				d++;
			return copy_n(region, regionlen, az, (size_t)(d - az));
		}
		part++;
		p = *end ? end + 1 : end;
	}
	return false;
}

const char *ca_cluster_provider_from_provider_id(const char *provider_id)
{
	if (!provider_id)
		return "";
	if (strncmp(provider_id, "aws://", 6) == 0)
		return "aws";
	if (strncmp(provider_id, "gce://", 6) == 0)
		return "gcp";
	if (strncmp(provider_id, "azure://", 8) == 0)
		return "azure";
	return "";
}

void ca_cluster_scan_eks_tags(const char *listing, size_t len, struct ca_cluster_eks_tags *out)
{
	static const char cluster_prefix[] = "kubernetes.io/cluster/";
	const size_t plen = sizeof cluster_prefix - 1;
	memset(out, 0, sizeof *out);
	if (!listing)
		return;
	size_t i = 0;
	while (i < len) {
		size_t start = i;
		while (i < len && listing[i] != '\n')
			i++;
		size_t end = i;
		i++; /* past '\n' */
		if (end > start && listing[end - 1] == '\r')
			end--;
		const char *line = listing + start;
		size_t n = end - start;
		if (n == 20 && memcmp(line, "aws:eks:cluster-name", 20) == 0)
			out->aws_eks_cluster_name = true;
		else if (n == 16 && memcmp(line, "eks:cluster-name", 16) == 0)
			out->eks_cluster_name = true;
		else if (n > plen && memcmp(line, cluster_prefix, plen) == 0 && !out->cluster_tag_name[0] &&
		         !memchr(line + plen, '/', n - plen))
			copy_n(out->cluster_tag_name, sizeof out->cluster_tag_name, line + plen, n - plen);
	}
}

/* ------------------------------------------------------------------ GKE */

void ca_cluster_gke_region(const char *location, char *region, size_t regionlen)
{
	clear(region, regionlen);
	if (!location)
		return;
	size_t n = strlen(location);
	/* A zone is a region plus "-<letter>": "us-central1-a". A region has one
	 * '-' ("us-central1", "northamerica-northeast1"). */
	const char *last = strrchr(location, '-');
	if (last && last != location && memchr(location, '-', (size_t)(last - location))) {
		bool letters = last[1] != '\0';
		for (const char *q = last + 1; *q; q++)
			if (!isalpha((unsigned char)*q))
				letters = false;
		if (letters)
			n = (size_t)(last - location);
	}
	copy_n(region, regionlen, location, n);
}

/* ------------------------------------------------------------------ AKS */

bool ca_cluster_aks_resource_group(const char *rg, char *cluster, size_t clusterlen,
                                   char *location, size_t locationlen)
{
	clear(cluster, clusterlen);
	clear(location, locationlen);
	if (!rg || strncasecmp(rg, "MC_", 3) != 0)
		return false;
	const char *body = rg + 3;
	const char *loc = strrchr(body, '_');
	if (!loc || !loc[1] || loc == body)
		return false;
	/* The cluster is the part before the location; the resource group
	 * (before it) must not be empty. */
	const char *cl = loc - 1;
	while (cl > body && *cl != '_')
		cl--;
	if (cl == body || cl + 1 == loc)
		return false;
	if (!copy_n(cluster, clusterlen, cl + 1, (size_t)(loc - cl - 1)))
		return false;
	if (!copy_n(location, locationlen, loc + 1, strlen(loc + 1))) {
		clear(cluster, clusterlen);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ misc */

bool ca_cluster_trimmed(const char *s, size_t len, char *out, size_t outlen)
{
	clear(out, outlen);
	if (!s)
		return false;
	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	if (len == 0 || memchr(s, '\0', len))
		return false;
	return copy_n(out, outlen, s, len);
}
