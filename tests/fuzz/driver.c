/* Standalone fuzz driver: replays every file in the corpus directory given
 * as argv[1] through LLVMFuzzerTestOneInput, then feeds a fixed number of
 * seeded random mutations of each (bit flips, truncations, splices) so CI
 * exercises the target without a fuzzing engine. Deterministic: the seed is
 * fixed unless FUZZ_SEED is set. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng = 0x243F6A8885A308D3ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void mutate_and_run(const uint8_t *data, size_t size, int rounds)
{
	uint8_t *copy = malloc(size + 64);
	if (!copy)
		return;
	for (int r = 0; r < rounds; r++) {
		size_t n = size;
		memcpy(copy, data, size);
		int edits = 1 + (int)(next() % 8);
		for (int e = 0; e < edits && n > 0; e++) {
			size_t at = next() % n;
			switch (next() % 4) {
			case 0: copy[at] ^= (uint8_t)(1u << (next() % 8)); break;
			case 1: copy[at] = (uint8_t)next(); break;
			case 2: n = at; break; /* truncate */
			case 3: copy[at] = "{}[]\",:\n\\0"[next() % 10]; break;
			}
		}
		LLVMFuzzerTestOneInput(copy, n);
	}
	free(copy);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	const char *seed = getenv("FUZZ_SEED");
	if (seed)
		rng = strtoull(seed, NULL, 10) | 1;
	int rounds = 200;
	const char *r = getenv("FUZZ_ROUNDS");
	if (r)
		rounds = (int)strtol(r, NULL, 10);
	DIR *d = opendir(argv[1]);
	if (!d) {
		fprintf(stderr, "cannot open corpus %s\n", argv[1]);
		return 2;
	}
	struct dirent *de;
	int files = 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", argv[1], de->d_name);
		FILE *f = fopen(path, "rb");
		if (!f)
			continue;
		uint8_t *buf = malloc(1 << 22);
		size_t n = buf ? fread(buf, 1, 1 << 22, f) : 0;
		fclose(f);
		if (!buf)
			continue;
		LLVMFuzzerTestOneInput(buf, n);
		mutate_and_run(buf, n, rounds);
		free(buf);
		files++;
	}
	closedir(d);
	LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
	printf("replayed %d corpus files with %d mutations each\n", files, rounds);
	return files > 0 ? 0 : 1;
}
