/* core/utf8.h: the one UTF-8 validator of the program.
 *
 * Well-formed means Unicode's table 3-7: no overlong forms, no encoded
 * surrogates, nothing above U+10FFFF (the rules jansson and Go's encoder
 * apply). The JSON parser, the JSON escaper, the protobuf text checks and
 * every cut of a string at a length all use these, so the agent agrees
 * with itself on what is text. Pure functions; any thread. */
#ifndef CA_CORE_UTF8_H
#define CA_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (1-4) of the well-formed UTF-8 sequence at p, which has avail >= 1
 * bytes; 0 when there is none (a stray continuation byte, an overlong or
 * truncated sequence, a surrogate, a value above U+10FFFF). Inline: the
 * parser and the escaper call it per non-ASCII character. */
static inline size_t ca_utf8_seq(const unsigned char *p, size_t avail)
{
	unsigned c = p[0];
	unsigned lo = 0x80, hi = 0xBF;
	size_t n;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0; /* overlong below U+0800 */
		else if (c == 0xED)
			hi = 0x9F; /* surrogates U+D800-U+DFFF */
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90; /* overlong below U+10000 */
		else if (c == 0xF4)
			hi = 0x8F; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (avail < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return n;
}

/* True when s[0..len) is well-formed UTF-8 (NUL bytes count as text). */
bool ca_utf8_valid(const void *s, size_t len);

/* The length to keep when s[0..len) must fit in max bytes: max itself, or
 * less so that no character is split (stray continuation bytes before the
 * cut are backed off). len when it already fits. */
size_t ca_utf8_cut(const char *s, size_t len, size_t max);

#endif
