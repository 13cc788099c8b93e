/* kube/json_parse.c: strict JSON to jansson tree, without jansson's lexer.
 *
 * jansson reads its input one byte at a time through a function pointer,
 * re-validating UTF-8 and copying every token into a growing buffer before
 * it looks at it; on a ~1.2 KB watch event that lexer costs about three
 * times what building the tree costs. Here the input is one contiguous
 * buffer, so:
 *  - strings are scanned eight bytes at a time (a word test for '"', '\\',
 *    control bytes and non-ASCII), and a string without escapes is handed
 *    to jansson straight from the input, with no intermediate copy;
 *  - only strings with escapes are unescaped, into a scratch buffer reused
 *    for the whole document;
 *  - integers are accumulated in place; only reals go through strtod, on a
 *    bounded NUL-terminated copy;
 *  - containers are attached to their parent as soon as they open, so the
 *    parser needs no recursion and no copy of pending keys: an explicit
 *    stack of the open containers is all the state.
 *
 * What is accepted matches jansson's json_loadb(..., JSON_DECODE_ANY)
 * exactly; where a rule looks arbitrary, the comment names the jansson
 * behaviour it copies. tests/fuzz/fuzz_json.c checks the two against each
 * other on every input. */
#include "kube/json_parse.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef JSON_PARSER_MAX_DEPTH
#define JSON_PARSER_MAX_DEPTH 2048 /* jansson's default */
#endif
#define MAX_DEPTH ((size_t)JSON_PARSER_MAX_DEPTH)
#define STACK_LOCAL 64     /* open containers held without a heap stack */
#define SCRATCH_LOCAL 512  /* unescaped string bytes held without malloc */
#define NUMBER_LOCAL 64    /* real-number text held without malloc */

/* ------------------------------------------------------------------------ */
/* Scratch buffers for unescaped strings */

struct scratch {
	char *data;
	size_t len;
	size_t cap;
	char local[SCRATCH_LOCAL];
};

static void scratch_init(struct scratch *s)
{
	s->data = s->local;
	s->len = 0;
	s->cap = sizeof s->local;
}

static void scratch_fini(struct scratch *s)
{
	if (s->data != s->local)
		free(s->data);
}

/* Room for `extra` more bytes. The total never exceeds the input length
 * (an unescaped string is never longer than its source), so the growth is
 * bounded by what the caller already holds. */
static bool scratch_reserve(struct scratch *s, size_t extra)
{
	if (extra <= s->cap - s->len)
		return true;
	if (extra > SIZE_MAX / 2 - s->len)
		return false;
	size_t cap = s->cap * 2;
	if (cap < s->len + extra)
		cap = s->len + extra;
	char *d;
	if (s->data == s->local) {
		d = malloc(cap);
		if (d)
			memcpy(d, s->local, s->len);
	} else {
		d = realloc(s->data, cap);
	}
	if (!d)
		return false;
	s->data = d;
	s->cap = cap;
	return true;
}

static void scratch_put(struct scratch *s, const void *src, size_t n)
{
	memcpy(s->data + s->len, src, n); /* room reserved by the caller */
	s->len += n;
}

/* ------------------------------------------------------------------------ */
/* Lexical helpers */

struct parser {
	const unsigned char *start;
	const unsigned char *end;
	const char *why; /* reason of a syntax error */
	const unsigned char *at; /* where it was found */
	struct scratch key;   /* an escaped key */
	struct scratch value; /* an escaped string value */
};

/* What a byte means inside a string. */
enum { C_PLAIN = 0, C_QUOTE, C_ESCAPE, C_CTRL, C_UTF8 };

#define R16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
static const unsigned char str_class[256] = {
	R16(C_CTRL), R16(C_CTRL),                                      /* 0x00-0x1f */
	0, 0, C_QUOTE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,          /* 0x20-0x2f */
	R16(C_PLAIN), R16(C_PLAIN),                                    /* 0x30-0x4f */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, C_ESCAPE, 0, 0, 0,         /* 0x50-0x5f */
	R16(C_PLAIN), R16(C_PLAIN),                                    /* 0x60-0x7f */
	R16(C_UTF8), R16(C_UTF8), R16(C_UTF8), R16(C_UTF8),            /* 0x80-0xbf */
	R16(C_UTF8), R16(C_UTF8), R16(C_UTF8), R16(C_UTF8),            /* 0xc0-0xff */
};
#undef R16

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Non-zero when one of the 8 bytes at p is '"', '\\', below 0x20 or above
 * 0x7f. Exact as a yes/no answer (borrows only cause false marks above a
 * true one), which is all the caller uses. */
