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

/* ---- roles_util.c: helpers of the roles and durable suites ---------------- */
/* Call them inside tests only (they open sockets and assert). */

struct oti_sock;

void tu_sleep_ms(long ms);
/* Example i of stream `tag`: four features of its own and one in namespace
 * "e", label by parity. */
ot_example *tu_make_ex(const char *tag, int i);
/* Learns examples 0..n-1 of `tag` on tr and on alone (either may be NULL). */
void tu_learn_n(ot_trainer *tr, ot_model *alone, const char *tag, int n);
/* ot_trainer_sync(), asserting OT_OK. */
void tu_sync_ok(ot_trainer *tr);
/* A trainer of cfg with trainer_id `id`, connected to url. */
ot_trainer *tu_trainer_at(const ot_config *cfg, uint32_t id, const char *url);
/* A stat of a server or trainer, asserting that it exists. */
double tu_stat_ps(const ot_param_server *ps, const char *name);
double tu_stat_tr(const ot_trainer *tr, const char *name);
/* A copy of the server's master (destroy it). */
ot_model *tu_master_copy(const ot_param_server *ps);
/* Largest |a - b| over the weights of two models of one shape. */
double tu_max_diff(const ot_model *a, const ot_model *b);
/* Whether two models of one shape hold the same bits in their weights (and,
 * with with_state, in every optimizer-state array). */
int tu_same_bits(const ot_model *a, const ot_model *b, int with_state);
/* A raw REQ socket dialing url (no resends, quick redials). */
struct oti_sock *tu_raw_req(const char *url);
/* An ADD frame made by hand: a fresh model of cfg learns examples 0..n-1 of
 * `tag`; the frame of the change as trainer `sender`, sequence `seq`, base
 * version `base` (one frame: asserted). */
ot_buf *tu_hand_frame(const ot_config *cfg, const char *tag, int n, uint32_t sender,
                      uint64_t seq, uint64_t base);
/* Adds delta * (1 + row % 7) to every `stride`-th row of the wide block of
 * m (of the trainer's local model) from row `first`, marking the rows
 * touched (as learning would). */
void tu_add_wide_rows(ot_model *m, uint64_t first, uint64_t stride, float delta);
void tu_touch_wide_rows(ot_trainer *tr, uint64_t first, uint64_t stride, float delta);

#endif
