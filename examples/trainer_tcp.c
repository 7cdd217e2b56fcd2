/*
 * trainer_tcp.c - a training worker as a program of its own.
 *
 *   trainer_tcp SERVER_URL [ID [EXAMPLES]]
 *
 * Connects to a parameter server's trainer URL (see ps_tcp.c), learns
 * EXAMPLES (default 20000) examples of a made-up click stream (items with
 * an even number get clicked), syncing its delta every 500 examples, and
 * sends what is left at the end.  ID (default 1) must differ between
 * trainers of one server.  Prints its progressive loss and the master
 * version after its last sync.
 */
#include <stdio.h>
#include <stdlib.h>

#include <onlinetrain.h>

int main(int argc, char **argv)
{
    ot_config *cfg;
    ot_trainer *tr;
    ot_example *ex;
    long id = argc > 2 ? strtol(argv[2], NULL, 10) : 1;
    long n = argc > 3 ? strtol(argv[3], NULL, 10) : 20000;
    double loss_sum = 0;
    ot_status st;

    if (argc < 2 || argc > 4 || id < 1 || n < 1) {
        fprintf(stderr, "usage: trainer_tcp SERVER_URL [ID [EXAMPLES]]\n");
        return 2;
    }
    if (ot_config_create(&cfg) != OT_OK || ot_example_create(NULL, &ex) != OT_OK)
        return 1;
    ot_config_set_i64(cfg, OT_OPT_BITS, 18);              /* as the server's model */
    ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, "state"); /* as the server */
    ot_config_set_i64(cfg, OT_OPT_TRAINER_ID, id);
    ot_config_set_i64(cfg, OT_OPT_SYNC_EVERY_EXAMPLES, 500);

    if ((st = ot_trainer_create(cfg, &tr)) != OT_OK) {
        fprintf(stderr, "trainer_tcp: %s\n", ot_strerror(st));
        return 1;
    }
    if ((st = ot_trainer_connect(tr, argv[1])) != OT_OK) { /* loads the master */
        fprintf(stderr, "trainer_tcp: %s: %s: %s\n", argv[1], ot_status_name(st),
                ot_trainer_errmsg(tr));
        ot_trainer_destroy(tr);
        return 1;
    }
    for (long i = 0; i < n; i++) {
        char user[16], item[16];
        float loss;
        int k = (int)((i * 7 + id) % 10);

        snprintf(user, sizeof(user), "u%ld", (i * 31 + id) % 97);
        snprintf(item, sizeof(item), "i%d", k);
        ot_example_clear(ex);
        ot_example_add_feature(ex, "user", user, 1.0f);
        ot_example_add_feature(ex, "item", item, 1.0f);
        ot_example_set_label(ex, k % 2 == 0 ? 1.0f : -1.0f);
        /* Learns, and syncs every 500 examples; a failed sync keeps the delta
         * for the next one, so the program carries on. */
        if ((st = ot_trainer_learn(tr, ex, &loss)) != OT_OK)
            fprintf(stderr, "trainer_tcp: %s: %s\n", ot_status_name(st), ot_trainer_errmsg(tr));
        loss_sum += loss;
    }
    st = ot_trainer_sync(tr);
    if (st != OT_OK)
        fprintf(stderr, "trainer_tcp: last sync: %s: %s\n", ot_status_name(st),
                ot_trainer_errmsg(tr));
    printf("trainer %ld: %ld examples, average loss %.4f, master version %llu\n", id, n,
           loss_sum / (double)n, (unsigned long long)ot_trainer_version(tr));

    ot_trainer_destroy(tr);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
    return st == OT_OK ? 0 : 1;
}
