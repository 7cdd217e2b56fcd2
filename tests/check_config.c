/*
 * check_config.c - typed options, their errors, and introspection.
 */
#include <math.h>
#include <string.h>

#include "tests.h"

START_TEST(test_config_every_option_round_trips_by_name)
{
    int id, back, n = 0, prev = 0;

    for (id = ot_option_next(0); id != 0; id = ot_option_next(id)) {
        const char *name = ot_option_name(id);
        ck_assert_int_gt(id, prev);
        prev = id;
        ck_assert_ptr_nonnull(name);
        ck_assert_int_eq(ot_option_by_name(name, &back), OT_OK);
        ck_assert_int_eq(back, id);
        ck_assert_int_ne(ot_option_type(id), OT_TYPE_NONE);
        ck_assert_ptr_nonnull(ot_option_doc(id));
        n++;
    }
    ck_assert_int_gt(n, 10);
    ck_assert_int_eq(ot_option_by_name("no_such_option", &back), OT_ENOTSUP);
    ck_assert_int_eq(ot_option_by_name(NULL, &back), OT_EINVAL);
    ck_assert_ptr_null(ot_option_name(0));
    ck_assert_ptr_null(ot_option_name(99999));
    ck_assert_int_eq(ot_option_type(99999), OT_TYPE_NONE);
}
END_TEST

START_TEST(test_config_defaults_and_getters)
{
    ot_config *cfg;
    int64_t i;
    double f;
    const char *s;
    int id;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    ck_assert_int_eq(ot_config_get_i64(cfg, OT_OPT_BITS, &i), OT_OK);
    ck_assert_int_eq(i, 18);
    ck_assert_int_eq(ot_config_get_str(cfg, OT_OPT_LOSS, &s), OT_OK);
    ck_assert_str_eq(s, "logistic");
    ck_assert_int_eq(ot_config_get_f64(cfg, OT_OPT_FTRL_BETA, &f), OT_OK);
    ck_assert(f == 1.0);
    /* Every option can be read back with its own type. */
    for (id = ot_option_next(0); id != 0; id = ot_option_next(id)) {
        switch (ot_option_type(id)) {
        case OT_TYPE_I64: ck_assert_int_eq(ot_config_get_i64(cfg, id, &i), OT_OK); break;
        case OT_TYPE_F64: ck_assert_int_eq(ot_config_get_f64(cfg, id, &f), OT_OK); break;
        case OT_TYPE_STR: ck_assert_int_eq(ot_config_get_str(cfg, id, &s), OT_OK); break;
        default: ck_abort_msg("option %d has no type", id);
        }
    }
    ot_config_destroy(cfg);
    ot_config_destroy(NULL);
}
END_TEST

