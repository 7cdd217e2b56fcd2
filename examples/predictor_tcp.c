/*
 * predictor_tcp.c - a prediction worker as a program of its own.
 *
 *   predictor_tcp PREDICTOR_URL SERVER_URL < examples.vw
 *
 * Subscribes to a parameter server (its predictor URL for updates, its
 * trainer URL for full copies; see ps_tcp.c), prints the version it starts
 * from, then serves: for each line of standard input, an example in
 * Vowpal Wabbit's text format such as "|user u3 |item i4", it prints the
 * click probability and the model version it was computed with.  The
 * model keeps changing underneath as the server publishes updates.  Ends
 * at the end of standard input.
 */
#include <stdio.h>
#include <string.h>

#include <onlinetrain.h>

int main(int argc, char **argv)
{
    ot_config *cfg;
    ot_predictor *pred;
    ot_example *ex;
    char line[4096];
    ot_status st;

    if (argc != 3) {
        fprintf(stderr, "usage: predictor_tcp PREDICTOR_URL SERVER_URL < examples.vw\n");
        return 2;
    }
    if (ot_config_create(&cfg) != OT_OK || ot_example_create(NULL, &ex) != OT_OK)
        return 1;
    ot_config_set_i64(cfg, OT_OPT_BITS, 18);              /* as the server's model */
    ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, "state"); /* as the server */

    if ((st = ot_predictor_create(cfg, &pred)) != OT_OK) {
        fprintf(stderr, "predictor_tcp: %s\n", ot_strerror(st));
        return 1;
    }
    if ((st = ot_predictor_subscribe(pred, argv[1], argv[2])) != OT_OK) {
        fprintf(stderr, "predictor_tcp: %s: %s\n", ot_status_name(st), ot_predictor_errmsg(pred));
        ot_predictor_destroy(pred);
        return 1;
    }
    printf("subscribed at version %llu\n", (unsigned long long)ot_predictor_version(pred));
    fflush(stdout);

    while (fgets(line, sizeof(line), stdin) != NULL) {
        size_t len = strcspn(line, "\r\n");
        uint64_t v = ot_predictor_version(pred);
        float p;

        if (ot_example_parse(ex, "vw", line, len) != OT_OK) {
            printf("error: %s\n", ot_example_errmsg(ex));
        } else if (ot_predictor_predict(pred, ex, &p) == OT_OK) {
            /* v was read just before: the prediction used version v or newer */
            printf("%.6f version %llu\n", p, (unsigned long long)v);
        }
        fflush(stdout);
    }

    ot_predictor_destroy(pred);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
    return 0;
}
