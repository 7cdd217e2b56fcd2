/*
 * bench/delta.c - figures of the delta codec on a 2^24-weight model.
 *
 * Prints one line per figure, "bench.delta.<figure> <value> <unit>":
 *
 *  - memcpy bandwidth over the model's bytes (the baseline, same run);
 *  - encoder bandwidth on a dense diff (every weight changed), fp32, full
 *    scan, and its ratio to memcpy;
 *  - encode time with 1% of rows touched (scattered) through the touched
 *    tracker, against a full scan of the same state, and against a plain
 *    loop doing only the reads and writes of those rows (the floor that
 *    scattered memory access sets on this machine);
 *  - the dense encode of a deep layer (256 inputs a row, no tracker),
 *    against memcpy;
 *  - encode time with 1% of the rows of an embedding table (64 floats a
 *    row) touched, against a full scan;
 *  - decode+apply throughput in entries per second, dense and sparse fp32,
 *    the sparse figure next to a plain loop updating the same rows;
 *  - bytes per entry of a sparse delta per value encoding, on indices drawn
 *    from a Zipf distribution (rank order, and hashed into the row space);
 *  - snapshot costs: publishing a shadow, and ot_snapshot_update-style page
 *    refresh after touching 1% of rows, clustered and scattered.
 *
 * Times are the best of several runs.  Next to each time figure a
 * "_cycles" line gives the best run's CPU time of this thread
 * (CLOCK_THREAD_CPUTIME_ID) per entry, row or byte, in cycles of the
 * time-stamp counter (its rate is measured in the same run and printed as
 * tsc_rate): time the thread spent descheduled on a shared machine does not
 * count, while its own cache misses and stalls do.  Where there is no
 * time-stamp counter the line is "_cpu_ns" in nanoseconds instead.
 *
 * Uses the internal API (params views built by hand) so it runs without a
 * trained model.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "delta.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <x86intrin.h>
#define HAVE_TSC 1
#endif

#define ROWS (1u << 24)
#define EMBED_DIM 64 /* floats per row of the embedding figure */
#define LAYER_COLS 256 /* inputs of the deep layer figure */

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* This thread's CPU time in seconds. */
static double cpu_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Ticks of the time-stamp counter per second (0 without one), measured
 * against CLOCK_MONOTONIC over about 50 ms. */
static double tsc_hz;

static void tsc_calibrate(void)
{
#ifdef HAVE_TSC
    double t0 = now(), t1;
    uint64_t c0 = __rdtsc(), c1;

    do
        t1 = now();
    while (t1 - t0 < 0.05);
    c1 = __rdtsc();
    tsc_hz = (double)(c1 - c0) / (t1 - t0);
#endif
}

/*
 * A measured run: start() before, stop() after; the best (smallest) wall
 * time and thread CPU time over the runs are kept apart.
 */
typedef struct meter {
    double t0, c0;
    double best, best_cpu;
} meter;

static void meter_init(meter *m)
{
    m->best = 1e9;
    m->best_cpu = 1e9;
}

static void start(meter *m)
{
    m->c0 = cpu_now();
    m->t0 = now();
}

static double stop(meter *m)
{
    double t = now() - m->t0, c = cpu_now() - m->c0;

    if (t < m->best)
        m->best = t;
    if (c < m->best_cpu)
        m->best_cpu = c;
    return t;
}

/* The "_cycles" line of a figure: best CPU time per unit of work. */
static void print_cycles(const char *figure, const meter *m, double units, const char *per)
{
    if (tsc_hz > 0.0)
        printf("bench.delta.%s_cycles %.2f cycles/%s\n", figure, m->best_cpu * tsc_hz / units,
               per);
    else
        printf("bench.delta.%s_cpu_ns %.3f ns/%s\n", figure, m->best_cpu * 1e9 / units, per);
}

static uint64_t rng_state = 88172645463325252ull;

static uint32_t rnd(void)
{
    uint64_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return (uint32_t)(x >> 11);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);

    if (p == NULL) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    return p;
}

/* One block of rows x cols weights with a touched tracker: wide when cols
 * is 1, else a deep layer with dense_hint, an embedding without. */
