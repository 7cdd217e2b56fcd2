/*
 * check_parse.c - the VW text and libsvm parsers, and ot_reader over memory,
 * files, gzip files and with its options.
 *
 * Expected hashes are computed here with ot_hash (MurmurHash3 x86_32)
 * following docs/formats.md, independently of the parser.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "tests.h"

/* ---- helpers ---------------------------------------------------------------- */

static uint32_t h(const char *s, uint32_t seed)
{
    return ot_hash(s, strlen(s), seed);
}

static ot_example *new_example(const char *hash)
{
    ot_config *cfg;
    ot_example *ex;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    if (hash != NULL)
        ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_HASH, hash), OT_OK);
    ck_assert_int_eq(ot_example_create(cfg, &ex), OT_OK);
    ot_config_destroy(cfg);
    return ex;
}

/* Parses a copy of the line in a buffer of exactly its length, so a read
 * past the end is caught by AddressSanitizer. */
static ot_status parse_n(ot_example *ex, const char *fmt, const char *line, size_t len)
{
    char *copy = malloc(len > 0 ? len : 1);
    ot_status st;

    ck_assert_ptr_nonnull(copy);
    memcpy(copy, line, len);
    st = ot_example_parse(ex, fmt, copy, len);
    free(copy);
    return st;
}

static ot_status parse(ot_example *ex, const char *fmt, const char *line)
{
    return parse_n(ex, fmt, line, strlen(line));
}

static void expect_feature(const ot_example *ex, size_t i, uint8_t ns, uint32_t hash, float value)
{
    uint8_t got_ns;
    uint32_t got_hash;
    float got_value;

    ck_assert_int_eq(ot_example_feature(ex, i, &got_ns, &got_hash, &got_value), OT_OK);
    ck_assert_msg(got_ns == ns, "feature %zu: ns '%c' want '%c'", i, got_ns, ns);
    ck_assert_msg(got_hash == hash, "feature %zu: hash %u want %u", i, got_hash, hash);
    ck_assert_msg(got_value == value, "feature %zu: value %.9g want %.9g", i, (double)got_value,
                  (double)value);
}

static void expect_tag(const ot_example *ex, const char *want)
{
    size_t len;
    const char *tag = ot_example_tag(ex, &len);

    ck_assert_uint_eq(len, strlen(want));
    ck_assert_int_eq(memcmp(tag, want, len), 0);
}

/* ---- VW: the forms of the input-format documentation ------------------------ */

START_TEST(test_parse_vw_documented_example)
{
    ot_example *ex = new_example(NULL);
    uint32_t m = h("MetricFeatures", 0), s = h("Says", 0), o = h("OtherFeatures", 0);

    ck_assert_int_eq(parse(ex, "vw",
                           "1 1.0 |MetricFeatures:3.28 height:1.5 length:2.0 |Says black with white "
                           "stripes |OtherFeatures NumberOfLegs:4.0 HasStripes"),
                     OT_OK);
    ck_assert_int_eq(ot_example_has_label(ex), 1);
    ck_assert_float_eq(ot_example_label(ex), 1.0f);
    ck_assert_float_eq(ot_example_weight(ex), 1.0f);
    expect_tag(ex, "");
    ck_assert_uint_eq(ot_example_num_features(ex), 8);
    expect_feature(ex, 0, 'M', h("height", m), 1.5f * 3.28f);
    expect_feature(ex, 1, 'M', h("length", m), 2.0f * 3.28f);
    expect_feature(ex, 2, 'S', h("black", s), 1.0f);
    expect_feature(ex, 3, 'S', h("with", s), 1.0f);
    expect_feature(ex, 4, 'S', h("white", s), 1.0f);
    expect_feature(ex, 5, 'S', h("stripes", s), 1.0f);
    expect_feature(ex, 6, 'O', h("NumberOfLegs", o), 4.0f);
    expect_feature(ex, 7, 'O', h("HasStripes", o), 1.0f);
    ck_assert_str_eq(ot_example_errmsg(ex), "");
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_vw_no_label)
{
    ot_example *ex = new_example(NULL);
    const char *lines[] = {"|a x", " |a x", "\t|a x"};
    size_t i;

    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(parse(ex, "vw", lines[i]), OT_OK);
        ck_assert_int_eq(ot_example_has_label(ex), 0);
        ck_assert_float_eq(ot_example_label(ex), 0.0f);
        ck_assert_float_eq(ot_example_weight(ex), 1.0f);
        ck_assert_uint_eq(ot_example_num_features(ex), 1);
        expect_feature(ex, 0, 'a', h("x", h("a", 0)), 1.0f);
    }
    /* An empty line is an empty, unlabelled example. */
    ck_assert_int_eq(parse(ex, "vw", ""), OT_OK);
    ck_assert_int_eq(ot_example_has_label(ex), 0);
    ck_assert_uint_eq(ot_example_num_features(ex), 0);
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_vw_label_only)
{
    ot_example *ex = new_example(NULL);

    ck_assert_int_eq(parse(ex, "vw", "1"), OT_OK);
    ck_assert_int_eq(ot_example_has_label(ex), 1);
    ck_assert_float_eq(ot_example_label(ex), 1.0f);
    ck_assert_uint_eq(ot_example_num_features(ex), 0);
    ck_assert_int_eq(parse(ex, "vw", "-1 |"), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), -1.0f);
    ck_assert_uint_eq(ot_example_num_features(ex), 0);
    ck_assert_int_eq(parse(ex, "vw", "0 | "), OT_OK);
    ck_assert_int_eq(ot_example_has_label(ex), 1);
    ck_assert_float_eq(ot_example_label(ex), 0.0f);
    /* Logistic labels are stored as given: -1/1 and 0/1 alike. */
    ck_assert_int_eq(parse(ex, "vw", "0 |a x"), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), 0.0f);
    ck_assert_int_eq(parse(ex, "vw", "-1 |a x"), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), -1.0f);
    ck_assert_int_eq(parse(ex, "vw", "3.25 |a x"), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), 3.25f);
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_vw_importance_and_initial)
{
    ot_example *ex = new_example(NULL);

    ck_assert_int_eq(parse(ex, "vw", "1 2.5 |a x"), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), 1.0f);
    ck_assert_float_eq(ot_example_weight(ex), 2.5f);
    expect_tag(ex, "");
    ck_assert_int_eq(parse(ex, "vw", "0 0 |a x"), OT_OK);
    ck_assert_float_eq(ot_example_weight(ex), 0.0f);
    /* The tutorial's "label importance initial 'tag" form. */
    ck_assert_int_eq(parse(ex, "vw", "0 1 0.5 'third_house | price:.53 sqft:.32 age:.87 1924"), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), 0.0f);
    ck_assert_float_eq(ot_example_weight(ex), 1.0f);
    expect_tag(ex, "third_house");
    ck_assert_uint_eq(ot_example_num_features(ex), 4);
    expect_feature(ex, 0, ' ', h("price", 0), 0.53f);
    expect_feature(ex, 1, ' ', h("sqft", 0), 0.32f);
    expect_feature(ex, 2, ' ', h("age", 0), 0.87f);
    expect_feature(ex, 3, ' ', 1924u, 1.0f);
    /* After a parse, the importance weight is back to 1 when absent. */
    ck_assert_int_eq(parse(ex, "vw", "1 |a x"), OT_OK);
    ck_assert_float_eq(ot_example_weight(ex), 1.0f);
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_vw_tags)
{
    ot_example *ex = new_example(NULL);

    /* A tag touching the '|'. */
    ck_assert_int_eq(parse(ex, "vw", "1 1.0 zebra|MetricFeatures:3.28 height:1.5"), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), 1.0f);
    ck_assert_float_eq(ot_example_weight(ex), 1.0f);
    expect_tag(ex, "zebra");
    ck_assert_uint_eq(ot_example_num_features(ex), 1);
    expect_feature(ex, 0, 'M', h("height", h("MetricFeatures", 0)), 1.5f * 3.28f);
    /* A quoted tag, separated from the '|'. */
    ck_assert_int_eq(parse(ex, "vw", "1 'zebra |a x"), OT_OK);
    ck_assert_int_eq(ot_example_has_label(ex), 1);
    ck_assert_float_eq(ot_example_weight(ex), 1.0f);
    expect_tag(ex, "zebra");
    ck_assert_int_eq(parse(ex, "vw", "-1 3 'house_7|a x"), OT_OK);
    ck_assert_float_eq(ot_example_weight(ex), 3.0f);
    expect_tag(ex, "house_7");
    /* A tag without a label. */
    ck_assert_int_eq(parse(ex, "vw", "'only_tag |a x"), OT_OK);
    ck_assert_int_eq(ot_example_has_label(ex), 0);
    expect_tag(ex, "only_tag");
    ck_assert_int_eq(parse(ex, "vw", "name|a x"), OT_OK);
    ck_assert_int_eq(ot_example_has_label(ex), 0);
    expect_tag(ex, "name");
    /* As in VW, a number touching the '|' is a tag, not a label. */
    ck_assert_int_eq(parse(ex, "vw", "1|a x"), OT_OK);
    ck_assert_int_eq(ot_example_has_label(ex), 0);
    expect_tag(ex, "1");
    /* A quoted tag with no features at all. */
    ck_assert_int_eq(parse(ex, "vw", "1 2 'alone"), OT_OK);
    ck_assert_float_eq(ot_example_weight(ex), 2.0f);
    expect_tag(ex, "alone");
    /* The next parse clears the tag. */
    ck_assert_int_eq(parse(ex, "vw", "1 |a x"), OT_OK);
    expect_tag(ex, "");
    ot_example_destroy(ex);
}
END_TEST


