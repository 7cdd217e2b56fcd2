/*
 * cluster_inproc.c - a parameter server, two trainers (one thread each) and a
 * predictor in one process, talking over inproc://.
 *
 * Build after `make install`:
 *   cc cluster_inproc.c $(pkg-config --cflags --libs onlinetrain) -lpthread
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <onlinetrain.h>

/* Stops the program on an error (a real program would handle it). */
#define CHECK(call) do { ot_status st_ = (call); if (st_ != OT_OK) { \
        fprintf(stderr, "%s: %s\n", #call, ot_status_name(st_)); exit(1); } } while (0)

#define TRAINER_URL "inproc://example-trainers"
#define PREDICTOR_URL "inproc://example-predictors"

/* Example i: a user and an item; items with an even number get clicked. */
static void make_example(ot_example *ex, int i, int item)
{
    char user[16], name[16];

    snprintf(user, sizeof(user), "u%d", i % 97);
    snprintf(name, sizeof(name), "i%d", item);
    ot_example_clear(ex);
    CHECK(ot_example_add_feature(ex, "user", user, 1.0f));
    CHECK(ot_example_add_feature(ex, "item", name, 1.0f));
    CHECK(ot_example_set_label(ex, item % 2 == 0 ? 1.0f : -1.0f));
}

typedef struct job {
    ot_trainer *tr;
    int first; /* this trainer's part of the stream: examples first, first + 2, ... */
} job;

/* One thread per trainer: a trainer is used by one thread at a time. */
static void *train(void *arg)
{
    job *j = arg;
    ot_example *ex;

    CHECK(ot_example_create(NULL, &ex));
    for (int i = j->first; i < 40000; i += 2) {
        make_example(ex, i, (i / 2) % 10);
        ot_status st = ot_trainer_learn(j->tr, ex, NULL); /* syncs every 500 examples */
        if (st != OT_OK) /* a failed sync keeps its delta for the next one */
            fprintf(stderr, "learn: %s\n", ot_trainer_errmsg(j->tr));
    }
    CHECK(ot_trainer_sync(j->tr)); /* send what is left */
    ot_example_destroy(ex);
    return NULL;
}

int main(void)
{
    ot_config *cfg;
    ot_param_server *ps;
    ot_trainer *tr[2];
    ot_predictor *pred;
    ot_example *ex;
    pthread_t th[2];
    job jobs[2];
    float p_even, p_odd;

    CHECK(ot_config_create(&cfg));
    CHECK(ot_config_set_i64(cfg, OT_OPT_BITS, 18));
    CHECK(ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, "state")); /* FTRL: trainers add z and n */
    CHECK(ot_config_set_i64(cfg, OT_OPT_SYNC_EVERY_EXAMPLES, 500));

    CHECK(ot_param_server_create(cfg, &ps));
    CHECK(ot_param_server_listen(ps, TRAINER_URL, PREDICTOR_URL));
    CHECK(ot_param_server_start(ps)); /* publishes every rt_interval_ms (100) */
    for (int t = 0; t < 2; t++) {
        CHECK(ot_config_set_i64(cfg, OT_OPT_TRAINER_ID, t + 1)); /* copied at create */
        CHECK(ot_trainer_create(cfg, &tr[t]));
        CHECK(ot_trainer_connect(tr[t], TRAINER_URL));
    }
    CHECK(ot_predictor_create(cfg, &pred));
    CHECK(ot_predictor_subscribe(pred, PREDICTOR_URL, TRAINER_URL));

    for (int t = 0; t < 2; t++) {
        jobs[t].tr = tr[t];
        jobs[t].first = t;
        pthread_create(&th[t], NULL, train, &jobs[t]);
    }
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);

    /* Every delta is in the master; the next real-time update carries it. */
    uint64_t v = ot_param_server_version(ps);
    CHECK(ot_predictor_wait_version(pred, v, 5000));
    CHECK(ot_example_create(NULL, &ex));
    make_example(ex, 0, 4);
    CHECK(ot_predictor_predict(pred, ex, &p_even));
    make_example(ex, 0, 7);
    CHECK(ot_predictor_predict(pred, ex, &p_odd));
    printf("master version %llu, served version %llu\n", (unsigned long long)v,
           (unsigned long long)ot_predictor_version(pred));
    printf("p(click | item i4) = %.3f, p(click | item i7) = %.3f\n", p_even, p_odd);

    ot_example_destroy(ex);
    ot_predictor_destroy(pred);
    ot_trainer_destroy(tr[0]);
    ot_trainer_destroy(tr[1]);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    return 0;
}
