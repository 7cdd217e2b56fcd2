/*
 * check_core.c - status codes, versions, buffers and the allocator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tests.h"

START_TEST(test_core_status_names_and_messages)
{
    int s;

    for (s = OT_OK; s <= OT_ETOOBIG; s++) {
        const char *n = ot_status_name(s);
        ck_assert_ptr_nonnull(n);
        ck_assert_str_ne(n, "OT_UNKNOWN");
        ck_assert_int_eq(strncmp(n, "OT_", 3), 0);
        ck_assert_str_ne(ot_strerror(s), "unknown status");
    }
    ck_assert_str_eq(ot_status_name(OT_EINVAL), "OT_EINVAL");
    ck_assert_str_eq(ot_status_name(OT_ETOOBIG), "OT_ETOOBIG");
}
END_TEST

START_TEST(test_core_unknown_status_is_constant)
{
    const int bad[] = {-1, -1000, OT_ETOOBIG + 1, 999, 0x7fffffff};
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_str_eq(ot_strerror(bad[i]), "unknown status");
        ck_assert_str_eq(ot_status_name(bad[i]), "OT_UNKNOWN");
        ck_assert_ptr_eq(ot_strerror(bad[i]), ot_strerror(-1));
    }
}
END_TEST

START_TEST(test_core_version)
{
    char want[32];

    ck_assert_uint_eq(ot_version(), OT_VERSION_NUMBER);
    snprintf(want, sizeof(want), "%d.%d.%d", OT_VERSION_MAJOR, OT_VERSION_MINOR, OT_VERSION_PATCH);
    ck_assert_str_eq(ot_version_string(), want);
    ck_assert_str_eq(OT_VERSION_STRING, want);
    ck_assert_ptr_nonnull(strstr(ot_build_info(), want));
    ck_assert_ptr_nonnull(strstr(ot_build_info(), "nng 1."));
    ck_assert_ptr_nonnull(strstr(ot_build_info(), "blas "));
}
END_TEST

START_TEST(test_core_buf)
{
    oti_alloc a = {NULL, NULL};
    ot_buf *b = oti_buf_new(&a, 5);

    ck_assert_ptr_nonnull(b);
    memcpy(oti_buf_mut(b), "hello", 5);
    ck_assert_uint_eq(ot_buf_size(b), 5);
    ck_assert_int_eq(memcmp(ot_buf_data(b), "hello", 5), 0);
    ot_buf_release(b);
    ot_buf_release(NULL);
    ck_assert_ptr_null(ot_buf_data(NULL));
    ck_assert_uint_eq(ot_buf_size(NULL), 0);
}
END_TEST

/* A counting allocator that checks every free gives back the size it got. */
typedef struct counting {
    long allocs, frees, live_bytes, bad_sizes;
} counting;

static void *count_alloc(void *user, void *ptr, size_t old_size, size_t new_size)
{
    counting *c = user;
    size_t *p;

    if (ptr != NULL) {
        p = (size_t *)ptr - 2;
        if (p[0] != old_size)
            c->bad_sizes++;
        c->live_bytes -= (long)old_size;
    }
    if (new_size == 0) {
        c->frees++;
        free((size_t *)ptr - 2);
        return NULL;
    }
    p = realloc(ptr != NULL ? (size_t *)ptr - 2 : NULL, new_size + 2 * sizeof(size_t));
    if (p == NULL)
        return NULL;
    if (ptr == NULL)
        c->allocs++;
    p[0] = new_size;
    c->live_bytes += (long)new_size;
    return p + 2;
}

START_TEST(test_core_allocator_sized_free)
{
    counting c = {0, 0, 0, 0};
    ot_config *cfg;
    ot_example *ex;
    int i;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    ck_assert_int_eq(ot_config_set_allocator(cfg, count_alloc, &c), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_QUADRATIC, "ab"), OT_OK);
    ck_assert_int_eq(ot_config_set_allocator(cfg, NULL, NULL), OT_ESTATE);
    ck_assert_int_eq(ot_example_create(cfg, &ex), OT_OK);
    for (i = 0; i < 1000; i++)
        ck_assert_int_eq(ot_example_add_hashed(ex, 'a', (uint32_t)i, 1.0f), OT_OK);
    ck_assert_int_eq(ot_example_set_tag(ex, "tag", 3), OT_OK);
    ck_assert_int_gt(c.allocs, 2);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
    ck_assert_int_eq(c.allocs, c.frees);
    ck_assert_int_eq(c.live_bytes, 0);
    ck_assert_int_eq(c.bad_sizes, 0);
}
END_TEST

START_TEST(test_core_murmur3_vectors)
{
    /* Published MurmurHash3_x86_32 test vectors. */
    ck_assert_uint_eq(ot_hash("", 0, 0), 0u);
    ck_assert_uint_eq(ot_hash("", 0, 1), 0x514E28B7u);
    ck_assert_uint_eq(ot_hash("", 0, 0xffffffffu), 0x81F16F39u);
    ck_assert_uint_eq(ot_hash("\xff\xff\xff\xff", 4, 0), 0x76293B50u);
    ck_assert_uint_eq(ot_hash("!Ce\x87", 4, 0), 0xF55B516Bu);
    ck_assert_uint_eq(ot_hash("!Ce\x87", 4, 0x5082EDEEu), 0x2362F9DEu);
    ck_assert_uint_eq(ot_hash("!Ce", 3, 0), 0x7E4A8634u);
    ck_assert_uint_eq(ot_hash("!C", 2, 0), 0xA0F7B07Au);
    ck_assert_uint_eq(ot_hash("!", 1, 0), 0x72661CF4u);
    ck_assert_uint_eq(ot_hash("Hello, world!", 13, 1234), 0xFAF6CDB3u);
    ck_assert_uint_eq(ot_hash(NULL, 5, 0), 0u);
}
END_TEST

START_TEST(test_core_crc32c_vectors)
{
    static const char digits[] = "123456789";
    uint8_t zeros[32], big[1000];
    size_t i;

    memset(zeros, 0, sizeof(zeros));
    ck_assert_uint_eq(oti_crc32c(0, digits, 9), 0xE3069283u);
    ck_assert_uint_eq(oti_crc32c(0, zeros, 32), 0x8A9136AAu); /* RFC 3720 */
    for (i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7 + 3);
    /* Incremental equals one shot, at every split. */
    for (i = 0; i <= sizeof(big); i += 37)
        ck_assert_uint_eq(oti_crc32c(oti_crc32c(0, big, i), big + i, sizeof(big) - i),
                          oti_crc32c(0, big, sizeof(big)));
}
END_TEST

Suite *suite_core(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_core_status_names_and_messages);
    tcase_add_test(tc, test_core_unknown_status_is_constant);
    tcase_add_test(tc, test_core_version);
    tcase_add_test(tc, test_core_buf);
    tcase_add_test(tc, test_core_allocator_sized_free);
    tcase_add_test(tc, test_core_murmur3_vectors);
    tcase_add_test(tc, test_core_crc32c_vectors);
    suite_add_tcase(s, tc);
    return s;
}
