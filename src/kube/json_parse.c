/* kube/json_parse.c: strict JSON to a flat tape, in a reusable arena.
 *
 * The input is one contiguous buffer, copied once into the arena, so:
 *  - strings are scanned eight bytes at a time (a word test for '"', '\\',
 *    control bytes and non-ASCII); the closing quote becomes the string's
 *    NUL terminator and the node points at the copy, so no string is copied
 *    again;
 *  - only strings with escapes are rewritten, in place (the output never
 *    outruns the input being read);
 *  - integers are accumulated in place; only reals go through strtod, on a
 *    bounded NUL-terminated copy;
 *  - nodes are appended to one array as they are read; a container's span
 *    and count are filled in when it closes, so the parser needs no
 *    recursion: a stack of the open containers' indexes is all the state.
 *
 * What is accepted matches jansson's json_loadb(..., JSON_DECODE_ANY)
 * exactly; where a rule looks arbitrary, the comment names the jansson
 * behaviour it copies. tests/fuzz/fuzz_json.c checks the two against each
 * other on every input. */
#include "kube/json_parse.h"

#include "core/utf8.h"

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
#define NUMBER_LOCAL 64    /* real-number text held without malloc */
#define MAX_NODES ((size_t)UINT32_MAX - 1) /* spans and offsets are uint32_t */
/* Nodes allowed per document: a floor, plus one per NODE_BYTES bytes of
 * input. API JSON has 9 to 15 bytes per node (keys count), so real
 * documents never come near; a hostile "[0,0,0,...]" (2 bytes per node)
 * would otherwise make a 24-byte node per 2 bytes, a tape twelve times the
 * input. With this cap the tape is at most (1 + 24 / 6) times the input
 * plus the floor: what the memory budget counts for a LIST page. */
#define NODE_FLOOR ((size_t)4096)
#define NODE_BYTES ((size_t)6)
/* Arrays with at least this many elements get a table of element offsets,
 * so ca_kobj_array_at (the reflector walks LIST pages of hundreds of items
 * with it) is O(1) instead of a walk over the preceding siblings. */
#define INDEX_MIN 16

struct ca_json_doc {
	struct ca_kobj *nodes; /* nodes[0] is the header */
	size_t len, cap;
	char *text; /* the input's copy, with the strings rewritten */
	size_t text_cap;
	uint32_t *stack; /* indexes of the open containers */
	size_t stack_cap;
	uint32_t *indexed; /* arrays that get an element table */
	size_t indexed_len, indexed_cap;
	uint32_t *tables; /* their tables, back to back */
	size_t tables_cap;
	size_t max_nodes; /* this document's cap (NODE_FLOOR, NODE_BYTES) */
	bool over;        /* the cap was hit: too many values for the size */
};

enum ca_err ca_kube_json_doc_new(struct ca_json_doc **out)
{
	if (!out)
		return CA_EINVAL;
	*out = calloc(1, sizeof **out);
	return *out ? CA_OK : CA_ENOMEM;
}

void ca_kube_json_doc_free(struct ca_json_doc *doc)
{
	if (!doc)
		return;
	free(doc->nodes);
	free(doc->text);
	free(doc->stack);
	free(doc->indexed);
	free(doc->tables);
	free(doc);
}

void ca_kube_json_doc_trim(struct ca_json_doc *doc, size_t keep_bytes)
{
	if (!doc)
		return;
	size_t held = doc->cap * sizeof *doc->nodes + doc->text_cap +
	              (doc->stack_cap + doc->indexed_cap + doc->tables_cap) * sizeof(uint32_t);
	if (held <= keep_bytes)
		return;
	free(doc->nodes);
	free(doc->text);
	free(doc->stack);
	free(doc->indexed);
	free(doc->tables);
	doc->nodes = NULL;
	doc->text = NULL;
	doc->stack = doc->indexed = doc->tables = NULL;
	doc->len = doc->cap = doc->text_cap = doc->stack_cap = 0;
	doc->indexed_len = doc->indexed_cap = doc->tables_cap = 0;
}

/* Grow *buf (of *cap elements of size sz) to hold at least need elements.
 * The callers' needs are bounded by the input length (a node, a stack slot
 * or a table entry per input byte at most), so the arena never holds more
 * than a constant times the largest document it was given. */
