/*
 * check_serve.c - prediction serving over request/reply
 * (ot_predict_server_start, ot_predict_client_*): scores equal in-process
 * predictions, both request forms, and malformed requests get error replies.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "delta.h"
#include "predict_wire.h"
#include "tests.h"
#include "transport.h"

static ot_config *serve_cfg(void)
{
    ot_config *c = NULL;

    ck_assert_int_eq(ot_config_create(&c), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_BITS, 12), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_RT_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_FULL_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_SYNC_EVERY_EXAMPLES, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_SYNC_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_TIMEOUT_MS, 5000), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_MAX_PREDICT_BATCH, 8), OT_OK);
    return c;
}

static const char *lines[] = {"1 |a x y z", "-1 |a p q |b r:2.5", "|a x q"};

typedef struct fixture {
    ot_config *cfg;
    ot_param_server *ps;
    ot_trainer *tr;
    ot_predictor *pred;
    ot_predict_server *srv;
} fixture;

static void setup_all(fixture *f)
{
    char url[128], purl[128], surl[128];
    ot_example *ex = NULL;
    int i;

    memset(f, 0, sizeof(*f));
    f->cfg = serve_cfg();
    snprintf(url, sizeof(url), "inproc://ot-serve-%ld-ps", (long)getpid());
    snprintf(purl, sizeof(purl), "inproc://ot-serve-%ld-pub", (long)getpid());
    snprintf(surl, sizeof(surl), "inproc://ot-serve-%ld-srv", (long)getpid());
    ck_assert_int_eq(ot_param_server_create(f->cfg, &f->ps), OT_OK);
    ck_assert_int_eq(ot_param_server_listen(f->ps, url, purl), OT_OK);
    ck_assert_int_eq(ot_param_server_start(f->ps), OT_OK);
    ck_assert_int_eq(ot_trainer_create(f->cfg, &f->tr), OT_OK);
    ck_assert_int_eq(ot_trainer_connect(f->tr, url), OT_OK);
    ck_assert_int_eq(ot_example_create(f->cfg, &ex), OT_OK);
    for (i = 0; i < 30; i++) {
        const char *l = lines[i % 2];
        ck_assert_int_eq(ot_example_parse(ex, "vw", l, strlen(l)), OT_OK);
        ck_assert_int_eq(ot_trainer_learn(f->tr, ex, NULL), OT_OK);
    }
    ot_example_destroy(ex);
    ck_assert_int_eq(ot_trainer_sync(f->tr), OT_OK);
    ck_assert_int_eq(ot_predictor_create(f->cfg, &f->pred), OT_OK);
    ck_assert_int_eq(ot_predictor_subscribe(f->pred, purl, url), OT_OK);
    ck_assert_uint_eq(ot_predictor_version(f->pred), 1);
    ck_assert_int_eq(ot_predict_server_start(f->pred, f->cfg, surl, &f->srv), OT_OK);
}

static void teardown_all(fixture *f)
{
    ot_predict_server_destroy(f->srv);
    ot_predictor_destroy(f->pred);
    ot_trainer_destroy(f->tr);
    ot_param_server_destroy(f->ps);
    ot_config_destroy(f->cfg);
}

START_TEST(test_serve_text_and_binary_match_in_process)
{
    fixture f;
    ot_predict_client *c = NULL;
    ot_example *ex[3];
    float want[3], got[3] = {0}, got2[3] = {0};
    char text[256];
    size_t n = 0;
    uint64_t v = 0;
    int i;

    setup_all(&f);
    snprintf(text, sizeof(text), "%s\n%s\n%s\n", lines[0], lines[1], lines[2]);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(ot_example_create(f.cfg, &ex[i]), OT_OK);
        ck_assert_int_eq(ot_example_parse(ex[i], "vw", lines[i], strlen(lines[i])), OT_OK);
        ck_assert_int_eq(ot_predictor_predict(f.pred, ex[i], &want[i]), OT_OK);
    }
    ck_assert_int_eq(ot_predict_client_create(f.cfg, ot_predict_server_url(f.srv), &c), OT_OK);
    ck_assert_int_eq(ot_predict_client_predict_text(c, text, strlen(text), got, 3, &n, &v), OT_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(v, 1);
    ck_assert_int_eq(memcmp(got, want, sizeof(want)), 0);
    ck_assert_float_ne(want[0], want[1]); /* a trained model, not a constant */
    ck_assert_int_eq(ot_predict_client_predict(c, (const ot_example *const *)ex, 3, got2, &v),
                     OT_OK);
    ck_assert_int_eq(memcmp(got2, want, sizeof(want)), 0);
    /* too little room: the count, no request */
    ck_assert_int_eq(ot_predict_client_predict_text(c, text, strlen(text), got, 2, &n, NULL),
                     OT_ENOSPC);
    ck_assert_uint_eq(n, 3);
    /* a bad line: an error reply naming it, and the server keeps serving */
    ck_assert_int_eq(ot_predict_client_predict_text(c, "|a x\n1 2 3 4 |", 14, got, 3, &n, NULL),
                     OT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(ot_predict_client_errmsg(c), "example 1"));
    ck_assert_int_eq(ot_predict_client_predict_text(c, text, strlen(text), got, 3, &n, &v), OT_OK);
    for (i = 0; i < 3; i++)
        ot_example_destroy(ex[i]);
    ot_predict_client_destroy(c);
    teardown_all(&f);
}
END_TEST

