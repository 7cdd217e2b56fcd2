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
Suite *suite_learn(void);
Suite *suite_model(void);
Suite *suite_transport(void);
Suite *suite_delta(void);
Suite *suite_predictor(void);
Suite *suite_roles(void);
Suite *suite_examples(void);
Suite *suite_metrics(void);
Suite *suite_docs(void);
Suite *suite_durable(void);
Suite *suite_shard(void);
Suite *suite_serve(void);
Suite *suite_netns(void);

/* Directory of build outputs (the library, the ot program). */
const char *test_build_dir(void);

#endif