static inline uint64_t has_special(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
	uint64_t q = v ^ (ONES * '"');
	uint64_t b = v ^ (ONES * '\\');
	return (((q - ONES) & ~q) | ((b - ONES) & ~b) | (v - ONES * 0x20) | v) & HIGHS;
}

/* Skip plain string bytes: returns the first byte at or after p that is
 * not C_PLAIN, or end. */
static inline const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end)
{
	while (end - p >= 8 && !has_special(p))
		p += 8;
	while (p < end && str_class[*p] == C_PLAIN)
		p++;
	return p;
}

/* Length of the valid UTF-8 sequence at p (whose first byte is >= 0x80),
 * or 0. jansson's rules: no overlong forms, no surrogates, nothing above
 * U+10FFFF, lead bytes 0xC2-0xF4 only. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned c = p[0];
	size_t n;
	uint32_t v;
	if (c < 0xC2)
		return 0; /* continuation byte, or an overlong 2-byte lead */
	if (c <= 0xDF) {
		n = 2;
		v = c & 0x1F;
	} else if (c <= 0xEF) {
		n = 3;
		v = c & 0x0F;
	} else if (c <= 0xF4) {
		n = 4;
		v = c & 0x07;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		v = v << 6 | (p[i] & 0x3F);
	}
	if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
		return 0;
	if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000))
		return 0;
	return n;
}

static int hex4(const unsigned char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (int)(c - '0');
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			v |= (int)((c | 0x20) - 'a' + 10);
		else
			return -1;
	}
	return v;
}

static size_t utf8_put(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

enum scan { SCAN_OK = 0, SCAN_SYNTAX, SCAN_NOMEM };

static enum scan syntax(struct parser *ps, const unsigned char *at, const char *why)
{
	ps->why = why;
	ps->at = at;
	return SCAN_SYNTAX;
}

/* The escape sequence at p (p[0] == '\\') appended to scr; *pp moves past
 * it. Room for 4 bytes must be reserved. */
static enum scan unescape(struct parser *ps, const unsigned char **pp, struct scratch *scr)
{
	const unsigned char *p = *pp, *end = ps->end;
	if (end - p < 2)
		return syntax(ps, p, "premature end of input");
	char c;
	switch (p[1]) {
	case '"': c = '"'; break;
	case '\\': c = '\\'; break;
	case '/': c = '/'; break;
	case 'b': c = '\b'; break;
	case 'f': c = '\f'; break;
	case 'n': c = '\n'; break;
	case 'r': c = '\r'; break;
	case 't': c = '\t'; break;
	case 'u': {
		int v = end - p >= 6 ? hex4(p + 2) : -1;
		if (v < 0)
			return syntax(ps, p, "invalid escape");
		uint32_t cp = (uint32_t)v;
		p += 6;
		if (cp >= 0xD800 && cp <= 0xDBFF) {
			/* A high surrogate must be followed by an escaped low one. */
			int lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
			if (lo < 0xDC00 || lo > 0xDFFF)
				return syntax(ps, p, "invalid Unicode surrogate pair");
			cp = ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00) + 0x10000;
			p += 6;
		} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
			return syntax(ps, p, "lone low surrogate");
		} else if (cp == 0) {
			/* jansson without JSON_ALLOW_NUL: every string stays a
			 * whole C string. */
			return syntax(ps, p, "\\u0000 is not allowed");
		}
		scr->len += utf8_put(scr->data + scr->len, cp);
		*pp = p;
		return SCAN_OK;
	}
	default:
		return syntax(ps, p, "invalid escape");
	}
	scr->data[scr->len++] = c;
	*pp = p + 2;
	return SCAN_OK;
}