START_TEST(test_parse_vw_default_namespace)
{
    ot_example *ex = new_example(NULL);

    ck_assert_int_eq(parse(ex, "vw", "1 | a b:2 |x c"), OT_OK);
    ck_assert_uint_eq(ot_example_num_features(ex), 3);
    expect_feature(ex, 0, ' ', h("a", 0), 1.0f);
    expect_feature(ex, 1, ' ', h("b", 0), 2.0f);
    expect_feature(ex, 2, 'x', h("c", h("x", 0)), 1.0f);
    /* Back to the default namespace after a named one; "||e" holds an
     * empty default namespace and then an empty namespace "e". */
    ck_assert_int_eq(parse(ex, "vw", "|x c:3 | d ||e"), OT_OK);
    ck_assert_uint_eq(ot_example_num_features(ex), 2);
    expect_feature(ex, 0, 'x', h("c", h("x", 0)), 3.0f);
    expect_feature(ex, 1, ' ', h("d", 0), 1.0f);
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_vw_namespace_scale)
{
    ot_example *ex = new_example(NULL);
    uint32_t u = h("user", 0);

    ck_assert_int_eq(parse(ex, "vw", "1 |user:0.5 a:4 b c:-3 |v d:2"), OT_OK);
    ck_assert_uint_eq(ot_example_num_features(ex), 4);
    expect_feature(ex, 0, 'u', h("a", u), 2.0f);
    expect_feature(ex, 1, 'u', h("b", u), 0.5f);
    expect_feature(ex, 2, 'u', h("c", u), -1.5f);
    /* The scale holds for its namespace only. */
    expect_feature(ex, 3, 'v', h("d", h("v", 0)), 2.0f);
    ck_assert_int_eq(parse(ex, "vw", "1 |u:-2e-1 a:10"), OT_OK);
    expect_feature(ex, 0, 'u', h("a", h("u", 0)), 10.0f * -0.2f);
    /* A namespace scaled by 0 keeps none of its features. */
    ck_assert_int_eq(parse(ex, "vw", "1 |u:0 a b:3 |v c"), OT_OK);
    ck_assert_uint_eq(ot_example_num_features(ex), 1);
    expect_feature(ex, 0, 'v', h("c", h("v", 0)), 1.0f);
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_vw_feature_values)
{
    ot_example *ex = new_example(NULL);
    uint32_t a = h("a", 0);

    ck_assert_int_eq(parse(ex, "vw",
                           "|a p q:2 r:-1.5 s:1e3 t:-2.5E-3 u:.25 v:5. w:+7 x:0.1 y:1e-40 z:123456789012"),
                     OT_OK);
    ck_assert_uint_eq(ot_example_num_features(ex), 11);
    expect_feature(ex, 0, 'a', h("p", a), 1.0f);
    expect_feature(ex, 1, 'a', h("q", a), 2.0f);
    expect_feature(ex, 2, 'a', h("r", a), -1.5f);
    expect_feature(ex, 3, 'a', h("s", a), 1000.0f);
    expect_feature(ex, 4, 'a', h("t", a), -2.5e-3f);
    expect_feature(ex, 5, 'a', h("u", a), 0.25f);
    expect_feature(ex, 6, 'a', h("v", a), 5.0f);
    expect_feature(ex, 7, 'a', h("w", a), 7.0f);
    expect_feature(ex, 8, 'a', h("x", a), 0.1f);
    expect_feature(ex, 9, 'a', h("y", a), 1e-40f); /* a subnormal float */
    expect_feature(ex, 10, 'a', h("z", a), 123456789012.0f);
    /* A value of 0 leaves the feature out, as VW does; so does one that
     * rounds to 0. */
    ck_assert_int_eq(parse(ex, "vw", "|a p:0 q:-0.0 r:1e-60 s:0e5 t"), OT_OK);
    ck_assert_uint_eq(ot_example_num_features(ex), 1);
    expect_feature(ex, 0, 'a', h("t", a), 1.0f);
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_vw_whitespace)
{
    ot_example *ex = new_example(NULL);
    uint32_t a = h("a", 0);
    const char *lines[] = {
        "1 2 |a x y:3",
        "1   2\t \t|a   x\t\ty:3   ",
        "  1 2 |a x y:3\r",
        "1\t2\t|a\tx\ty:3\t\r",
    };
    size_t i;

    for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        ck_assert_msg(parse(ex, "vw", lines[i]) == OT_OK, "line %zu: %s", i, ot_example_errmsg(ex));
        ck_assert_float_eq(ot_example_label(ex), 1.0f);
        ck_assert_float_eq(ot_example_weight(ex), 2.0f);
        expect_tag(ex, "");
        ck_assert_uint_eq(ot_example_num_features(ex), 2);
        expect_feature(ex, 0, 'a', h("x", a), 1.0f);
        expect_feature(ex, 1, 'a', h("y", a), 3.0f);
    }
    /* A trailing '\r' on a line without features. */
    ck_assert_int_eq(parse(ex, "vw", "1\r"), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), 1.0f);
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_vw_numeric_names)
{
    ot_example *ex = new_example(NULL);
    uint32_t a = h("a", 0);

    /* Digit-only names map to their value plus the namespace hash. */
    ck_assert_int_eq(parse(ex, "vw", "1 |a 123 0042:2 12x | 7 |99 5"), OT_OK);
    ck_assert_uint_eq(ot_example_num_features(ex), 5);
    expect_feature(ex, 0, 'a', 123u + a, 1.0f);
    expect_feature(ex, 1, 'a', 42u + a, 2.0f);
    expect_feature(ex, 2, 'a', h("12x", a), 1.0f);
    expect_feature(ex, 3, ' ', 7u, 1.0f);
    /* A digit-only namespace name maps to its value too. */
    expect_feature(ex, 4, '9', 5u + 99u, 1.0f);
    /* Long digit strings wrap modulo 2^32, as VW's low bits do. */
    ck_assert_int_eq(parse(ex, "vw", "1 | 4294967301"), OT_OK);
    expect_feature(ex, 0, ' ', 5u, 1.0f);
    ot_example_destroy(ex);

    /* hash "all" hashes every name. */
    ex = new_example("all");
    ck_assert_int_eq(parse(ex, "vw", "1 |a 123 |99 5 | 7"), OT_OK);
    ck_assert_uint_eq(ot_example_num_features(ex), 3);
    expect_feature(ex, 0, 'a', h("123", a), 1.0f);
    expect_feature(ex, 1, '9', h("5", h("99", 0)), 1.0f);
    expect_feature(ex, 2, ' ', h("7", 0), 1.0f);
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_vw_string_values)
{
    ot_example *ex = new_example(NULL);
    uint32_t c = h("ctx", 0);

    /* name:word hashes the word seeded by the name's hash, with value 1
     * times the namespace scale. */
    ck_assert_int_eq(parse(ex, "vw", "1 |ctx city:paris day:mon2 |s:3 k:v"), OT_OK);
    ck_assert_uint_eq(ot_example_num_features(ex), 3);
    expect_feature(ex, 0, 'c', h("paris", h("city", c)), 1.0f);
    expect_feature(ex, 1, 'c', h("mon2", h("day", c)), 1.0f);
    expect_feature(ex, 2, 's', h("v", h("k", h("s", 0))), 3.0f);
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_vw_line_not_nul_terminated)
{
    ot_example *ex = new_example(NULL);
    const char text[] = "1 |a x:15 y";

    /* Only the first len bytes count: "x:1" then the line ends. */
    ck_assert_int_eq(ot_example_parse(ex, "vw", text, 8), OT_OK);
    ck_assert_uint_eq(ot_example_num_features(ex), 1);
    expect_feature(ex, 0, 'a', h("x", h("a", 0)), 1.0f);
    /* Cut right after the ':' it is an error, not the next byte's value. */
    ck_assert_int_eq(ot_example_parse(ex, "vw", text, 7), OT_EFORMAT);
    /* Cut inside the namespace name. */
    ck_assert_int_eq(ot_example_parse(ex, "vw", text, 3), OT_OK);
    ck_assert_uint_eq(ot_example_num_features(ex), 0);
    ck_assert_int_eq(ot_example_parse(ex, "vw", NULL, 0), OT_OK);
    ck_assert_int_eq(ot_example_parse(ex, "vw", NULL, 3), OT_EINVAL);
    ck_assert_int_eq(ot_example_parse(NULL, "vw", text, 3), OT_EINVAL);
    ot_example_destroy(ex);
}
END_TEST

