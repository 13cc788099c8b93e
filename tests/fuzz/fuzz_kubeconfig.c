/* Fuzz target: a kubeconfig from memory, resolving the current context and
 * then a fixed context name, relative paths against a base dir. */
#include <stddef.h>
#include <stdint.h>

#include "config/kubeconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ca_kubeconfig kc;
	char err[512];
	ca_kubeconfig_parse((const char *)data, size, "/base", NULL, &kc, err, sizeof err);
	ca_kubeconfig_fini(&kc);
	ca_kubeconfig_parse((const char *)data, size, NULL, "prod", &kc, err, sizeof err);
	ca_kubeconfig_fini(&kc);
	return 0;
}
