/* Process exit with nats.c 3.4.1 and OpenSSL 3.
 *
 * nats.c's own exit handler frees OpenSSL's list of compression methods
 * (sk_SSL_COMP_free(SSL_COMP_get_compression_methods())) without clearing
 * OpenSSL's pointer to it, and OpenSSL's atexit handler then frees it a
 * second time: a double free that crashes an agent which spoke TLS to NATS,
 * depending on the heap (nats.c issue #904; the code is gone in newer
 * nats.c, not in Debian 12's). Running OpenSSL's cleanup first, once
 * nothing uses TLS any more, frees that list and sets the pointer to NULL,
 * so nats.c's late free is a no-op, and OpenSSL's own atexit handler sees
 * that cleanup already ran.
 *
 * OpenSSL is not a dependency of ours (nats.c and libcurl bring it), so it
 * is looked up at run time instead of linked: no header, no -lcrypto. */
#include <dlfcn.h>

#include "bus/bus.h"

void ca_bus_openssl_exit(void)
{
	void *sym = dlsym(RTLD_DEFAULT, "OPENSSL_cleanup");
	void (*cleanup)(void);
	if (!sym)
		return;
	/* POSIX guarantees a function pointer round-trips through void *. */
	*(void **)&cleanup = sym;
	cleanup();
}