/* Malformed lines and the column each error names. */
typedef struct bad_line {
    const char *line;
    size_t len; /* 0: strlen */
    size_t column;
} bad_line;

static const bad_line vw_bad[] = {
    {"x", 0, 1},                    /* a word where the label goes, no '|' */
    {"1 a b", 0, 3},                /* features without '|' */
    {"1 2 3 4 |a x", 0, 7},         /* four numbers before '|' */
    {"1 2 3 4 5 6|a x", 0, 9},      /* too many fields */
    {"abc |a x", 0, 1},             /* bad label */
    {"1x |a x", 0, 1},              /* garbage after the label's digits */
    {"1 2x |a x", 0, 3},            /* bad importance */
    {"1 -2 |a x", 0, 3},            /* negative importance */
    {"1 2 3x |a x", 0, 5},          /* bad initial prediction */
    {"nan |a x", 0, 1},
    {"inf |a x", 0, 1},
    {"-Infinity |a x", 0, 1},
    {"1e99999 |a x", 0, 1},         /* label beyond float */
    {"1 1e39 |a x", 0, 3},          /* importance beyond float */
    {"0x10 |a x", 0, 1},            /* no hexadecimal */
    {"1 |a x:", 0, 7},              /* ':' with no value */
    {"1 |a x: y", 0, 7},
    {"1 |a x:|b y", 0, 7},
    {"1 |a x:1.2.3", 0, 8},         /* bad numbers */
    {"1 |a x:--1", 0, 8},
    {"1 |a x:1e", 0, 8},
    {"1 |a x:1e+", 0, 8},
    {"1 |a x:.", 0, 8},
    {"1 |a x:-", 0, 8},
    {"1 |a x:1,5", 0, 8},
    {"1 |a x:0x1p3", 0, 8},
    {"1 |a x:nan", 0, 8},           /* non-finite values */
    {"1 |a x:NaN", 0, 8},
    {"1 |a x:inf", 0, 8},
    {"1 |a x:-inf", 0, 8},
    {"1 |a x:Infinity", 0, 8},
    {"1 |a x:nan(0x1)", 0, 8},
    {"1 |a x:1e99999", 0, 8},       /* out of range */
    {"1 |a x:3.5e38", 0, 8},
    {"1 |a x:-1e39", 0, 8},
    {"1 |a x:123456789012345678901234567890123456789012", 0, 8},
    {"1 |a :1", 0, 6},              /* empty feature name with a value */
    {"1 |a x:1:2", 0, 9},           /* second ':' */
    {"1 |a x:abc:1", 0, 11},
    {"1 |:2 x", 0, 4},              /* scale without a namespace name */
    {"1 |a: x", 0, 5},              /* namespace ':' with no value */
    {"1 |a:b x", 0, 6},             /* bad namespace scale */
    {"1 |a:nan x", 0, 6},
    {"1 |a:1:2 x", 0, 7},
    {"1 |a:1e99999 x", 0, 6},
    {"1 |a:1e30 x:1e30", 0, 13},    /* value times scale overflows */
    {"1 |a x:1\0", 9, 8},           /* a NUL inside a value */
    {"\x01 |a x", 0, 1},
};