static bool grow(void **buf, size_t *cap, size_t need, size_t sz)
{
	if (need <= *cap)
		return true;
	size_t c = *cap ? *cap : 64;
	while (c < need) {
		if (c > SIZE_MAX / 2 / sz)
			return false;
		c *= 2;
	}
	if (c > SIZE_MAX / sz)
		return false;
	void *p = realloc(*buf, c * sz);
	if (!p)
		return false;
	*buf = p;
	*cap = c;
	return true;
}

/* ------------------------------------------------------------------------ */
/* Lexical helpers */

struct parser {
	unsigned char *start; /* the arena's copy of the input */
	unsigned char *end;
	const char *why; /* reason of a syntax error */
	const unsigned char *at; /* where it was found */
	bool in_key;     /* the string being scanned is an object key */
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

/* The escape sequence at p (p[0] == '\\') written at *wp; *pp moves past
 * it and *wp past what was written. Everything is read before anything is
 * written, and the output is never longer than the escape, so *wp stays at
 * or before *pp. */
static enum scan unescape(struct parser *ps, unsigned char **pp, unsigned char **wp)
{
	unsigned char *p = *pp;
	const unsigned char *end = ps->end;
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
			/* Go's encoder writes a NUL in a string as \u0000, so an
			 * Event message may hold one; refusing it would refuse the
			 * whole LIST page. In a value it becomes U+FFFD (3 bytes,
			 * shorter than the 6 of the escape), so every string stays
			 * a whole C string. In a key it stays an error, as in
			 * jansson: API object keys are validated names. */
			if (ps->in_key)
				return syntax(ps, p, "\\u0000 is not allowed in an object key");
			cp = 0xFFFD;
		}
		*wp += utf8_put((char *)*wp, cp);
		*pp = p;
		return SCAN_OK;
	}
	default:
		return syntax(ps, p, "invalid escape");
	}
	*(*wp)++ = (unsigned char)c;
	*pp = p + 2;
	return SCAN_OK;
}

/* The string whose opening quote is at *pp. On SCAN_OK, *s and *n give its
 * unescaped bytes, NUL-terminated, in the arena's copy of the input, and
 * *pp is past the closing quote (which the NUL may have replaced). */
