/*
 * chaos_check - the checker of `make chaos` (scripts/chaos.sh).
 *
 *   chaos_check [-b BITS] [-O NAME=VALUE]... --master FILE [--server-version V]
 *               [--kills K] ACKLOG...
 *
 * Reads the trainers' --ack-log files (records written by `ot trainer
 * --ack-log`: u32 sender, u32 duplicate, u64 sequence, u64 length, the ADD
 * frame), applies every distinct acknowledged frame once, in sequence order
 * per trainer, to a fresh model made from the same flags, and compares the
 * result with the master the server saved (`ot ps --save`), weight by
 * weight within float rounding (see compare(); the server summed the same
 * frames in another order).  Also checks that no (trainer, sequence) was acknowledged
 * twice with different bytes and that the server's version (one per
 * applied ADD frame) equals the number of distinct acknowledged frames.
 * Prints one line of counts; exits 0 when nothing was lost or duplicated.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onlinetrain.h"

typedef struct rec {
    uint32_t sender, dup;
    uint64_t seq, len;
    uint8_t *frame;
} rec;

static int cmp_rec(const void *a, const void *b)
{
    const rec *x = a, *y = b;

    if (x->sender != y->sender)
        return x->sender < y->sender ? -1 : 1;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return 0;
}

/* Appends the records of one log; returns 0, or -1 on a read error. */
static int read_log(const char *path, rec **recs, size_t *n, size_t *cap)
{
    FILE *f = fopen(path, "rb");
    uint32_t hdr[2];

    if (f == NULL) {
        perror(path);
        return -1;
    }
    while (fread(hdr, sizeof(hdr), 1, f) == 1) {
        rec r;
        if (fread(&r.seq, sizeof(r.seq), 1, f) != 1 || fread(&r.len, sizeof(r.len), 1, f) != 1 ||
            r.len == 0 || r.len > (64u << 20) || (r.frame = malloc(r.len)) == NULL ||
            fread(r.frame, 1, r.len, f) != r.len) {
            fprintf(stderr, "chaos_check: %s: truncated record\n", path);
            fclose(f);
            return -1;
        }
        r.sender = hdr[0];
        r.dup = hdr[1];
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 1024;
            rec *nr = realloc(*recs, nc * sizeof(*nr));
            if (nr == NULL) {
                free(r.frame);
                fclose(f);
                return -1;
            }
            *recs = nr;
            *cap = nc;
        }
        (*recs)[(*n)++] = r;
    }
    fclose(f);
    return 0;
}

/*
 * Counts the weights of a and b that differ by more than float rounding:
 * 5e-4 of the block's largest weight.  (A weight is a sum of hundreds of
 * deltas that mostly cancel; added in another order, small weights differ
 * by more than 1e-4 of themselves: up to about 5e-5 of the largest weight
 * was seen.)  Lost or doubled deltas are also caught exactly by the counts.
 */
static unsigned long long compare(const ot_model *a, const ot_model *b, double *worst)
{
    size_t i, nb = ot_model_num_blocks(a);
    unsigned long long bad = 0;

    *worst = 0;
    for (i = 0; i < nb; i++) {
        uint64_t rows = 0, r;
        uint32_t cols = 0;
        const float *x = NULL, *y = NULL;
        double big = 0;
        if (ot_model_block_info(a, i, NULL, NULL, NULL, &rows, &cols, NULL) != OT_OK ||
            ot_model_block_data(a, i, OT_ARRAY_WEIGHTS, &x) != OT_OK ||
            ot_model_block_data(b, i, OT_ARRAY_WEIGHTS, &y) != OT_OK)
            return (unsigned long long)-1;
        for (r = 0; r < rows * cols; r++)
            big = fmax(big, fabs((double)x[r]));
        for (r = 0; r < rows * cols; r++) {
            double d = fabs((double)x[r] - (double)y[r]);
            double s = fmax(big, fmax(fabs((double)x[r]), fabs((double)y[r])));
            if (s == 0)
                s = 1;
            if (d / s > *worst)
                *worst = d / s;
            if (d > 5e-4 * s && bad++ < 5)
                fprintf(stderr, "chaos_check: block %zu weight %llu: replayed %.9g, master %.9g\n",
                        i, (unsigned long long)r, (double)x[r], (double)y[r]);
        }
    }
    return bad;
}