START_TEST(test_parse_vw_malformed)
{
    ot_example *ex = new_example(NULL);
    size_t i;

    for (i = 0; i < sizeof(vw_bad) / sizeof(vw_bad[0]); i++) {
        const bad_line *b = &vw_bad[i];
        size_t len = b->len ? b->len : strlen(b->line);
        char want[32];
        ot_status st;

        /* Fill the example first: a failed parse must leave it empty. */
        ck_assert_int_eq(parse(ex, "vw", "2 3 'tag |a x y"), OT_OK);
        st = parse_n(ex, "vw", b->line, len);
        ck_assert_msg(st == OT_EFORMAT, "\"%s\": status %d", b->line, st);
        snprintf(want, sizeof(want), "column %zu: ", b->column);
        ck_assert_msg(strncmp(ot_example_errmsg(ex), want, strlen(want)) == 0, "\"%s\": message \"%s\", want \"%s\"",
                      b->line, ot_example_errmsg(ex), want);
        ck_assert_uint_eq(ot_example_num_features(ex), 0);
        ck_assert_int_eq(ot_example_has_label(ex), 0);
        expect_tag(ex, "");
    }
    /* Messages say what is wrong and quote the token. */
    ck_assert_int_eq(parse(ex, "vw", "1 |a x:1.2.3"), OT_EFORMAT);
    ck_assert_str_eq(ot_example_errmsg(ex), "column 8: bad value \"1.2.3\"");
    ck_assert_int_eq(parse(ex, "vw", "1 -2 |a x"), OT_EFORMAT);
    ck_assert_str_eq(ot_example_errmsg(ex), "column 3: negative importance \"-2\"");
    ck_assert_int_eq(parse(ex, "vw", "1 a b"), OT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(ot_example_errmsg(ex), "missing '|'"));
    ot_example_destroy(ex);
}
END_TEST

/* Values agree bit for bit with the C library's strtof (the test runs in
 * the "C" locale), over random decimal strings of many shapes. */
START_TEST(test_parse_numbers_match_strtof)
{
    ot_example *ex = new_example(NULL);
    static const char *fixed[] = {
        "0.1", "0.2", "0.3", "3.28", "1.5", "16777217", "16777219", "33554435",
        "1.000000059604644775390625",    /* exactly halfway between 1 and its successor */
        "1.0000000596046447753906250001",
        "1.00000005960464477539062499999",
        "3.4028234e38", "3.40282356779733661637539395458142568447e38", /* just below the overflow point */
        "1.17549435e-38", "1.4e-45", "7.0064923216240862e-46", "7.006492321624087e-46",
        "123456789.123456789", "9007199254740993", "0.000000000000000000000000000000123",
        "4.9406564584124654e-324", "2.2250738585072014e-308", "1e-38", "1e38", "1e22", "1e23",
        "8.589973e9", "8.589974e9", "0.0000001", "99999999999999999999999", ".5e1", "5.e-1",
    };
    unsigned seed = 12345;
    char line[128], num[96];
    size_t i;
    int k;

    for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]) + 200000; i++) {
        float want, got;
        char *end;
        ot_status st;

        if (i < sizeof(fixed) / sizeof(fixed[0])) {
            snprintf(num, sizeof(num), "%s", fixed[i]);
        } else {
            /* Random digits, a decimal point somewhere, maybe an exponent. */
            int nd = 1 + (int)(rand_r(&seed) % 24), dot = (int)(rand_r(&seed) % (unsigned)(nd + 1));
            size_t n = 0;
            if (rand_r(&seed) % 4 == 0)
                num[n++] = '-';
            for (k = 0; k < nd; k++) {
                if (k == dot && k > 0)
                    num[n++] = '.';
                num[n++] = (char)('0' + rand_r(&seed) % 10);
            }
            if (rand_r(&seed) % 2)
                n += (size_t)snprintf(num + n, sizeof(num) - n, "e%d", (int)(rand_r(&seed) % 90) - 50);
            num[n] = '\0';
        }
        errno = 0;
        want = strtof(num, &end);
        ck_assert(*end == '\0');
        snprintf(line, sizeof(line), "|a x:%s", num);
        st = parse(ex, "vw", line);
        if (isinf(want)) {
            ck_assert_msg(st == OT_EFORMAT, "%s: %d", num, st);
            continue;
        }
        ck_assert_msg(st == OT_OK, "%s: %s", num, ot_example_errmsg(ex));
        if (want == 0.0f) {
            ck_assert_uint_eq(ot_example_num_features(ex), 0);
            continue;
        }
        ck_assert_uint_eq(ot_example_num_features(ex), 1);
        ck_assert_int_eq(ot_example_feature(ex, 0, NULL, NULL, &got), OT_OK);
        ck_assert_msg(memcmp(&got, &want, sizeof(float)) == 0, "%s: got %.9g want %.9g", num, (double)got,
                      (double)want);
    }
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_add_feature_agrees)
{
    ot_example *parsed = new_example(NULL), *built = new_example(NULL);
    size_t i, n;

    ck_assert_int_eq(parse(parsed, "vw", "1 |user a b:2 123 |item:2 x:0.25 | y 7:3"), OT_OK);
    ck_assert_int_eq(ot_example_add_feature(built, "user", "a", 1.0f), OT_OK);
    ck_assert_int_eq(ot_example_add_feature(built, "user", "b", 2.0f), OT_OK);
    ck_assert_int_eq(ot_example_add_feature(built, "user", "123", 1.0f), OT_OK);
    ck_assert_int_eq(ot_example_add_feature(built, "item", "x", 0.5f), OT_OK);
    ck_assert_int_eq(ot_example_add_feature(built, NULL, "y", 1.0f), OT_OK);
    ck_assert_int_eq(ot_example_add_feature(built, "", "7", 3.0f), OT_OK);
    n = ot_example_num_features(parsed);
    ck_assert_uint_eq(n, 6);
    ck_assert_uint_eq(ot_example_num_features(built), n);
    for (i = 0; i < n; i++) {
        uint8_t ns1, ns2;
        uint32_t h1, h2;
        float v1, v2;
        ck_assert_int_eq(ot_example_feature(parsed, i, &ns1, &h1, &v1), OT_OK);
        ck_assert_int_eq(ot_example_feature(built, i, &ns2, &h2, &v2), OT_OK);
        ck_assert_uint_eq(ns1, ns2);
        ck_assert_uint_eq(h1, h2);
        ck_assert_float_eq(v1, v2);
    }
    /* Names the parser cannot produce are refused. */
    ck_assert_int_eq(ot_example_add_feature(built, "a", "", 1.0f), OT_EINVAL);
    ck_assert_int_eq(ot_example_add_feature(built, "a", NULL, 1.0f), OT_EINVAL);
    ck_assert_int_eq(ot_example_add_feature(built, "a", "x", NAN), OT_ENONFINITE);
    ot_example_destroy(parsed);
    ot_example_destroy(built);
}
END_TEST

