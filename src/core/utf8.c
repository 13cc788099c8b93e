#include "core/utf8.h"

#include <stdint.h>
#include <string.h>

bool ca_utf8_valid(const void *s, size_t len)
{
	const unsigned char *p = s;
	size_t i = 0;
	while (i < len) {
		/* Most text is ASCII: skip it eight bytes at a time. */
		if (len - i >= 8) {
			uint64_t x;
			memcpy(&x, p + i, 8);
			if (!(x & 0x8080808080808080ULL)) {
				i += 8;
				continue;
			}
		}
		size_t n = ca_utf8_seq(p + i, len - i);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

size_t ca_utf8_cut(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	size_t n = max;
	/* s[n] is the first byte dropped: while it continues a character,
	 * that character would be split, so drop it whole. */
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}