int main(int argc, char **argv)
{
    ot_config *cfg = NULL;
    ot_model *fresh = NULL, *master = NULL;
    ot_delta_decoder *dec = NULL;
    const char *master_path = NULL;
    long long server_version = -1, kills = -1;
    rec *recs = NULL;
    size_t n = 0, cap = 0, i, distinct = 0;
    unsigned long long dup = 0, redelivered = 0, lost = 0, extra = 0, bad = 0;
    double worst = 0;
    ot_status st;
    int rc = 1, ok;

    if (ot_config_create(&cfg) != OT_OK)
        return 1;
    for (i = 1; i < (size_t)argc; i++) {
        const char *f = argv[i], *v = i + 1 < (size_t)argc ? argv[i + 1] : NULL;
        if (f[0] != '-') {
            if (read_log(f, &recs, &n, &cap) != 0)
                goto out;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "chaos_check: %s needs a value\n", f);
            goto out;
        }
        i++;
        if (strcmp(f, "--master") == 0) {
            master_path = v;
        } else if (strcmp(f, "--server-version") == 0) {
            server_version = strtoll(v, NULL, 10);
        } else if (strcmp(f, "--kills") == 0) {
            kills = strtoll(v, NULL, 10);
        } else if (strcmp(f, "-b") == 0) {
            if (ot_config_set_text(cfg, OT_OPT_BITS, v) != OT_OK)
                goto bad_flag;
        } else if (strcmp(f, "-O") == 0) {
            char name[128];
            const char *eq = strchr(v, '=');
            int opt;
            if (eq == NULL || (size_t)(eq - v) >= sizeof(name))
                goto bad_flag;
            memcpy(name, v, (size_t)(eq - v));
            name[eq - v] = '\0';
            if (ot_option_by_name(name, &opt) != OT_OK ||
                ot_config_set_text(cfg, opt, eq + 1) != OT_OK)
                goto bad_flag;
        } else {
bad_flag:
            fprintf(stderr, "chaos_check: bad flag %s %s\n", f, v);
            goto out;
        }
    }
    if (master_path == NULL) {
        fprintf(stderr, "usage: chaos_check [-b BITS] [-O NAME=VALUE]... --master FILE "
                        "[--server-version V] [--kills K] ACKLOG...\n");
        goto out;
    }
    if ((st = ot_model_create(cfg, &fresh)) != OT_OK ||
        (st = ot_delta_decoder_create(cfg, &dec)) != OT_OK) {
        fprintf(stderr, "chaos_check: create: %s\n", ot_status_name(st));
        goto out;
    }
    if ((st = ot_model_load(cfg, master_path, &master)) != OT_OK) {
        fprintf(stderr, "chaos_check: %s: %s\n", master_path, ot_status_name(st));
        goto out;
    }
    if (n > 0)
        qsort(recs, n, sizeof(*recs), cmp_rec);
    for (i = 0; i < n; i++) {
        if (recs[i].dup)
            redelivered++;
        if (i > 0 && cmp_rec(&recs[i - 1], &recs[i]) == 0) {
            dup++; /* acknowledged twice: with the same bytes it is still one delta */
            if (recs[i].len != recs[i - 1].len ||
                memcmp(recs[i].frame, recs[i - 1].frame, recs[i].len) != 0)
                fprintf(stderr, "chaos_check: trainer %u sequence %llu acknowledged twice with "
                                "different frames\n",
                        (unsigned)recs[i].sender, (unsigned long long)recs[i].seq);
            continue;
        }
        {
            uint64_t entries = 0;
            /* a frame without values changes nothing and has no version */
            if (ot_delta_peek(recs[i].frame, recs[i].len, OT_DELTA_FIELD_ENTRIES, &entries) ==
                    OT_OK &&
                entries == 0)
                continue;
        }
        distinct++;
        if ((st = ot_delta_apply(dec, fresh, recs[i].frame, recs[i].len)) != OT_OK) {
            fprintf(stderr, "chaos_check: trainer %u sequence %llu: %s: %s\n",
                    (unsigned)recs[i].sender, (unsigned long long)recs[i].seq,
                    ot_status_name(st), ot_delta_decoder_errmsg(dec));
            goto out;
        }
    }
    bad = compare(fresh, master, &worst);
    if (server_version >= 0) {
        if ((unsigned long long)server_version < distinct)
            lost = distinct - (unsigned long long)server_version;
        else
            extra = (unsigned long long)server_version - distinct;
    }
    ok = dup == 0 && lost == 0 && extra == 0 && bad == 0;
    printf("chaos kills=%lld acked=%zu lost=%llu duplicated=%llu server_version=%lld "
           "unacked_applied=%llu redelivered_acks=%llu weights_off=%llu worst_rel=%.3g %s\n",
           kills, distinct, lost, dup, server_version, extra, redelivered, bad, worst,
           ok ? "PASS" : "FAIL");
    rc = ok ? 0 : 1;
out:
    for (i = 0; i < n; i++)
        free(recs[i].frame);
    free(recs);
    ot_delta_decoder_destroy(dec);
    ot_model_destroy(fresh);
    ot_model_destroy(master);
    ot_config_destroy(cfg);
    return rc;
}