/* ---- libsvm ------------------------------------------------------------------ */

START_TEST(test_parse_libsvm_forms)
{
    ot_example *ex = new_example(NULL);

    ck_assert_int_eq(parse(ex, "libsvm", "1 1:0.5 3:2 10:1e-3"), OT_OK);
    ck_assert_int_eq(ot_example_has_label(ex), 1);
    ck_assert_float_eq(ot_example_label(ex), 1.0f);
    ck_assert_uint_eq(ot_example_num_features(ex), 3);
    expect_feature(ex, 0, ' ', 1u, 0.5f);
    expect_feature(ex, 1, ' ', 3u, 2.0f);
    expect_feature(ex, 2, ' ', 10u, 1e-3f);
    /* qid is skipped, a trailing comment ignored, zeros left out, tabs and '\r' fine. */
    ck_assert_int_eq(parse(ex, "libsvm", "-1\tqid:17  0:4 2:0 4294967295:-2.5 # a comment 5:5\r"), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), -1.0f);
    ck_assert_uint_eq(ot_example_num_features(ex), 2);
    expect_feature(ex, 0, ' ', 0u, 4.0f);
    expect_feature(ex, 1, ' ', 4294967295u, -2.5f);
    ck_assert_int_eq(parse(ex, "libsvm", "+1"), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), 1.0f);
    ck_assert_uint_eq(ot_example_num_features(ex), 0);
    ck_assert_int_eq(parse(ex, "libsvm", "0.25 007:1"), OT_OK);
    expect_feature(ex, 0, ' ', 7u, 1.0f);
    ot_example_destroy(ex);

    /* The example's config chooses the format when none is given. */
    {
        ot_config *cfg;
        ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
        ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_FORMAT, "libsvm"), OT_OK);
        ck_assert_int_eq(ot_example_create(cfg, &ex), OT_OK);
        ot_config_destroy(cfg);
        ck_assert_int_eq(ot_example_parse(ex, NULL, "1 5:2", 5), OT_OK);
        expect_feature(ex, 0, ' ', 5u, 2.0f);
        ck_assert_int_eq(ot_example_parse(ex, "vw", "1 |a 5:2", 8), OT_OK);
        expect_feature(ex, 0, 'a', 5u + h("a", 0), 2.0f);
        ck_assert_int_eq(ot_example_parse(ex, "csv", "1", 1), OT_EINVAL);
        ot_example_destroy(ex);
    }
}
END_TEST

static const bad_line svm_bad[] = {
    {"", 0, 1},                      /* no label */
    {"   ", 0, 4},
    {"a 1:2", 0, 1},                 /* bad label */
    {"nan 1:2", 0, 1},
    {"1 1", 0, 3},                   /* no ':' */
    {"1 1:2 3", 0, 7},
    {"1 -1:2", 0, 3},                /* bad index */
    {"1 x:2", 0, 3},
    {"1 :2", 0, 3},
    {"1 4294967296:1", 0, 3},        /* index too large */
    {"1 1:", 0, 4},                  /* ':' with no value */
    {"1 1:x", 0, 5},                 /* bad value */
    {"1 1:inf", 0, 5},
    {"1 1:1e40", 0, 5},
    {"1 1:2:3", 0, 6},               /* second ':' */
    {"1 qid:x 1:2", 0, 7},           /* bad qid */
    {"1 qid: 1:2", 0, 6},
};

START_TEST(test_parse_libsvm_malformed)
{
    ot_example *ex = new_example(NULL);
    size_t i;

    for (i = 0; i < sizeof(svm_bad) / sizeof(svm_bad[0]); i++) {
        const bad_line *b = &svm_bad[i];
        char want[32];
        ot_status st = parse_n(ex, "libsvm", b->line, b->len ? b->len : strlen(b->line));

        ck_assert_msg(st == OT_EFORMAT, "\"%s\": status %d", b->line, st);
        snprintf(want, sizeof(want), "column %zu: ", b->column);
        ck_assert_msg(strncmp(ot_example_errmsg(ex), want, strlen(want)) == 0, "\"%s\": message \"%s\", want \"%s\"",
                      b->line, ot_example_errmsg(ex), want);
        ck_assert_uint_eq(ot_example_num_features(ex), 0);
    }
    ot_example_destroy(ex);
}
END_TEST

/* ---- the reader ---------------------------------------------------------------- */

static ot_config *reader_config(const char *format, const char *on_error, int64_t max_line)
{
    ot_config *cfg;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    if (format != NULL)
        ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_FORMAT, format), OT_OK);
    if (on_error != NULL)
        ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_ON_ERROR, on_error), OT_OK);
    if (max_line > 0)
        ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_LINE, max_line), OT_OK);
    return cfg;
}

static ot_reader *open_text(const ot_config *cfg, const char *text)
{
    ot_reader *r;

    ck_assert_int_eq(ot_reader_open_memory(cfg, text, strlen(text), &r), OT_OK);
    return r;
}

