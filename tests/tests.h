/*
 * tests.h - shared declarations of the Check test program: one suite per
 * module, each defined in tests/check_<module>.c.
 */
#ifndef OT_TESTS_H
#define OT_TESTS_H

#include <check.h>

#include "onlinetrain.h"

Suite *suite_core(void);
Suite *suite_config(void);
Suite *suite_build(void);
Suite *suite_parse(void);

/* Directory of build outputs (the library, the ot program). */
const char *test_build_dir(void);

#endif