/* The string whose opening quote is at *pp. On SCAN_OK, *s and *n give its
 * unescaped bytes (pointing into the input when it had no escapes, into
 * scr otherwise; valid until scr is next used) and *pp is past the closing
 * quote. */
static enum scan scan_string(struct parser *ps, const unsigned char **pp, struct scratch *scr,
                             const char **s, size_t *n)
{
	const unsigned char *begin = *pp + 1, *p = begin, *end = ps->end;
	/* Fast path: no escapes, so the bytes can be used where they are. */
	for (;;) {
		p = skip_plain(p, end);
		if (p == end)
			return syntax(ps, p, "premature end of input in a string");
		switch (str_class[*p]) {
		case C_QUOTE:
			*s = (const char *)begin;
			*n = (size_t)(p - begin);
			*pp = p + 1;
			return SCAN_OK;
		case C_UTF8: {
			size_t k = utf8_len(p, end);
			if (!k)
				return syntax(ps, p, "invalid UTF-8");
			p += k;
			break;
		}
		case C_CTRL:
			return syntax(ps, p, "control character in a string");
		default: /* C_ESCAPE */
			goto escaped;
		}
	}

escaped:
	scr->len = 0;
	for (const unsigned char *run = begin;;) {
		/* Here p is at a byte that is not plain; run..p is plain or
		 * valid UTF-8 still to be copied. */
		switch (str_class[*p]) {
		case C_QUOTE:
		case C_ESCAPE: {
			size_t k = (size_t)(p - run);
			if (!scratch_reserve(scr, k + 4))
				return SCAN_NOMEM;
			scratch_put(scr, run, k);
			if (*p == '"') {
				*s = scr->data;
				*n = scr->len;
				*pp = p + 1;
				return SCAN_OK;
			}
			enum scan r = unescape(ps, &p, scr);
			if (r != SCAN_OK)
				return r;
			run = p;
			break;
		}
		case C_UTF8: {
			size_t k = utf8_len(p, end);
			if (!k)
				return syntax(ps, p, "invalid UTF-8");
			p += k;
			break;
		}
		case C_CTRL:
			return syntax(ps, p, "control character in a string");
		default:
			break;
		}
		p = skip_plain(p, end);
		if (p == end)
			return syntax(ps, p, "premature end of input in a string");
	}
}

static inline bool is_digit(unsigned c)
{
	return c - '0' < 10;
}

/* The number starting at *pp ('-' or a digit). On SCAN_OK, *v is a new
 * json_integer or json_real. */
static enum scan scan_number(struct parser *ps, const unsigned char **pp, json_t **v)
{
	const unsigned char *start = *pp, *p = start, *end = ps->end;
	bool neg = false, real = false;
	if (*p == '-') {
		neg = true;
		p++;
	}
	const unsigned char *digits = p;
	if (p == end || !is_digit(*p))
		return syntax(ps, p, "invalid number");
	if (*p == '0') {
		p++;
		if (p < end && is_digit(*p))
			return syntax(ps, p, "leading zero in a number");
	} else {
		while (p < end && is_digit(*p))
			p++;
	}
	const unsigned char *int_end = p;
	if (p < end && *p == '.') {
		p++;
		if (p == end || !is_digit(*p))
			return syntax(ps, p, "invalid number");
		while (p < end && is_digit(*p))
			p++;
		real = true;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p == end || !is_digit(*p))
			return syntax(ps, p, "invalid number");
		while (p < end && is_digit(*p))
			p++;
		real = true;
	}

	if (!real) {
		/* jansson uses strtoll: out of int64 range is an error, not
		 * a real. 19 digits always fit in a uint64_t. */
		size_t nd = (size_t)(int_end - digits);
		uint64_t u = 0;
		if (nd > 19)
			return syntax(ps, start, neg ? "too big negative integer" : "too big integer");
		for (const unsigned char *d = digits; d < int_end; d++)
			u = u * 10 + (uint64_t)(*d - '0');
		uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
		if (u > limit)
			return syntax(ps, start, neg ? "too big negative integer" : "too big integer");
		int64_t i = neg ? (int64_t)(0 - u) : (int64_t)u;
		if (neg && u == (uint64_t)INT64_MAX + 1)
			i = INT64_MIN;
		*v = json_integer((json_int_t)i);
	} else {
		/* strtod needs a terminator the input does not have. */
		size_t n = (size_t)(p - start);
		char local[NUMBER_LOCAL];
		char *text = n < sizeof local ? local : malloc(n + 1);
		if (!text)
			return SCAN_NOMEM;
		memcpy(text, start, n);
		text[n] = '\0';
		errno = 0;
		double d = strtod(text, NULL);
		bool overflow = (d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE;
		if (text != local)
			free(text);
		/* An underflow is accepted (as 0 or a subnormal), as jansson
		 * does; only an overflow to infinity is an error. */
		if (overflow)
			return syntax(ps, start, "real number overflow");
		*v = json_real(d);
	}
	if (!*v)
		return SCAN_NOMEM;
	*pp = p;
	return SCAN_OK;
}

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	return p;
}

