/* Fuzz target: a config file from memory through the YAML walker, the
 * value parsers and validation. Unknown-key warnings are silenced so a run
 * does not drown in them. */
#include <stddef.h>
#include <stdint.h>

#include "config/config_int.h"
#include "log/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int quiet;
	if (!quiet) {
		ca_log_configure(CA_LOG_ERROR, true);
		quiet = 1;
	}
	struct ca_config cfg;
	char err[512];
	if (ca_config_init_defaults(&cfg) != CA_OK)
		return 0;
	ca_config_load_from_memory(&cfg, (const char *)data, size, "fuzz", err, sizeof err);
	ca_config_fini(&cfg);
	return 0;
}