START_TEST(test_parse_reader_memory)
{
    static const char text[] =
        "\xef\xbb\xbf" "1 |a x\n"     /* a UTF-8 byte-order mark on line 1 */
        "\n"
        "# a comment\n"
        "   \t\r\n"
        "-1 2 'b |a y:2\r\n"
        "|a z";                       /* no newline at the end */
    ot_example *ex = new_example(NULL);
    ot_reader *r = open_text(NULL, text);
    uint32_t a = h("a", 0);

    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_uint_eq(ot_reader_line(r), 1);
    ck_assert_float_eq(ot_example_label(ex), 1.0f);
    expect_feature(ex, 0, 'a', h("x", a), 1.0f);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_uint_eq(ot_reader_line(r), 5);
    ck_assert_float_eq(ot_example_label(ex), -1.0f);
    ck_assert_float_eq(ot_example_weight(ex), 2.0f);
    expect_tag(ex, "b");
    expect_feature(ex, 0, 'a', h("y", a), 2.0f);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_uint_eq(ot_reader_line(r), 6);
    ck_assert_int_eq(ot_example_has_label(ex), 0);
    expect_feature(ex, 0, 'a', h("z", a), 1.0f);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_EEOF);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_EEOF);
    ck_assert_uint_eq(ot_reader_skipped(r), 0);
    ck_assert_str_eq(ot_reader_errmsg(r), "");
    ot_reader_close(r);

    /* Empty input, and a copy: the caller's bytes may change afterwards. */
    ck_assert_int_eq(ot_reader_open_memory(NULL, NULL, 0, &r), OT_OK);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_EEOF);
    ot_reader_close(r);
    {
        char buf[] = "1 |a x\n";
        ck_assert_int_eq(ot_reader_open_memory(NULL, buf, strlen(buf), &r), OT_OK);
        buf[0] = 'X';
        ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
        ck_assert_float_eq(ot_example_label(ex), 1.0f);
        ot_reader_close(r);
    }
    /* Argument checks and NULL-safety. */
    ck_assert_int_eq(ot_reader_open_memory(NULL, NULL, 5, &r), OT_EINVAL);
    ck_assert_int_eq(ot_reader_open_memory(NULL, "x", 1, NULL), OT_EINVAL);
    ck_assert_int_eq(ot_reader_next(NULL, ex), OT_EINVAL);
    ot_reader_close(NULL);
    ck_assert_str_eq(ot_reader_errmsg(NULL), "");
    ck_assert_uint_eq(ot_reader_line(NULL), 0);
    ck_assert_uint_eq(ot_reader_skipped(NULL), 0);
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_reader_stop_and_skip)
{
    static const char text[] =
        "1 |a x\n"
        "1 |a x:\n"        /* line 2: bad, column 7 */
        "0 |a y\n"
        "# comment\n"
        "abc |a z\n"       /* line 5: bad, column 1 */
        "1 |a w\n";
    ot_example *ex = new_example(NULL);
    ot_config *cfg = reader_config(NULL, NULL, 0);
    ot_reader *r = open_text(cfg, text);

    /* stop (the default): the error is returned, the next call goes on. */
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_EFORMAT);
    ck_assert_uint_eq(ot_reader_line(r), 2);
    ck_assert_str_eq(ot_reader_errmsg(r), "line 2, column 7: ':' with no value");
    ck_assert_uint_eq(ot_example_num_features(ex), 0);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_uint_eq(ot_reader_line(r), 3);
    ck_assert_float_eq(ot_example_label(ex), 0.0f);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_EFORMAT);
    ck_assert_uint_eq(ot_reader_line(r), 5);
    ck_assert_int_eq(strncmp(ot_reader_errmsg(r), "line 5, column 1: ", 18), 0);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_uint_eq(ot_reader_line(r), 6);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_EEOF);
    ck_assert_uint_eq(ot_reader_skipped(r), 0);
    ot_reader_close(r);
    ot_config_destroy(cfg);

    /* skip: bad lines are counted and passed over. */
    cfg = reader_config(NULL, "skip", 0);
    r = open_text(cfg, text);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_uint_eq(ot_reader_line(r), 1);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_uint_eq(ot_reader_line(r), 3);
    ck_assert_uint_eq(ot_reader_skipped(r), 1);
    ck_assert_str_eq(ot_reader_errmsg(r), "line 2, column 7: ':' with no value");
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_uint_eq(ot_reader_line(r), 6);
    ck_assert_uint_eq(ot_reader_skipped(r), 2);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_EEOF);
    ck_assert_uint_eq(ot_reader_skipped(r), 2);
    ot_reader_close(r);
    ot_config_destroy(cfg);
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_parse_reader_options)
{
    ot_example *ex = new_example(NULL); /* hash "strings", format "vw" */
    ot_config *cfg = reader_config("libsvm", NULL, 0);
    ot_reader *r = open_text(cfg, "1 3:2 qid:4\n-1 7:1\n");

    /* The reader's format wins over the example's. */
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    expect_feature(ex, 0, ' ', 3u, 2.0f);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), -1.0f);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_EEOF);
    ot_reader_close(r);
    ot_config_destroy(cfg);

    /* And its hash option; the example keeps its own afterwards. */
    cfg = reader_config(NULL, NULL, 0);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_HASH, "all"), OT_OK);
    r = open_text(cfg, "1 |a 12\n");
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    expect_feature(ex, 0, 'a', h("12", h("a", 0)), 1.0f);
    ck_assert_int_eq(parse(ex, "vw", "1 |a 12"), OT_OK);
    expect_feature(ex, 0, 'a', 12u + h("a", 0), 1.0f);
    ot_reader_close(r);
    ot_config_destroy(cfg);
    ot_example_destroy(ex);
}
END_TEST

/* A line of `n` bytes (no newline): "1 |a " and then x's. */
static char *long_line(size_t n)
{
    char *s = malloc(n + 1);

    ck_assert_ptr_nonnull(s);
    memset(s, 'x', n);
    memcpy(s, "1 |a ", 5);
    s[n] = '\0';
    return s;
}

static void check_max_line(ot_reader *r, ot_example *ex, int skip)
{
    if (skip) {
        /* lines: ok, too long (skipped), exactly max_line, too long (last) */
        ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
        ck_assert_uint_eq(ot_reader_line(r), 1);
        ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
        ck_assert_uint_eq(ot_reader_line(r), 3);
        ck_assert_uint_eq(ot_example_num_features(ex), 1);
        ck_assert_int_eq(ot_reader_next(r, ex), OT_EEOF);
        ck_assert_uint_eq(ot_reader_line(r), 4);
        ck_assert_uint_eq(ot_reader_skipped(r), 2);
        return;
    }
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_EFORMAT);
    ck_assert_uint_eq(ot_reader_line(r), 2);
    ck_assert_str_eq(ot_reader_errmsg(r), "line 2, column 65: line longer than max_line (64 bytes)");
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_uint_eq(ot_reader_line(r), 3);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_EFORMAT);
    ck_assert_uint_eq(ot_reader_line(r), 4);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_EEOF);
    ck_assert_uint_eq(ot_reader_skipped(r), 0);
}

