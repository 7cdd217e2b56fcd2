/* fuzz_vw.c - libFuzzer target for the vw parser and ot_reader. */
#define FORMAT "vw"
#include "parse_fuzz.h"
