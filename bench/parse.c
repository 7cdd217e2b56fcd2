/*
 * bench/parse.c - speed of the VW text parser and of ot_reader.
 *
 * Generates (seeded) about a million VW lines in memory: a 0/1 label and 20
 * namespaces with one string-named feature each ("|c u123"), names drawn
 * with Zipf-like popularity.  Figures, one per line:
 *
 *   bench.parse.read_mbps            baseline: finding the newlines with memchr
 *   bench.parse.examples_per_s       ot_example_parse on each line
 *   bench.parse.mbps
 *   bench.parse.ratio_to_read        parse MB/s over baseline MB/s
 *   bench.parse.reader_examples_per_s ot_reader_next over ot_reader_open_memory
 *   bench.parse.reader_mbps
 *   bench.parse.reader_ratio_to_read
 *
 * Each figure is the best of a few runs, on one thread.  Times are the
 * thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so other processes on a busy
 * machine do not count; on an idle machine it equals the elapsed time.
 * Usage: parse [lines]   (default 1000000)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "onlinetrain.h"

#define NAMESPACES 20
#define RUNS 3

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

static double uniform(void)
{
    return (double)(rng() >> 11) / 9007199254740992.0;
}

/* An id in [1, n] with probability roughly proportional to 1/id. */
static unsigned zipf(unsigned n)
{
    return (unsigned)floor(exp(uniform() * log((double)n + 1.0)));
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *generate(size_t lines, size_t *len)
{
    static const unsigned vocab[NAMESPACES] = {
        1000000, 100000, 50000, 20000, 10000, 5000, 2000, 1000, 500, 200,
        100, 50, 24, 12, 7, 1000000, 300000, 3000, 30, 3,
    };
    size_t cap = lines * 256 + 1, used = 0, i;
    char *s = malloc(cap);
    int k;

    if (s == NULL)
        return NULL;
    for (i = 0; i < lines; i++) {
        s[used++] = (rng() & 3) == 0 ? '1' : '0';
        for (k = 0; k < NAMESPACES; k++)
            used += (size_t)snprintf(s + used, cap - used, " |%c %c%u", 'a' + k, 'u' + k % 6,
                                     zipf(vocab[k]));
        s[used++] = '\n';
    }
    s[used] = '\0';
    *len = used;
    return s;
}

int main(int argc, char **argv)
{
    size_t lines = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 1000000;
    size_t len, n = 0, nfeat = 0;
    char *data;
    ot_example *ex;
    ot_reader *r;
    double t, best_read = 1e30, best_parse = 1e30, best_reader = 1e30, mb;
    int run;

    if (lines == 0)
        lines = 1;
    data = generate(lines, &len);
    if (data == NULL || ot_example_create(NULL, &ex) != OT_OK) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    mb = (double)len / 1e6;

    for (run = 0; run < RUNS; run++) {
        const char *p = data, *end = data + len, *nl;
        size_t count = 0;

        /* Baseline: the newline scan alone. */
        t = now();
        while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            count++;
            p = nl + 1;
        }
        t = now() - t;
        if (t < best_read)
            best_read = t;
        if (count != lines) {
            fprintf(stderr, "baseline counted %zu lines\n", count);
            return 1;
        }

        /* The parser on each line. */
        p = data;
        n = nfeat = 0;
        t = now();
        while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            if (ot_example_parse(ex, "vw", p, (size_t)(nl - p)) != OT_OK) {
                fprintf(stderr, "parse: %s\n", ot_example_errmsg(ex));
                return 1;
            }
            nfeat += ot_example_num_features(ex);
            n++;
            p = nl + 1;
        }
        t = now() - t;
        if (t < best_parse)
            best_parse = t;
        if (n != lines || nfeat != lines * NAMESPACES) {
            fprintf(stderr, "parsed %zu lines, %zu features\n", n, nfeat);
            return 1;
        }

        /* The reader over memory (the copy it makes at open is not timed). */
        if (ot_reader_open_memory(NULL, data, len, &r) != OT_OK) {
            fprintf(stderr, "reader: cannot open\n");
            return 1;
        }
        n = 0;
        t = now();
        while (ot_reader_next(r, ex) == OT_OK)
            n++;
        t = now() - t;
        if (n != lines) {
            fprintf(stderr, "reader read %zu lines: %s\n", n, ot_reader_errmsg(r));
            return 1;
        }
        ot_reader_close(r);
        if (t < best_reader)
            best_reader = t;
    }

    printf("bench.parse.lines %zu lines\n", lines);
    printf("bench.parse.bytes_per_line %.1f bytes\n", (double)len / (double)lines);
    printf("bench.parse.read_mbps %.1f MB/s\n", mb / best_read);
    printf("bench.parse.examples_per_s %.0f examples/s\n", (double)lines / best_parse);
    printf("bench.parse.mbps %.1f MB/s\n", mb / best_parse);
    printf("bench.parse.ratio_to_read %.4f ratio\n", best_read / best_parse);
    printf("bench.parse.reader_examples_per_s %.0f examples/s\n", (double)lines / best_reader);
    printf("bench.parse.reader_mbps %.1f MB/s\n", mb / best_reader);
    printf("bench.parse.reader_ratio_to_read %.4f ratio\n", best_read / best_reader);

    ot_example_destroy(ex);
    free(data);
    return 0;
}