static oti_params *params_shape(size_t rows, uint32_t cols, int dense_hint)
{
    oti_params *p = calloc(1, sizeof(*p));
    oti_block *b = calloc(1, sizeof(*b));
    size_t i, n = rows * cols;

    b->kind = cols == 1 ? OTI_BLOCK_WIDE : dense_hint ? OTI_BLOCK_DENSE : OTI_BLOCK_EMBED;
    strcpy(b->name, cols == 1 ? "wide" : dense_hint ? "layer" : "embed");
    b->rows = rows;
    b->cols = cols;
    b->dense_hint = dense_hint;
    b->w = xmalloc(n * 4);
    for (i = 0; i < n; i++)
        b->w[i] = (float)(rnd() & 0xffff) * (1.0f / 65536.0f) - 0.5f;
    b->touched_bits = calloc((rows + 63) / 64, 8);
    b->touched_list = xmalloc(rows * 4);
    p->blocks = b;
    p->nblocks = 1;
    p->total = n;
    p->fingerprint = 0x5eed;
    return p;
}

/* One wide block of ROWS x 1 weights with a touched tracker. */
static oti_params *params_new(int dense_hint)
{
    return params_shape(ROWS, 1, dense_hint);
}

static void params_free(oti_params *p)
{
    free(p->blocks[0].w);
    free(p->blocks[0].touched_bits);
    free(p->blocks[0].touched_list);
    free(p->blocks);
    free(p);
}

static ot_delta_encoder *encoder(const char *enc, int64_t max_message)
{
    ot_config *cfg;
    ot_delta_encoder *e;

    if (ot_config_create(&cfg) != OT_OK ||
        ot_config_set_str(cfg, OT_OPT_VALUE_ENCODING, enc) != OT_OK ||
        ot_config_set_i64(cfg, OT_OPT_MAX_MESSAGE, max_message) != OT_OK ||
        ot_delta_encoder_create(cfg, &e) != OT_OK) {
        fprintf(stderr, "bench: encoder\n");
        exit(1);
    }
    ot_config_destroy(cfg);
    return e;
}

static ot_delta_decoder *decoder(void)
{
    ot_config *cfg;
    ot_delta_decoder *d;

    if (ot_config_create(&cfg) != OT_OK ||
        ot_config_set_i64(cfg, OT_OPT_MAX_MESSAGE, UINT32_MAX) != OT_OK ||
        ot_delta_decoder_create(cfg, &d) != OT_OK) {
        fprintf(stderr, "bench: decoder\n");
        exit(1);
    }
    ot_config_destroy(cfg);
    return d;
}

static void check(ot_status st, const char *what, const char *msg)
{
    if (st != OT_OK) {
        fprintf(stderr, "bench: %s: %s: %s\n", what, ot_status_name(st), msg);
        exit(1);
    }
}

/* Changes every weight a little (keeps float magnitudes in place). */
static void perturb_all(oti_params *p)
{
    float *w = p->blocks[0].w;
    size_t i;

    for (i = 0; i < ROWS; i++)
        w[i] += (i & 1) ? 1e-3f : -1e-3f;
    p->blocks[0].all_touched = 1;
}

