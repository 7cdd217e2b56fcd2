/* fuzz_libsvm.c - libFuzzer target for the libsvm parser and ot_reader. */
#define FORMAT "libsvm"
#include "parse_fuzz.h"