START_TEST(test_config_errors)
{
    ot_config *cfg;
    int64_t i;
    double f;
    const char *s;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    /* unknown id */
    ck_assert_int_eq(ot_config_set_i64(cfg, 99999, 1), OT_ENOTSUP);
    ck_assert_int_eq(ot_config_get_i64(cfg, 99999, &i), OT_ENOTSUP);
    ck_assert_int_eq(ot_config_set_text(cfg, 99999, "1"), OT_ENOTSUP);
    ck_assert_int_eq(ot_option_bounds_i64(99999, &i, &i), OT_ENOTSUP);
    /* wrong type */
    ck_assert_int_eq(ot_config_set_f64(cfg, OT_OPT_BITS, 3.0), OT_EBADTYPE);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_BITS, "3"), OT_EBADTYPE);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_LOSS, 1), OT_EBADTYPE);
    ck_assert_int_eq(ot_config_get_f64(cfg, OT_OPT_BITS, &f), OT_EBADTYPE);
    ck_assert_int_eq(ot_config_get_str(cfg, OT_OPT_BITS, &s), OT_EBADTYPE);
    ck_assert_int_eq(ot_option_bounds_f64(OT_OPT_BITS, &f, &f), OT_EBADTYPE);
    /* out of range */
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_BITS, 0), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_BITS, 31), OT_ERANGE);
    ck_assert_ptr_nonnull(strstr(ot_config_errmsg(cfg), "bits"));
    ck_assert_int_eq(ot_config_set_f64(cfg, OT_OPT_L1, -1.0), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_f64(cfg, OT_OPT_L1, NAN), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_f64(cfg, OT_OPT_L1, INFINITY), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_LOSS, "hinge"), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_QUADRATIC, "abc"), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_HIDDEN_LAYERS, "64,,3"), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_HIDDEN_LAYERS, "0"), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_EMBEDDING, "u16"), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_text(cfg, OT_OPT_BITS, "12x"), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_text(cfg, OT_OPT_L2, "abc"), OT_ERANGE);
    /* a failed set changes nothing */
    ck_assert_int_eq(ot_config_get_i64(cfg, OT_OPT_BITS, &i), OT_OK);
    ck_assert_int_eq(i, 18);
    /* NULL handles */
    ck_assert_int_eq(ot_config_set_i64(NULL, OT_OPT_BITS, 3), OT_EINVAL);
    ck_assert_int_eq(ot_config_get_i64(cfg, OT_OPT_BITS, NULL), OT_EINVAL);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_LOSS, NULL), OT_EINVAL);
    ck_assert_int_eq(ot_config_create(NULL), OT_EINVAL);
    ck_assert_str_eq(ot_config_errmsg(NULL), "");
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_config_set_text_and_lists)
{
    ot_config *cfg, *copy;
    int64_t i;
    double f;
    const char *s;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    ck_assert_int_eq(ot_config_set_text(cfg, OT_OPT_BITS, "22"), OT_OK);
    ck_assert_int_eq(ot_config_set_text(cfg, OT_OPT_L2, "1e-3"), OT_OK);
    ck_assert_int_eq(ot_config_set_text(cfg, OT_OPT_OPTIMIZER, "adagrad"), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_QUADRATIC, "ab,cd"), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_EMBEDDING, "u:16,i:8"), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_HIDDEN_LAYERS, "64,32"), OT_OK);
    ck_assert_int_eq(ot_config_clone(cfg, &copy), OT_OK);
    ot_config_destroy(cfg);
    ck_assert_int_eq(ot_config_get_i64(copy, OT_OPT_BITS, &i), OT_OK);
    ck_assert_int_eq(i, 22);
    ck_assert_int_eq(ot_config_get_f64(copy, OT_OPT_L2, &f), OT_OK);
    ck_assert(f == 1e-3);
    ck_assert_int_eq(ot_config_get_str(copy, OT_OPT_OPTIMIZER, &s), OT_OK);
    ck_assert_str_eq(s, "adagrad");
    ck_assert_int_eq(ot_config_get_str(copy, OT_OPT_HIDDEN_LAYERS, &s), OT_OK);
    ck_assert_str_eq(s, "64,32");
    ck_assert_int_eq(ot_config_validate(copy), OT_OK);
    ot_config_destroy(copy);
}
END_TEST

START_TEST(test_config_bounds_and_choices)
{
    int64_t lo, hi;
    double flo, fhi;

    ck_assert_int_eq(ot_option_bounds_i64(OT_OPT_BITS, &lo, &hi), OT_OK);
    ck_assert_int_eq(lo, 1);
    ck_assert_int_eq(hi, 30);
    ck_assert_int_eq(ot_option_bounds_f64(OT_OPT_L1, &flo, &fhi), OT_OK);
    ck_assert(flo == 0.0 && fhi > 0.0);
    ck_assert_str_eq(ot_option_choices(OT_OPT_FORMAT), "vw|libsvm");
    ck_assert_ptr_null(ot_option_choices(OT_OPT_BITS));
}
END_TEST

START_TEST(test_config_validate_cross_field_rules)
{
    ot_config *cfg;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    ck_assert_int_eq(ot_config_validate(cfg), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_RT_INTERVAL_MS, 100), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_FULL_INTERVAL_MS, 999), OT_OK);
    ck_assert_int_eq(ot_config_validate(cfg), OT_EINVAL);
    ck_assert_ptr_nonnull(strstr(ot_config_errmsg(cfg), "full_interval_ms"));
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_FULL_INTERVAL_MS, 1000), OT_OK);
    ck_assert_int_eq(ot_config_validate(cfg), OT_OK);
    /* 0 means "only on demand" and is exempt from the ratio */
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_FULL_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_validate(cfg), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_NUM_SHARDS, 2), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_SHARD_ID, 2), OT_OK);
    ck_assert_int_eq(ot_config_validate(cfg), OT_EINVAL);
    ck_assert_ptr_nonnull(strstr(ot_config_errmsg(cfg), "shard_id"));
    ck_assert_int_eq(ot_config_validate(NULL), OT_EINVAL);
    ot_config_destroy(cfg);
}
END_TEST

Suite *suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");

    tcase_add_test(tc, test_config_every_option_round_trips_by_name);
    tcase_add_test(tc, test_config_defaults_and_getters);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_config_set_text_and_lists);
    tcase_add_test(tc, test_config_bounds_and_choices);
    tcase_add_test(tc, test_config_validate_cross_field_rules);
    suite_add_tcase(s, tc);
    return s;
}
