/* check_parse.c - VW text and libsvm parsing (being written). */
#include "tests.h"

START_TEST(test_parse_placeholder_absent_format)
{
    ot_example *ex;
    ck_assert_int_eq(ot_example_create(NULL, &ex), OT_OK);
    ck_assert_int_eq(ot_example_parse(ex, "csv", "1", 1), OT_EINVAL);
    ot_example_destroy(ex);
}
END_TEST

Suite *suite_parse(void)
{
    Suite *s = suite_create("parse");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_parse_placeholder_absent_format);
    suite_add_tcase(s, tc);
    return s;
}