static void touch_rows(oti_params *p, const uint32_t *rows, size_t n, float d)
{
    oti_block *b = &p->blocks[0];
    size_t i, c;

    for (i = 0; i < n; i++) {
        for (c = 0; c < b->cols; c++)
            b->w[(size_t)rows[i] * b->cols + c] += d;
        oti_block_touch(b, rows[i]);
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The distinct values of a[0..n), sorted; returns how many. */
static size_t sorted_distinct(uint32_t *a, size_t n)
{
    size_t i, k = 0;

    qsort(a, n, sizeof(*a), cmp_u32);
    for (i = 0; i < n; i++)
        if (k == 0 || a[i] != a[k - 1])
            a[k++] = a[i];
    return k;
}

#define FLOOR_AHEAD 64 /* rows prefetched ahead by the plain loops */
#if defined(__GNUC__)
#define PREFETCH(p, w) __builtin_prefetch((p), (w))
#else
#define PREFETCH(p, w) ((void)(p))
#endif

/*
 * The memory work of an encode of touched single-value rows, as a plain
 * loop: at each row (sorted), read the model and the snapshot, write the
 * difference and the row out, and advance the snapshot.  No sorting, no
 * format, no checks: what the scattered reads and writes cost alone.
 */
static void floor_encode(const float *l, float *s, const uint32_t *rows, size_t n, float *dout,
                         uint32_t *rout)
{
    size_t i;

    for (i = 0; i < n; i++) {
        uint32_t r = rows[i];
        float d;
        if (i + FLOOR_AHEAD < n) {
            PREFETCH(l + rows[i + FLOOR_AHEAD], 0);
            PREFETCH(s + rows[i + FLOOR_AHEAD], 1);
        }
        d = l[r] - s[r];
        s[r] += d;
        dout[i] = d;
        rout[i] = r;
    }
}

/* The memory work of a sparse apply, as a plain loop over decoded rows. */
static void floor_apply(float *w, const uint32_t *rows, const float *v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (i + FLOOR_AHEAD < n)
            PREFETCH(w + rows[i + FLOOR_AHEAD], 1);
        w[rows[i]] += v[i];
    }
}

/* Zipf(s) ranks in [0, n) by inversion of the continuous approximation. */
static uint32_t zipf(double s, double n)
{
    double u = ((double)rnd() + 0.5) / 4294967296.0; /* (0, 1) */
    double a = 1.0 - s, hn = (pow(n, a) - 1.0) / a;
    double x = pow(u * hn * a + 1.0, 1.0 / a);
    uint32_t r = (uint32_t)(x - 1.0);

    return r < n ? r : (uint32_t)n - 1;
}

/* After the same touches each: one encode through the touched tracker and
 * one full scan, timed into mt and mf, their lengths into *len_t, *len_f. */
static void encode_touched_and_full(ot_delta_encoder *e, oti_params *p, oti_shadow *sh,
                                    const uint32_t *rows, size_t n, uint8_t *frame, size_t cap,
                                    meter *mt, meter *mf, size_t *len_t, size_t *len_f)
{
    int more;

    touch_rows(p, rows, n, 0.25f);
    oti_delta_encoder_scan_all(e, 0);
    start(mt);
    check(oti_delta_encode_add(e, p, sh, frame, cap, len_t, &more), "encode", "");
    stop(mt);
    touch_rows(p, rows, n, 0.25f);
    oti_delta_encoder_scan_all(e, 1);
    start(mf);
    check(oti_delta_encode_add(e, p, sh, frame, cap, len_f, &more), "encode", "");
    stop(mf);
    oti_delta_encoder_scan_all(e, 0);
}

int main(void)
{
    const size_t bytes = (size_t)ROWS * 4;
    oti_params *local = params_new(1), *recv;
    oti_shadow *sh;
    ot_delta_encoder *e = encoder("fp32", UINT32_MAX);
    ot_delta_decoder *d = decoder();
    uint8_t *frame, *scratch;
    size_t cap = (size_t)1 << 30, len = 0;
    meter mm, me, m;
    int rep, more;
    uint32_t *rows;
    size_t nrows, i;

    frame = xmalloc(cap);
    scratch = xmalloc(bytes);
    check(oti_shadow_create(NULL, local, OTI_SRC_WEIGHTS, 0, &sh), "shadow", "");
    tsc_calibrate();
    if (tsc_hz > 0.0)
        printf("bench.delta.tsc_rate %.3f GHz\n", tsc_hz / 1e9);

    /* ---- dense encode, each run next to a memcpy of the same bytes --------- */
    meter_init(&mm);
    meter_init(&me);
    for (rep = 0; rep < 9; rep++) {
        /* called through a volatile pointer so the copy is not optimised away */
        void *(*volatile copy)(void *, const void *, size_t) = memcpy;
        start(&mm);
        copy(scratch, local->blocks[0].w, bytes);
        stop(&mm);
        perturb_all(local);
        start(&me);
        check(oti_delta_encode_add(e, local, sh, frame, cap, &len, &more), "encode",
              ot_delta_encoder_errmsg(e));
        stop(&me);
    }
    printf("bench.delta.memcpy_bandwidth %.2f GB/s\n", (double)bytes / mm.best / 1e9);
    print_cycles("memcpy", &mm, (double)bytes, "byte");
    printf("bench.delta.encode_dense_fp32_bandwidth %.2f GB/s\n", (double)bytes / me.best / 1e9);
    print_cycles("encode_dense_fp32", &me, (double)bytes, "byte");
    printf("bench.delta.encode_dense_fp32_vs_memcpy %.1f %%\n", 100.0 * mm.best / me.best);
    printf("bench.delta.encode_dense_fp32_vs_memcpy_cpu %.1f %%\n",
           100.0 * mm.best_cpu / me.best_cpu);
    printf("bench.delta.encode_dense_fp32_frame %.3f bytes/entry\n", (double)len / ROWS);

    /* ---- dense decode+apply ---------------------------------------------- */
    recv = params_new(1);
    meter_init(&m);
    for (rep = 0; rep < 5; rep++) {
        start(&m);
        check(oti_delta_apply_params(d, recv, frame, len), "apply", ot_delta_decoder_errmsg(d));
        stop(&m);
    }
    printf("bench.delta.apply_dense_fp32 %.0f Mentries/s\n", ROWS / m.best / 1e6);
    print_cycles("apply_dense_fp32", &m, (double)ROWS, "entry");

    /* ---- 1% touched vs full scan ----------------------------------------- */
    params_free(local);
    oti_shadow_destroy(sh);
    local = params_new(0);
    check(oti_shadow_create(NULL, local, OTI_SRC_WEIGHTS, 0, &sh), "shadow", "");
    nrows = ROWS / 100;
    rows = xmalloc(nrows * 4);
    for (i = 0; i < nrows; i++)
        rows[i] = rnd() % ROWS;
    {
        meter mt, mf, mfl;
        size_t len_t = 0, len_f = 0, nd;
        uint64_t entries = 0;
        uint32_t *sr = xmalloc(nrows * 4), *rout = xmalloc(nrows * 4);
        float *sf = xmalloc(bytes), *dout = xmalloc(nrows * 4);
        memcpy(sr, rows, nrows * 4);
        nd = sorted_distinct(sr, nrows);
        memcpy(sf, local->blocks[0].w, bytes);
        meter_init(&mt);
        meter_init(&mf);
        meter_init(&mfl);
        for (rep = 0; rep < 7; rep++) {
            encode_touched_and_full(e, local, sh, rows, nrows, frame, cap, &mt, &mf, &len_t,
                                    &len_f);
            /* the same rows' reads and writes alone, after the same touches */
            touch_rows(local, rows, nrows, 0.25f);
            start(&mfl);
            floor_encode(local->blocks[0].w, sf, sr, nd, dout, rout);
            stop(&mfl);
        }
        ot_delta_peek(frame, len_t, OT_DELTA_FIELD_ENTRIES, &entries);
        printf("bench.delta.encode_touched_1pct_time %.3f ms\n", mt.best * 1e3);
        print_cycles("encode_touched_1pct", &mt, (double)entries, "entry");
        printf("bench.delta.encode_full_scan_1pct_time %.3f ms\n", mf.best * 1e3);
        print_cycles("encode_full_scan_1pct", &mf, (double)entries, "entry");
        printf("bench.delta.encode_touched_vs_full_scan %.1f %%\n", 100.0 * mt.best / mf.best);
        printf("bench.delta.encode_touched_vs_full_scan_cpu %.1f %%\n",
               100.0 * mt.best_cpu / mf.best_cpu);
        if (len_t != len_f)
            printf("bench.delta.warning_frames_differ %zu bytes\n", len_t > len_f ? len_t - len_f
                                                                                 : len_f - len_t);

        printf("bench.delta.encode_touched_1pct_floor_time %.3f ms\n", mfl.best * 1e3);
        print_cycles("encode_touched_1pct_floor", &mfl, (double)nd, "entry");
        printf("bench.delta.encode_touched_floor_vs_full_scan %.1f %%\n",
               100.0 * mfl.best / mf.best);
        printf("bench.delta.encode_touched_vs_floor %.2f x\n", mt.best / mfl.best);

        /* sparse decode+apply of that frame */
        touch_rows(local, rows, nrows, 0.25f);
        check(oti_delta_encode_add(e, local, sh, frame, cap, &len, &more), "encode", "");
        ot_delta_peek(frame, len, OT_DELTA_FIELD_ENTRIES, &entries);
        meter_init(&m);
        meter_init(&mfl);
        for (rep = 0; rep < 7; rep++) {
            start(&m);
            check(oti_delta_apply_params(d, recv, frame, len), "apply",
                  ot_delta_decoder_errmsg(d));
            stop(&m);
            recv->blocks[0].ntouched = 0;
            memset(recv->blocks[0].touched_bits, 0, ROWS / 8);
            /* the same rows' updates alone, from decoded rows and values */
            start(&mfl);
            floor_apply(recv->blocks[0].w, sr, dout, nd);
            stop(&mfl);
        }
        printf("bench.delta.apply_sparse_fp32 %.0f Mentries/s\n", (double)entries / m.best / 1e6);
        print_cycles("apply_sparse_fp32", &m, (double)entries, "entry");
        printf("bench.delta.apply_sparse_floor %.0f Mentries/s\n", (double)nd / mfl.best / 1e6);
        print_cycles("apply_sparse_floor", &mfl, (double)nd, "entry");
        printf("bench.delta.apply_sparse_vs_floor %.1f %%\n",
               100.0 * ((double)entries / m.best) / ((double)nd / mfl.best));
        printf("bench.delta.sparse_uniform_1pct_fp32 %.3f bytes/entry\n",
               (double)len / (double)entries);
        free(sr);
        free(rout);
        free(sf);
        free(dout);
    }

    /* ---- a deep layer, every weight changed, next to memcpy --------------- */
    {
        const size_t lrows = ROWS / LAYER_COLS;
        oti_params *lay = params_shape(lrows, LAYER_COLS, 1);
        oti_shadow *lsh;
        float *lw = lay->blocks[0].w;
        meter mc, ml;
        /* a deep layer has no touched tracker: every encode scans it whole */
        free(lay->blocks[0].touched_bits);
        free(lay->blocks[0].touched_list);
        lay->blocks[0].touched_bits = NULL;
        lay->blocks[0].touched_list = NULL;
        check(oti_shadow_create(NULL, lay, OTI_SRC_WEIGHTS, 0, &lsh), "shadow", "");
        meter_init(&mc);
        meter_init(&ml);
        for (rep = 0; rep < 9; rep++) {
            void *(*volatile copy)(void *, const void *, size_t) = memcpy;
            start(&mc);
            copy(scratch, lw, bytes);
            stop(&mc);
            for (i = 0; i < ROWS; i++)
                lw[i] += (i & 1) ? 1e-3f : -1e-3f;
            start(&ml);
            check(oti_delta_encode_add(e, lay, lsh, frame, cap, &len, &more), "encode", "");
            stop(&ml);
        }
        printf("bench.delta.encode_layer%d_fp32_bandwidth %.2f GB/s\n", LAYER_COLS,
               (double)bytes / ml.best / 1e9);
        printf("bench.delta.encode_layer%d_fp32_vs_memcpy %.1f %%\n", LAYER_COLS,
               100.0 * mc.best / ml.best);
        oti_shadow_destroy(lsh);
        params_free(lay);
    }

    /* ---- 1% of the rows of an embedding table touched ---------------------- */
    {
        const size_t erows = ROWS / EMBED_DIM, en = erows / 100;
        oti_params *emb = params_shape(erows, EMBED_DIM, 0);
        oti_shadow *esh;
        uint32_t *er = xmalloc(en * 4);
        meter mt, mf;
        check(oti_shadow_create(NULL, emb, OTI_SRC_WEIGHTS, 0, &esh), "shadow", "");
        for (i = 0; i < en; i++)
            er[i] = rnd() % erows;
        meter_init(&mt);
        meter_init(&mf);
        for (rep = 0; rep < 7; rep++)
            encode_touched_and_full(e, emb, esh, er, en, frame, cap, &mt, &mf, &len, &len);
        printf("bench.delta.encode_touched_1pct_embed%d_time %.3f ms\n", EMBED_DIM, mt.best * 1e3);
        printf("bench.delta.encode_full_scan_embed%d_time %.3f ms\n", EMBED_DIM, mf.best * 1e3);
        printf("bench.delta.encode_touched_vs_full_scan_embed%d %.1f %%\n", EMBED_DIM,
               100.0 * mt.best / mf.best);
        free(er);
        oti_shadow_destroy(esh);
        params_free(emb);
    }

    /* ---- bytes per entry on Zipf indices ---------------------------------- */
    {
        static const char *encs[] = {"fp32", "fp16", "bf16", "int8"};
        const size_t draws = 1000000;
        int hashed, k;
        uint32_t *z = xmalloc(draws * 4);
        for (hashed = 0; hashed < 2; hashed++) {
            for (i = 0; i < draws; i++) {
                uint32_t r = zipf(1.1, (double)ROWS);
                z[i] = hashed ? ot_hash(&r, 4, 0) % ROWS : r;
            }
            for (k = 0; k < 4; k++) {
                ot_delta_encoder *ez = encoder(encs[k], UINT32_MAX);
                uint64_t entries;
                oti_shadow *s2;
                check(oti_shadow_create(NULL, local, OTI_SRC_WEIGHTS, 0, &s2), "shadow", "");
                touch_rows(local, z, draws, 0.01f);
                check(oti_delta_encode_add(ez, local, s2, frame, cap, &len, &more), "encode", "");
                ot_delta_peek(frame, len, OT_DELTA_FIELD_ENTRIES, &entries);
                printf("bench.delta.zipf%s_%s %.3f bytes/entry\n", hashed ? "_hashed" : "",
                       encs[k], (double)len / (double)entries);
                if (k == 0)
                    printf("bench.delta.zipf%s_distinct_rows %llu rows\n", hashed ? "_hashed" : "",
                           (unsigned long long)entries);
                oti_shadow_destroy(s2);
                ot_delta_encoder_destroy(ez);
            }
        }
        free(z);
    }

    /* ---- snapshots ----------------------------------------------------------- */
    {
        ot_snapshot *snap;
        meter mp, mc, ms, mf;
        meter_init(&mp);
        meter_init(&mc);
        meter_init(&ms);
        meter_init(&mf);
        for (rep = 0; rep < 5; rep++) {
            start(&mp);
            check(oti_shadow_publish(sh, 1, &snap), "publish", "");
            stop(&mp);
            ot_snapshot_release(snap);
        }
        printf("bench.delta.snapshot_publish %.3f ms\n", mp.best * 1e3);
        for (rep = 0; rep < 5; rep++) {
            ot_snapshot *s0, *s1;
            oti_shadow *c;
            /* clustered: 1% of rows in one contiguous run */
            check(oti_shadow_publish(sh, 1, &s0), "publish", "");
            oti_params_clear_touched(local);
            for (i = 0; i < nrows; i++)
                oti_block_touch(&local->blocks[0], 1000000 + i);
            check(oti_shadow_clone(&s0->body, &c), "clone", "");
            check(oti_shadow_into_snapshot(c, &s1), "snapshot", "");
            start(&mc);
            check(oti_snapshot_refresh(s1, local), "refresh", "");
            stop(&mc);
            ot_snapshot_release(s1);
            /* scattered: 1% of rows at random */
            oti_params_clear_touched(local);
            for (i = 0; i < nrows; i++)
                oti_block_touch(&local->blocks[0], rows[i]);
            check(oti_shadow_clone(&s0->body, &c), "clone", "");
            check(oti_shadow_into_snapshot(c, &s1), "snapshot", "");
            start(&ms);
            check(oti_snapshot_refresh(s1, local), "refresh", "");
            stop(&ms);
            ot_snapshot_release(s1);
            /* a full copy, for scale */
            start(&mf);
            check(oti_shadow_create(NULL, local, OTI_SRC_WEIGHTS, 0, &c), "copy", "");
            stop(&mf);
            oti_shadow_destroy(c);
            ot_snapshot_release(s0);
        }
        printf("bench.delta.snapshot_update_1pct_clustered %.3f ms\n", mc.best * 1e3);
        print_cycles("snapshot_update_1pct_clustered", &mc, (double)nrows, "touched_row");
        printf("bench.delta.snapshot_update_1pct_scattered %.3f ms\n", ms.best * 1e3);
        print_cycles("snapshot_update_1pct_scattered", &ms, (double)nrows, "touched_row");
        printf("bench.delta.snapshot_full_copy %.3f ms\n", mf.best * 1e3);
        print_cycles("snapshot_full_copy", &mf, (double)ROWS, "row");
    }

    free(rows);
    free(frame);
    free(scratch);
    params_free(local);
    params_free(recv);
    oti_shadow_destroy(sh);
    ot_delta_encoder_destroy(e);
    ot_delta_decoder_destroy(d);
    return 0;
}
