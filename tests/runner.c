/*
 * runner.c - the one Check test program.  Select with Check's variables:
 * CK_RUN_SUITE=parse, CK_RUN_CASE=..., CK_EXCLUDE_TAGS=net, CK_FORK=no.
 *
 * Never create nng sockets or threads here: this runs in the parent process,
 * and each test runs in a forked child.
 */
#include <stdio.h>
#include <stdlib.h>

#include <nng/nng.h>

#include "tests.h"

const char *test_build_dir(void)
{
    const char *b = getenv("OT_BUILD");
    return b != NULL && *b ? b : OT_BUILD_DIR;
}

int main(void)
{
    SRunner *sr = srunner_create(suite_core());
    int failed;

    /* Under valgrind (make check-valgrind), each test's process waits at
     * exit for nng to finish closing its pipes, which it does in the
     * background: otherwise what it had not freed yet is reported as lost
     * (nng_fini's own advice for memory checkers).  Registered here, the
     * forked test processes inherit it; the parent never starts nng, so for
     * it nng_fini does nothing. */
    if (getenv("OT_VALGRIND") != NULL)
        atexit(nng_fini);
    srunner_add_suite(sr, suite_config());
    srunner_add_suite(sr, suite_build());
    srunner_add_suite(sr, suite_parse());
    srunner_add_suite(sr, suite_learn());
    srunner_add_suite(sr, suite_model());
    srunner_add_suite(sr, suite_transport());
    srunner_add_suite(sr, suite_delta());
    srunner_add_suite(sr, suite_predictor());
    srunner_add_suite(sr, suite_roles());
    srunner_add_suite(sr, suite_examples());
    srunner_add_suite(sr, suite_metrics());
    srunner_add_suite(sr, suite_docs());
    srunner_add_suite(sr, suite_durable());
    srunner_add_suite(sr, suite_shard());
    srunner_add_suite(sr, suite_serve());
    srunner_add_suite(sr, suite_netns());
    /* Run quietly, print each failure, then Check's summary as the last line. */
    srunner_run_all(sr, CK_SILENT);
    failed = srunner_ntests_failed(sr);
    if (failed > 0) {
        TestResult **tr = srunner_failures(sr);
        int i;
        for (i = 0; i < failed; i++)
            printf("%s:%d:%s:%s: %s\n", tr_lfile(tr[i]), tr_lno(tr[i]),
                   tr_rtype(tr[i]) == CK_ERROR ? "E" : "F", tr_tcname(tr[i]),
                   tr_msg(tr[i]));
        free(tr);
    }
    srunner_print(sr, CK_MINIMAL);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
