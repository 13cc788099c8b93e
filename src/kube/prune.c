#include "kube/prune.h"

#include <string.h>

static const char KEY[] = "\"managedFields\":[";
#define KEY_LEN (sizeof KEY - 1)

/* Index just past the ']' closing the array whose '[' is at s[open], or 0. */
static size_t skip_array(const char *s, size_t n, size_t open)
{
	size_t depth = 0;
	for (size_t i = open; i < n; i++) {
		char c = s[i];
		if (c == '"') {
			for (i++; i < n && s[i] != '"'; i++) {
				if (s[i] == '\\')
					i++;
			}
			if (i >= n)
				return 0;
		} else if (c == '[' || c == '{') {
			depth++;
		} else if (c == ']' || c == '}') {
			if (depth == 0)
				return 0;
			if (--depth == 0)
				return c == ']' ? i + 1 : 0;
		}
	}
	return 0;
}

/* The next real key at or after from, or NULL. */
static const char *find_key(const char *s, size_t n, size_t from)
{
	while (from < n) {
		const char *hit = memmem(s + from, n - from, KEY, KEY_LEN);
		if (!hit)
			return NULL;
		if (hit == s || hit[-1] != '\\')
			return hit;
		from = (size_t)(hit - s) + 1;
	}
	return NULL;
}

bool ca_kube_has_managed_fields(const char *src, size_t n)
{
	return find_key(src, n, 0) != NULL;
}

size_t ca_kube_prune_managed_fields(char *dst, const char *src, size_t n)
{
	size_t r = 0, w = 0; /* read and write positions */
	const char *hit;
	/* Copy each stretch up to and including a key's '[', then jump to
	 * its ']'. In place, w <= r always holds, so memmove is safe. */
	while ((hit = find_key(src, n, r)) != NULL) {
		size_t open = (size_t)(hit - src) + KEY_LEN - 1;
		size_t end = skip_array(src, n, open);
		if (end == 0)
			break; /* unbalanced: the parser will say so */
		memmove(dst + w, src + r, open + 1 - r);
		w += open + 1 - r;
		r = end - 1; /* the closing ']' is copied with the next stretch */
	}
	memmove(dst + w, src + r, n - r);
	return w + n - r;
}