static enum scan scan_string(struct parser *ps, unsigned char **pp, const char **s, size_t *n)
{
	unsigned char *begin = *pp + 1, *p = begin;
	const unsigned char *end = ps->end;
	/* Fast path: no escapes, so the bytes stay where they are. */
	for (;;) {
		p = (unsigned char *)skip_plain(p, end);
		if (p == end)
			return syntax(ps, p, "premature end of input in a string");
		switch (str_class[*p]) {
		case C_QUOTE:
			*p = '\0';
			*s = (const char *)begin;
			*n = (size_t)(p - begin);
			*pp = p + 1;
			return SCAN_OK;
		case C_UTF8: {
			size_t k = ca_utf8_seq(p, (size_t)(end - p));
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

escaped:;
	unsigned char *w = p; /* the unescaped text ends here */
	for (unsigned char *run = p;;) {
		/* Here p is at a byte that is not plain; run..p is plain or
		 * valid UTF-8 still to be moved down to w. */
		switch (str_class[*p]) {
		case C_QUOTE:
		case C_ESCAPE: {
			size_t k = (size_t)(p - run);
			if (w != run)
				memmove(w, run, k);
			w += k;
			if (*p == '"') {
				*w = '\0';
				*s = (const char *)begin;
				*n = (size_t)(w - begin);
				*pp = p + 1;
				return SCAN_OK;
			}
			enum scan r = unescape(ps, &p, &w);
			if (r != SCAN_OK)
				return r;
			run = p;
			break;
		}
		case C_UTF8: {
			size_t k = ca_utf8_seq(p, (size_t)(end - p));
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
		p = (unsigned char *)skip_plain(p, end);
		if (p == end)
			return syntax(ps, p, "premature end of input in a string");
	}
}

static inline bool is_digit(unsigned c)
{
	return c - '0' < 10;
}

/* The number starting at *pp ('-' or a digit), into node v. */
static enum scan scan_number(struct parser *ps, unsigned char **pp, struct ca_kobj *v)
{
	unsigned char *start = *pp, *p = start;
	const unsigned char *end = ps->end;
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
		v->type = CA_JSON_INT;
		v->v.i = i;
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
		v->type = CA_JSON_REAL;
		v->v.d = d;
	}
	*pp = p;
	return SCAN_OK;
}

static inline unsigned char *skip_ws(unsigned char *p, const unsigned char *end)
{
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	return p;
}

static bool literal(unsigned char **pp, const unsigned char *end, const char *word, size_t n)
{
	if ((size_t)(end - *pp) < n || memcmp(*pp, word, n) != 0)
		return false;
	*pp += n;
	return true;
}

/* A new node at the end of the tape, or NULL when out of memory. */
static inline struct ca_kobj *push(struct ca_json_doc *doc, uint8_t type)
{
	if (doc->len >= doc->max_nodes) {
		doc->over = true;
		return NULL;
	}
	if (doc->len == doc->cap) {
		if (doc->len >= MAX_NODES ||
		    !grow((void **)&doc->nodes, &doc->cap, doc->len + 1, sizeof *doc->nodes))
			return NULL;
	}
	struct ca_kobj *v = &doc->nodes[doc->len++];
	v->type = type;
	v->span = 1;
	v->n = 0;
	v->v.i = 0;
	return v;
}

/* A container closes: its span is known now. */
static inline bool close_container(struct ca_json_doc *doc, uint32_t at)
{
	struct ca_kobj *c = &doc->nodes[at];
	c->span = (uint32_t)(doc->len - at);
	if (c->type == CA_JSON_ARRAY && c->n >= INDEX_MIN) {
		if (!grow((void **)&doc->indexed, &doc->indexed_cap, doc->indexed_len + 1,
		          sizeof *doc->indexed))
			return false;
		doc->indexed[doc->indexed_len++] = at;
	}
	return true;
}

/* Fill the element tables of the large arrays, once the tape is final (its
 * nodes no longer move) and the tables' total size is known. */
static bool build_tables(struct ca_json_doc *doc)
{
	size_t total = 0;
	for (size_t k = 0; k < doc->indexed_len; k++)
		total += doc->nodes[doc->indexed[k]].n; /* each <= nodes, no overflow */
	if (!grow((void **)&doc->tables, &doc->tables_cap, total, sizeof *doc->tables))
		return false;
	uint32_t *t = doc->tables;
	for (size_t k = 0; k < doc->indexed_len; k++) {
		struct ca_kobj *a = &doc->nodes[doc->indexed[k]];
		uint32_t off = 1;
		for (size_t i = 0; i < a->n; i++) {
			t[i] = off;
			off += a[off].span;
		}
		a->v.idx = t;
		t += a->n;
	}
	return true;
}

/* ------------------------------------------------------------------------ */
/* The parser: a loop over three states (value, key, after a value) with the
 * open containers on a stack. */

enum ca_err ca_kube_json_parse(struct ca_json_doc *doc, const char *data, size_t len,
                               const struct ca_kobj **root, char *err, size_t errlen)
{
	enum ca_err rc = CA_EPROTO;
	struct parser ps;
	size_t depth = 0;
	unsigned char *p = NULL;
	const unsigned char *end;
	enum scan r = SCAN_OK;
	struct ca_kobj *v = NULL;
	bool lookahead; /* the value just read was a number or a bare word */

	if (err && errlen)
		err[0] = '\0';
	if (root)
		*root = NULL;
	if (!doc || !root || !data) {
		if (err && errlen)
			snprintf(err, errlen, "no input");
		return CA_EINVAL;
	}
	ps.why = NULL;
	ps.at = NULL;
	ps.start = NULL;
	ps.in_key = false;
	doc->len = 0;
	doc->indexed_len = 0;
	doc->over = false;
	doc->max_nodes = NODE_FLOOR + len / NODE_BYTES;
	if (doc->max_nodes > MAX_NODES)
		doc->max_nodes = MAX_NODES;
	if (len == SIZE_MAX || !grow((void **)&doc->text, &doc->text_cap, len + 1, 1) ||
	    !grow((void **)&doc->nodes, &doc->cap, len / 16 + 2, sizeof *doc->nodes))
		goto nomem;
	if (len)
		memcpy(doc->text, data, len);
	doc->text[len] = '\0';
	ps.start = (unsigned char *)doc->text;
	ps.end = ps.start + len;
	ps.at = ps.start;
	end = ps.end;
	p = ps.start;
	v = push(doc, CA_JSON_HEADER);
	v->v.doc = doc;
	p = skip_ws(p, end);

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
	if (depth && doc->nodes[doc->stack[depth - 1]].type == CA_JSON_ARRAY)
		doc->nodes[doc->stack[depth - 1]].n++;
	lookahead = true;
	switch (*p) {
	case '{':
	case '[': {
		bool is_object = *p == '{';
		if (!push(doc, is_object ? CA_JSON_OBJECT : CA_JSON_ARRAY))
			goto nomem;
		if (!grow((void **)&doc->stack, &doc->stack_cap, depth + 1, sizeof *doc->stack))
			goto nomem;
		doc->stack[depth++] = (uint32_t)(doc->len - 1);
		p = skip_ws(p + 1, end);
		if (p < end && *p == (is_object ? '}' : ']')) {
			p++;
			if (!close_container(doc, doc->stack[--depth]))
				goto nomem;
			goto after;
		}
		if (is_object)
			goto key;
		goto value;
	}
	case '"': {
		v = push(doc, CA_JSON_STRING);
		if (!v)
			goto nomem;
		r = scan_string(&ps, &p, &v->v.s, &v->n);
		if (r != SCAN_OK)
			goto scan_failed;
		lookahead = false;
		break;
	}
	case 't':
		if (!literal(&p, end, "true", 4))
			goto bad_token;
		if (!push(doc, CA_JSON_TRUE))
			goto nomem;
		break;
	case 'f':
		if (!literal(&p, end, "false", 5))
			goto bad_token;
		if (!push(doc, CA_JSON_FALSE))
			goto nomem;
		break;
	case 'n':
		if (!literal(&p, end, "null", 4))
			goto bad_token;
		if (!push(doc, CA_JSON_NULL))
			goto nomem;
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
		v = push(doc, CA_JSON_NULL);
		if (!v)
			goto nomem;
		r = scan_number(&ps, &p, v);
		if (r != SCAN_OK)
			goto scan_failed;
		break;
	default:
		goto bad_token;
	}
	/* jansson quirk, copied so both parsers accept the same inputs: its
	 * lexer ends a number or a bare word by reading one byte too many and
	 * pushing it back, and a pushed-back NUL byte is lost (its lookahead
	 * buffer takes NUL for empty). So "1\0" and "[true\0]" are accepted,
	 * as if that one NUL were not there. A string ends at its quote and
	 * reads nothing more. (The NUL written over a closing quote is behind
	 * p, so it is never mistaken for such a byte.) */
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
		bool is_object = doc->nodes[doc->stack[depth - 1]].type == CA_JSON_OBJECT;
		if (*p == ',') {
			p = skip_ws(p + 1, end);
			if (is_object)
				goto key;
			goto value;
		}
		if (*p == (is_object ? '}' : ']')) {
			p++;
			if (!close_container(doc, doc->stack[--depth]))
				goto nomem;
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
	v = push(doc, CA_JSON_KEY);
	if (!v)
		goto nomem;
	ps.in_key = true;
	r = scan_string(&ps, &p, &v->v.s, &v->n);
	ps.in_key = false;
	if (r != SCAN_OK)
		goto scan_failed;
	doc->nodes[doc->stack[depth - 1]].n++;
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
	if (doc->indexed_len && !build_tables(doc))
		goto nomem;
	*root = &doc->nodes[1];
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
	rc = doc->over ? CA_ETOOBIG : CA_ENOMEM;
	ps.why = doc->over ? "more values than its size allows (at most 4096 + one per 6 bytes)"
	                   : "out of memory";
	ps.at = p;
out:
	if (rc != CA_OK && err && errlen)
		snprintf(err, errlen, "%s at byte %zu", ps.why ? ps.why : "invalid JSON",
		         ps.at && ps.start ? (size_t)(ps.at - ps.start) : (size_t)0);
	if (rc != CA_OK)
		doc->len = 0;
	return rc;
}