/* ------------------------------------------------------------------------ */
/* The parser: a loop over three states (value, key, after a value) with the
 * open containers on a stack. */


/* Hand v to its parent, or make it the root. jansson's setters consume the
 * reference even when they fail, so v is never leaked. */
static inline bool attach(json_t **root, json_t *const *stack, size_t depth, const char *key,
                          size_t key_len, json_t *v)
{
	if (depth == 0) {
		*root = v;
		return true;
	}
	json_t *top = stack[depth - 1];
	if (json_is_object(top))
		return json_object_setn_new_nocheck(top, key, key_len, v) == 0;
	return json_array_append_new(top, v) == 0;
}

static bool literal(const unsigned char **pp, const unsigned char *end, const char *word, size_t n)
{
	if ((size_t)(end - *pp) < n || memcmp(*pp, word, n) != 0)
		return false;
	*pp += n;
	return true;
}

enum ca_err ca_kube_json_parse(const char *data, size_t len, json_t **out, char *err,
                               size_t errlen)
{
	enum ca_err rc = CA_EPROTO;
	struct parser ps;
	json_t *local_stack[STACK_LOCAL];
	json_t **stack = local_stack; /* open containers, borrowed from root */
	size_t depth = 0, stack_cap = STACK_LOCAL;
	json_t *root = NULL;
	const char *key = NULL; /* the pending key when the top is an object */
	size_t key_len = 0;
	const unsigned char *p, *end;
	enum scan r = SCAN_OK;
	json_t *v = NULL;
	bool lookahead; /* the value just read was a number or a bare word */

	if (err && errlen)
		err[0] = '\0';
	if (!out)
		return CA_EINVAL;
	*out = NULL;
	if (!data) {
		if (err && errlen)
			snprintf(err, errlen, "no input");
		return CA_EINVAL;
	}
	ps.start = (const unsigned char *)data;
	ps.end = ps.start + len;
	ps.why = NULL;
	ps.at = ps.start;
	scratch_init(&ps.key);
	scratch_init(&ps.value);
	end = ps.end;
	p = skip_ws(ps.start, end);

	/* Three states joined by gotos, as a hand-written lexer usually is:
	 * `value` reads one value at p, `after` reads what may follow a value
	 * in the innermost open container, `key` reads `"name":`. */
value:
	/* jansson counts the top-level value as depth 1 and fails past
	 * JSON_PARSER_MAX_DEPTH; the value read here has depth depth+1. */
	if (depth >= MAX_DEPTH) {
		syntax(&ps, p, "maximum parsing depth reached");
		goto out;
	}
	if (p == end) {
		syntax(&ps, p, "premature end of input");
		goto out;
	}
	lookahead = true;
	switch (*p) {
	case '{':
	case '[': {
		bool is_object = *p == '{';
		v = is_object ? json_object() : json_array();
		if (!v || !attach(&root, stack, depth, key, key_len, v))
			goto nomem;
		/* Attached before it is filled: the parent (ultimately root)
		 * owns it, so an error anywhere below frees it with root. */
		if (depth == stack_cap) {
			size_t cap = stack_cap * 2 < MAX_DEPTH ? stack_cap * 2 : MAX_DEPTH;
			json_t **grown = stack == local_stack ? malloc(cap * sizeof *grown)
			                                      : realloc(stack, cap * sizeof *grown);
			if (!grown)
				goto nomem;
			if (stack == local_stack)
				memcpy(grown, local_stack, sizeof local_stack);
			stack = grown;
			stack_cap = cap;
		}
		stack[depth++] = v;
		p = skip_ws(p + 1, end);
		if (p < end && *p == (is_object ? '}' : ']')) {
			p++;
			depth--;
			goto after;
		}
		if (is_object)
			goto key;
		goto value;
	}
	case '"': {
		const char *s = NULL;
		size_t n = 0;
		r = scan_string(&ps, &p, &ps.value, &s, &n);
		if (r != SCAN_OK)
			goto scan_failed;
		v = json_stringn_nocheck(s, n);
		lookahead = false;
		break;
	}
	case 't':
		if (!literal(&p, end, "true", 4))
			goto bad_token;
		v = json_true();
		break;
	case 'f':
		if (!literal(&p, end, "false", 5))
			goto bad_token;
		v = json_false();
		break;
	case 'n':
		if (!literal(&p, end, "null", 4))
			goto bad_token;
		v = json_null();
		break;
	case '-':
	case '0':
	case '1':
	case '2':
	case '3':
	case '4':
	case '5':
	case '6':
	case '7':
	case '8':
	case '9':
		r = scan_number(&ps, &p, &v);
		if (r != SCAN_OK)
			goto scan_failed;
		break;
	default:
		goto bad_token;
	}
	if (!v || !attach(&root, stack, depth, key, key_len, v))
		goto nomem;
	/* jansson quirk, copied so both parsers accept the same inputs: its
	 * lexer ends a number or a bare word by reading one byte too many and
	 * pushing it back, and a pushed-back NUL byte is lost (its lookahead
	 * buffer takes NUL for empty). So "1\0" and "[true\0]" are accepted,
	 * as if that one NUL were not there. A string ends at its quote and
	 * reads nothing more. */
	if (lookahead && p < end && *p == '\0')
		p++;

after:
	if (depth == 0)
		goto done;
	p = skip_ws(p, end);
	if (p == end) {
		syntax(&ps, p, "premature end of input");
		goto out;
	} else {
		bool is_object = json_is_object(stack[depth - 1]);
		if (*p == ',') {
			p = skip_ws(p + 1, end);
			if (is_object)
				goto key;
			goto value;
		}
		if (*p == (is_object ? '}' : ']')) {
			p++;
			depth--;
			goto after;
		}
		syntax(&ps, p, is_object ? "',' or '}' expected" : "',' or ']' expected");
		goto out;
	}

key:
	if (p == end || *p != '"') {
		syntax(&ps, p, "string expected as object key");
		goto out;
	}
	r = scan_string(&ps, &p, &ps.key, &key, &key_len);
	if (r != SCAN_OK)
		goto scan_failed;
	p = skip_ws(p, end);
	if (p == end || *p != ':') {
		syntax(&ps, p, "':' expected");
		goto out;
	}
	p = skip_ws(p + 1, end);
	goto value;

done:
	p = skip_ws(p, end);
	if (p != end) {
		syntax(&ps, p, "end of input expected");
		goto out;
	}
	*out = root;
	root = NULL;
	rc = CA_OK;
	goto out;

bad_token:
	syntax(&ps, p, "invalid token");
	goto out;
scan_failed:
	if (r == SCAN_SYNTAX)
		goto out;
	/* fall through: SCAN_NOMEM */
nomem:
	rc = CA_ENOMEM;
	ps.why = "out of memory";
	ps.at = p;
out:
	if (rc != CA_OK && err && errlen)
		snprintf(err, errlen, "%s at byte %zu", ps.why ? ps.why : "invalid JSON",
		         (size_t)(ps.at - ps.start));
	json_decref(root);
	if (stack != local_stack)
		free(stack);
	scratch_fini(&ps.key);
	scratch_fini(&ps.value);
	return rc;
}