/* Sends raw bytes; returns the status of the reply. */
static ot_status raw_call(oti_sock *s, const void *req, size_t len)
{
    ot_buf *reply = NULL;
    char err[OTI_ERRMSG_LEN];
    ot_status st = oti_sock_call(s, req, len, 5000, &reply, err);

    ot_buf_release(reply);
    return st;
}

START_TEST(test_serve_malformed_requests_refused)
{
    fixture f;
    oti_sock *s = NULL;
    uint8_t req[64];
    char err[OTI_ERRMSG_LEN];

    setup_all(&f);
    ck_assert_int_eq(oti_sock_create(OTI_SOCK_REQ, NULL, &s, err), OT_OK);
    ck_assert_int_eq(oti_sock_dial(s, ot_predict_server_url(f.srv), 0, err), OT_OK);
    ck_assert_int_eq(raw_call(s, "hello", 5), OT_EFORMAT);
    oti_pq_header(req, OTI_PQ_TEXT, 9); /* over max_predict_batch (8) */
    memcpy(req + OTI_PQ_HEADER, "|a x", 4);
    ck_assert_int_eq(raw_call(s, req, OTI_PQ_HEADER + 4), OT_ERANGE);
    oti_pq_header(req, OTI_PQ_TEXT, 0);
    ck_assert_int_eq(raw_call(s, req, OTI_PQ_HEADER), OT_EFORMAT);
    oti_pq_header(req, OTI_PQ_TEXT, 2); /* says 2, holds 1 */
    ck_assert_int_eq(raw_call(s, req, OTI_PQ_HEADER + 4), OT_EFORMAT);
    oti_pq_header(req, 7, 1); /* unknown form */
    ck_assert_int_eq(raw_call(s, req, OTI_PQ_HEADER + 4), OT_EFORMAT);
    oti_pq_header(req, OTI_PQ_BINARY, 1); /* claims 1000 features */
    oti_put32(req + OTI_PQ_HEADER, 1000);
    ck_assert_int_eq(raw_call(s, req, OTI_PQ_HEADER + 4), OT_EFORMAT);
    oti_pq_header(req, OTI_PQ_BINARY, 1); /* a NaN value */
    oti_put32(req + OTI_PQ_HEADER, 1);
    req[OTI_PQ_HEADER + 4] = ' ';
    oti_put32(req + OTI_PQ_HEADER + 5, 12345);
    oti_put32(req + OTI_PQ_HEADER + 9, 0x7fc00000u);
    ck_assert_int_eq(raw_call(s, req, OTI_PQ_HEADER + 4 + OTI_PQ_FEATURE), OT_EFORMAT);
    oti_put32(req + OTI_PQ_HEADER + 9, 0x3f800000u); /* 1.0: fine */
    ck_assert_int_eq(raw_call(s, req, OTI_PQ_HEADER + 4 + OTI_PQ_FEATURE), OT_OK);
    /* trailing bytes */
    ck_assert_int_eq(raw_call(s, req, OTI_PQ_HEADER + 4 + OTI_PQ_FEATURE + 1), OT_EFORMAT);
    oti_sock_destroy(s);
    teardown_all(&f);
}
END_TEST

START_TEST(test_serve_bad_arguments)
{
    ot_predict_server *srv = NULL;
    ot_predict_client *c = NULL;
    size_t n;
    float sc[1];

    ck_assert_int_eq(ot_predict_server_start(NULL, NULL, "inproc://x", &srv), OT_EINVAL);
    ck_assert_int_eq(ot_predict_client_create(NULL, NULL, &c), OT_EINVAL);
    ck_assert_int_eq(ot_predict_client_predict_text(NULL, "x", 1, sc, 1, &n, NULL), OT_EINVAL);
    ck_assert_str_eq(ot_predict_client_errmsg(NULL), "");
    ck_assert_ptr_null(ot_predict_server_url(NULL));
    ot_predict_server_destroy(NULL);
    ot_predict_client_destroy(NULL);
}
END_TEST

Suite *suite_serve(void)
{
    Suite *s = suite_create("serve");
    TCase *tc = tcase_create("serve");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_serve_text_and_binary_match_in_process);
    tcase_add_test(tc, test_serve_malformed_requests_refused);
    tcase_add_test(tc, test_serve_bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}
