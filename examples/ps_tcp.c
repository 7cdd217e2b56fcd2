/*
 * ps_tcp.c - the parameter server as a program of its own.
 *
 *   ps_tcp TRAINER_URL PREDICTOR_URL
 *
 * Listens for trainers (request/reply) and predictors (publish/subscribe),
 * for example on tcp://127.0.0.1:5555 and tcp://127.0.0.1:5556; a port of 0
 * picks a free one.  Prints the two bound URLs first, one a line, then the
 * master version at most once a second while it changes.  Runs until
 * SIGINT or SIGTERM, then prints its counters and exits.
 *
 * trainer_tcp.c and predictor_tcp.c are the other two roles; the three must
 * agree on the model's options (here: 2^18 weights, FTRL, trainers exchange
 * the optimizer state).  examples/README.md shows how to run them together.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <onlinetrain.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static double counter(const ot_param_server *ps, const char *name)
{
    double v = 0;

    ot_param_server_stat(ps, name, &v);
    return v;
}

int main(int argc, char **argv)
{
    ot_config *cfg;
    ot_param_server *ps;
    struct sigaction sa;
    struct timespec second = {1, 0};
    uint64_t shown = 0;
    ot_status st;

    if (argc != 3) {
        fprintf(stderr, "usage: ps_tcp TRAINER_URL PREDICTOR_URL\n");
        return 2;
    }
    if (ot_config_create(&cfg) != OT_OK)
        return 1;
    ot_config_set_i64(cfg, OT_OPT_BITS, 18);
    ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, "state");
    ot_config_set_i64(cfg, OT_OPT_RT_INTERVAL_MS, 100);    /* real-time updates */
    ot_config_set_i64(cfg, OT_OPT_FULL_INTERVAL_MS, 10000); /* full updates */

    if ((st = ot_param_server_create(cfg, &ps)) != OT_OK) {
        fprintf(stderr, "ps_tcp: %s\n", ot_strerror(st));
        return 1;
    }
    if ((st = ot_param_server_listen(ps, argv[1], argv[2])) != OT_OK ||
        (st = ot_param_server_start(ps)) != OT_OK) {
        fprintf(stderr, "ps_tcp: %s: %s\n", ot_status_name(st), ot_param_server_errmsg(ps));
        ot_param_server_destroy(ps);
        ot_config_destroy(cfg);
        return 1;
    }
    printf("trainers %s\npredictors %s\n", ot_param_server_url(ps, 0), ot_param_server_url(ps, 1));
    fflush(stdout);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!stop) {
        uint64_t v = ot_param_server_version(ps);
        if (v != shown) {
            printf("master version %llu\n", (unsigned long long)v);
            fflush(stdout);
            shown = v;
        }
        nanosleep(&second, NULL); /* a signal ends the sleep early */
    }

    ot_param_server_stop(ps);
    printf("stopped at master version %llu: %.0f deltas in, %.0f real-time updates "
           "(%.0f bytes), %.0f full updates (%.0f bytes)\n",
           (unsigned long long)ot_param_server_version(ps), counter(ps, "deltas_in"),
           counter(ps, "rt_updates"), counter(ps, "rt_bytes"), counter(ps, "full_updates"),
           counter(ps, "full_bytes"));
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    return 0;
}
