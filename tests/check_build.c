/*
 * check_build.c - facts about the build: the header compiles alone in every
 * language it promises, the shared library exports only ot_* symbols, and
 * docs/errors.md lists exactly the header's status codes.
 *
 * These tests run programs (the compiler, nm) from the source tree's root,
 * where `make check` runs them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"

static int run(const char *cmd)
{
    int rc = system(cmd);
    return rc;
}

static void compile_header(const char *compiler, const char *flags, const char *lang)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd),
             "printf '#include \"onlinetrain.h\"\\nint main(void){return ot_version()==0;}\\n' | "
             "%s %s -Wall -Wextra -Wpedantic -Werror -Iinclude -fsyntax-only -x %s - 2>&1",
             compiler, flags, lang);
    ck_assert_msg(run(cmd) == 0, "header does not compile: %s", cmd);
}

START_TEST(test_build_header_compiles_as_c99)
{
    compile_header(OT_CC, "-std=c99", "c");
}
END_TEST

START_TEST(test_build_header_compiles_as_c11)
{
    compile_header(OT_CC, "-std=c11", "c");
}
END_TEST

START_TEST(test_build_header_compiles_as_cxx)
{
    compile_header(OT_CXX, "-std=c++11", "c++");
}
END_TEST

START_TEST(test_build_shared_exports_only_ot_symbols)
{
    char cmd[512], line[512];
    FILE *p;
    int n = 0, bad = 0;

    snprintf(cmd, sizeof(cmd), "nm -D --defined-only %s/libonlinetrain.so", test_build_dir());
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    while (fgets(line, sizeof(line), p) != NULL) {
        char addr[64], type[8], name[400];
        if (sscanf(line, "%63s %7s %399s", addr, type, name) != 3)
            continue;
        n++;
        if (strncmp(name, "ot_", 3) != 0) {
            fprintf(stderr, "exported: %s\n", name);
            bad++;
        }
    }
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_int_gt(n, 20);
    ck_assert_int_eq(bad, 0);
}
END_TEST

/* Every "OT_Exxx = N" in the header appears in docs/errors.md as "| `OT_Exxx` | N |",
 * and the document names no status the header lacks. */
START_TEST(test_build_errors_doc_matches_header)
{
    FILE *h = fopen("include/onlinetrain.h", "r"), *d = fopen("docs/errors.md", "r");
    static char doc[65536];
    char line[512], name[64], want[128];
    size_t len;
    int value, nheader = 0, ndoc = 0;
    const char *p;

    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_nonnull(d);
    len = fread(doc, 1, sizeof(doc) - 1, d);
    doc[len] = '\0';
    fclose(d);
    while (fgets(line, sizeof(line), h) != NULL) {
        if (sscanf(line, " OT_%60[A-Z] = %d", name, &value) == 2 && strncmp(line, "    OT_", 7) == 0 &&
            (name[0] == 'E' || strcmp(name, "OK") == 0)) {
            snprintf(want, sizeof(want), "| `OT_%s` | %d |", name, value);
            ck_assert_msg(strstr(doc, want) != NULL, "docs/errors.md lacks \"%s\"", want);
            ck_assert_str_eq(ot_status_name(value) + 3, name);
            nheader++;
        }
    }
    fclose(h);
    for (p = doc; (p = strstr(p, "| `OT_")) != NULL; p++)
        ndoc++;
    ck_assert_int_gt(nheader, 20);
    ck_assert_int_eq(ndoc, nheader);
}
END_TEST

Suite *suite_build(void)
{
    Suite *s = suite_create("build");
    TCase *tc = tcase_create("build");

    tcase_set_tags(tc, "build");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_build_header_compiles_as_c99);
    tcase_add_test(tc, test_build_header_compiles_as_c11);
    tcase_add_test(tc, test_build_header_compiles_as_cxx);
    tcase_add_test(tc, test_build_shared_exports_only_ot_symbols);
    tcase_add_test(tc, test_build_errors_doc_matches_header);
    suite_add_tcase(s, tc);
    return s;
}