static char *temp_dir(void)
{
    const char *base = getenv("TMPDIR");
    char *dir = malloc(4096);

    ck_assert_ptr_nonnull(dir);
    snprintf(dir, 4096, "%s/ot_parse_XXXXXX", base != NULL && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    return dir;
}

static char *temp_file(const char *text, size_t len)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    int fd;

    ck_assert_ptr_nonnull(path);
    snprintf(path, 4096, "%s/ot_parse_XXXXXX", base != NULL && *base ? base : "/tmp");
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
    ck_assert_int_eq(close(fd), 0);
    return path;
}

START_TEST(test_parse_reader_max_line)
{
    char *over = long_line(65), *exact = long_line(64), *huge = long_line(100000);
    char *text = malloc(200000);
    ot_example *ex = new_example(NULL);
    int skip;

    ck_assert_ptr_nonnull(text);
    snprintf(text, 200000, "1 |a x\n%s\n%s\n%s", over, exact, huge);
    for (skip = 0; skip <= 1; skip++) {
        ot_config *cfg = reader_config(NULL, skip ? "skip" : NULL, 64);
        ot_reader *r;
        char *path;

        /* From memory. */
        r = open_text(cfg, text);
        check_max_line(r, ex, skip);
        ot_reader_close(r);
        /* From a file, where the long line spans several reads. */
        path = temp_file(text, strlen(text));
        ck_assert_int_eq(ot_reader_open_file(cfg, path, &r), OT_OK);
        check_max_line(r, ex, skip);
        ot_reader_close(r);
        unlink(path);
        free(path);
        ot_config_destroy(cfg);
    }
    free(over);
    free(exact);
    free(huge);
    free(text);
    ot_example_destroy(ex);
}
END_TEST

/* A data set of `n` lines; features and tags vary in count and length, and
 * the largest appear in the first 100 lines. */
static char *make_data(size_t n, size_t *len)
{
    size_t cap = n * 200 + 1, used = 0, i;
    char *s = malloc(cap);
    unsigned seed = 7;

    ck_assert_ptr_nonnull(s);
    for (i = 0; i < n; i++) {
        size_t nf = i < 20 ? 20 : 1 + rand_r(&seed) % 20, j;
        used += (size_t)snprintf(s + used, cap - used, "%d %s'%.*s |u", (int)(i % 2), i % 3 ? "1.5 " : "",
                                 (int)(i < 20 ? 10 : rand_r(&seed) % 10), "tagtagtagtag");
        for (j = 0; j < nf; j++)
            used += (size_t)snprintf(s + used, cap - used, " f%u:%zu.5", rand_r(&seed) % 1000, j);
        s[used++] = '\n';
    }
    s[used] = '\0';
    *len = used;
    return s;
}

/* Reads everything, returning the count and a checksum of what was read. */
static size_t read_all(ot_reader *r, ot_example *ex, uint64_t *sum)
{
    size_t n = 0, i;
    ot_status st;

    *sum = 0;
    while ((st = ot_reader_next(r, ex)) == OT_OK) {
        n++;
        *sum = *sum * 31 + (uint64_t)(ot_example_label(ex) * 2 + ot_example_weight(ex) * 4);
        for (i = 0; i < ot_example_num_features(ex); i++) {
            uint32_t hh;
            float v;
            ot_example_feature(ex, i, NULL, &hh, &v);
            *sum = *sum * 31 + hh + (uint64_t)(v * 2);
        }
    }
    ck_assert_int_eq(st, OT_EEOF);
    return n;
}

START_TEST(test_parse_reader_file_and_gzip)
{
    size_t len, n;
    char *data = make_data(15000, &len); /* well over the 1 MiB buffer */
    char *path = temp_file(data, len), *dir = temp_dir(), gzpath[4200];
    ot_example *ex = new_example(NULL);
    ot_reader *r;
    uint64_t want, got;
    gzFile gz;

    ck_assert_uint_gt(len, (size_t)1 << 20);
    ck_assert_int_eq(ot_reader_open_memory(NULL, data, len, &r), OT_OK);
    ck_assert_uint_eq(read_all(r, ex, &want), 15000);
    ot_reader_close(r);

    ck_assert_int_eq(ot_reader_open_file(NULL, path, &r), OT_OK);
    ck_assert_uint_eq(read_all(r, ex, &got), 15000);
    ck_assert_uint_eq(got, want);
    ck_assert_uint_eq(ot_reader_line(r), 15000);
    ot_reader_close(r);

    /* Gzip, written here with zlib in two members (as `cat a.gz b.gz`). */
    snprintf(gzpath, sizeof(gzpath), "%s/data.gz", dir);
    gz = gzopen(gzpath, "wb");
    ck_assert_ptr_nonnull(gz);
    ck_assert_int_eq(gzwrite(gz, data, (unsigned)(len / 2)), (int)(len / 2));
    ck_assert_int_eq(gzclose(gz), Z_OK);
    gz = gzopen(gzpath, "ab");
    ck_assert_ptr_nonnull(gz);
    ck_assert_int_eq(gzwrite(gz, data + len / 2, (unsigned)(len - len / 2)), (int)(len - len / 2));
    ck_assert_int_eq(gzclose(gz), Z_OK);
    ck_assert_int_eq(ot_reader_open_file(NULL, gzpath, &r), OT_OK);
    ck_assert_uint_eq(read_all(r, ex, &got), 15000);
    ck_assert_uint_eq(got, want);
    ot_reader_close(r);

    /* A truncated gzip file: the lines before the cut, then OT_ECORRUPT. */
    {
        FILE *f = fopen(gzpath, "r+b");
        long size;
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
        size = ftell(f);
        fclose(f);
        ck_assert_int_eq(truncate(gzpath, size / 4), 0);
        ck_assert_int_eq(ot_reader_open_file(NULL, gzpath, &r), OT_OK);
        n = 0;
        while (ot_reader_next(r, ex) == OT_OK)
            n++;
        ck_assert_uint_gt(n, 0);
        ck_assert_uint_lt(n, 15000);
        ck_assert_int_eq(ot_reader_next(r, ex), OT_ECORRUPT);
        ck_assert_ptr_nonnull(strstr(ot_reader_errmsg(r), "truncated gzip"));
        ot_reader_close(r);
    }
    /* Not gzip at all, and an empty .gz file (an empty input). */
    {
        char *junk = temp_file("1 |a x\n", 7);
        char junkgz[4200];
        snprintf(junkgz, sizeof(junkgz), "%s/junk.gz", dir);
        ck_assert_int_eq(rename(junk, junkgz), 0);
        ck_assert_int_eq(ot_reader_open_file(NULL, junkgz, &r), OT_OK);
        ck_assert_int_eq(ot_reader_next(r, ex), OT_ECORRUPT);
        ot_reader_close(r);
        ck_assert_int_eq(truncate(junkgz, 0), 0);
        ck_assert_int_eq(ot_reader_open_file(NULL, junkgz, &r), OT_OK);
        ck_assert_int_eq(ot_reader_next(r, ex), OT_EEOF);
        ot_reader_close(r);
        unlink(junkgz);
        free(junk);
    }
    /* Files that cannot be opened. */
    {
        char missing[4200];
        snprintf(missing, sizeof(missing), "%s/missing.txt", dir);
        r = NULL;
        ck_assert_int_eq(ot_reader_open_file(NULL, missing, &r), OT_ENOENT);
        ck_assert_ptr_null(r);
        ck_assert_int_eq(ot_reader_open_file(NULL, dir, &r), OT_EIO);
        ck_assert_int_eq(ot_reader_open_file(NULL, NULL, &r), OT_EINVAL);
        ck_assert_int_eq(ot_reader_open_file(NULL, "", &r), OT_EINVAL);
    }
    unlink(gzpath);
    rmdir(dir);
    unlink(path);
    free(dir);
    free(path);
    free(data);
    ot_example_destroy(ex);
}
END_TEST

