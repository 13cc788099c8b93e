/* kube/salvage.h: keeping the good items of a LIST page that does not
 * parse as a whole (internal to kube/).
 *
 * One bad object (a string that is not UTF-8, a number out of range, a
 * value the parser's caps refuse) must cost that object, never the page:
 * otherwise the reflector retries the page for ever and every object on it
 * is lost. The page's frame is found with a string-aware scanner that only
 * tracks quotes, escapes and brackets; each item is then parsed on its own.
 * Pure; any thread. */
#ifndef CA_KUBE_SALVAGE_H
#define CA_KUBE_SALVAGE_H

#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/* out gets {"metadata":<the page's metadata>,"items":[<every item that
 * parses alone as an object, in order>]} (out is reset first), which always
 * parses; *bad the number of items left out. CA_EPROTO when the frame itself
 * (a top-level object whose "items" member is an array, and whose metadata,
 * when there is one, parses as an object) cannot be found, or its brackets
 * do not balance; CA_ENOMEM, CA_ETOOBIG (out's cap). */
enum ca_err ca_kube_list_salvage(const char *body, size_t len, struct ca_buf *out, size_t *bad);

#endif