/* "-" reads standard input (here a file put in its place), and closing the
 * reader leaves standard input open. */
START_TEST(test_parse_reader_stdin)
{
    char *path = temp_file("1 |a x\n\n0 |a y\n", 15);
    int saved = dup(STDIN_FILENO), fd = open(path, O_RDONLY);
    ot_example *ex = new_example(NULL);
    ot_reader *r;

    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dup2(fd, STDIN_FILENO), STDIN_FILENO);
    close(fd);
    ck_assert_int_eq(ot_reader_open_file(NULL, "-", &r), OT_OK);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), 1.0f);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
    ck_assert_float_eq(ot_example_label(ex), 0.0f);
    ck_assert_uint_eq(ot_reader_line(r), 3);
    ck_assert_int_eq(ot_reader_next(r, ex), OT_EEOF);
    ot_reader_close(r);
    ck_assert_int_ne(fcntl(STDIN_FILENO, F_GETFD), -1);
    ck_assert_int_eq(dup2(saved, STDIN_FILENO), STDIN_FILENO);
    close(saved);
    unlink(path);
    free(path);
    ot_example_destroy(ex);
}
END_TEST

/* A counting allocator with sized frees. */
typedef struct counting {
    long allocs, frees, reallocs, bad_sizes;
} counting;

static void *count_alloc(void *user, void *ptr, size_t old_size, size_t new_size)
{
    counting *c = user;
    size_t *p;

    if (ptr != NULL && ((size_t *)ptr)[-2] != old_size)
        c->bad_sizes++;
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
    else
        c->reallocs++;
    p[0] = new_size;
    return p + 2;
}

/* After a warm-up, reading allocates nothing: memory, file and gzip readers. */
START_TEST(test_parse_reader_steady_state_allocates_nothing)
{
    size_t len;
    char *data = make_data(30000, &len);
    char *path = temp_file(data, len), *dir = temp_dir(), gzpath[4200];
    counting c = {0, 0, 0, 0};
    ot_config *cfg;
    int src;
    gzFile gz;

    snprintf(gzpath, sizeof(gzpath), "%s/data.gz", dir);
    gz = gzopen(gzpath, "wb");
    ck_assert_ptr_nonnull(gz);
    ck_assert_int_eq(gzwrite(gz, data, (unsigned)len), (int)len);
    ck_assert_int_eq(gzclose(gz), Z_OK);

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    ck_assert_int_eq(ot_config_set_allocator(cfg, count_alloc, &c), OT_OK);
    for (src = 0; src < 3; src++) {
        ot_example *ex;
        ot_reader *r;
        long before;
        size_t n = 0;

        ck_assert_int_eq(ot_example_create(cfg, &ex), OT_OK);
        if (src == 0)
            ck_assert_int_eq(ot_reader_open_memory(cfg, data, len, &r), OT_OK);
        else
            ck_assert_int_eq(ot_reader_open_file(cfg, src == 1 ? path : gzpath, &r), OT_OK);
        for (; n < 100; n++)
            ck_assert_int_eq(ot_reader_next(r, ex), OT_OK);
        before = c.allocs + c.reallocs;
        while (ot_reader_next(r, ex) == OT_OK)
            n++;
        ck_assert_uint_eq(n, 30000);
        ck_assert_int_eq(c.allocs + c.reallocs, before);
        ot_reader_close(r);
        ot_example_destroy(ex);
    }
    ot_config_destroy(cfg);
    ck_assert_int_gt(c.allocs, 5);
    ck_assert_int_eq(c.allocs, c.frees);
    ck_assert_int_eq(c.bad_sizes, 0);
    unlink(gzpath);
    rmdir(dir);
    unlink(path);
    free(dir);
    free(path);
    free(data);
}
END_TEST

Suite *suite_parse(void)
{
    Suite *s = suite_create("parse");
    TCase *tc = tcase_create("parse");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_parse_vw_documented_example);
    tcase_add_test(tc, test_parse_vw_no_label);
    tcase_add_test(tc, test_parse_vw_label_only);
    tcase_add_test(tc, test_parse_vw_importance_and_initial);
    tcase_add_test(tc, test_parse_vw_tags);
    tcase_add_test(tc, test_parse_vw_default_namespace);
    tcase_add_test(tc, test_parse_vw_namespace_scale);
    tcase_add_test(tc, test_parse_vw_feature_values);
    tcase_add_test(tc, test_parse_vw_whitespace);
    tcase_add_test(tc, test_parse_vw_numeric_names);
    tcase_add_test(tc, test_parse_vw_string_values);
    tcase_add_test(tc, test_parse_vw_line_not_nul_terminated);
    tcase_add_test(tc, test_parse_vw_malformed);
    tcase_add_test(tc, test_parse_numbers_match_strtof);
    tcase_add_test(tc, test_parse_add_feature_agrees);
    tcase_add_test(tc, test_parse_libsvm_forms);
    tcase_add_test(tc, test_parse_libsvm_malformed);
    tcase_add_test(tc, test_parse_reader_memory);
    tcase_add_test(tc, test_parse_reader_stop_and_skip);
    tcase_add_test(tc, test_parse_reader_options);
    tcase_add_test(tc, test_parse_reader_max_line);
    tcase_add_test(tc, test_parse_reader_file_and_gzip);
    tcase_add_test(tc, test_parse_reader_stdin);
    tcase_add_test(tc, test_parse_reader_steady_state_allocates_nothing);
    suite_add_tcase(s, tc);
    return s;
}
