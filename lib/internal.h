/*
 * internal.h - declarations shared between the library's files (oti_*).
 * Nothing here is exported; the linker version script keeps it that way.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_INTERNAL_H
#define OT_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "onlinetrain.h"

#if defined(__GNUC__)
#define OTI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define OTI_LIKELY(x) __builtin_expect(!!(x), 1)
#define OTI_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define OTI_PRINTF(f, a)
#define OTI_LIKELY(x) (x)
#define OTI_UNLIKELY(x) (x)
#endif

/* ---- allocator (alloc.c) ---------------------------------------------- */

/* An allocator as handles keep it: the user's function, or NULL for malloc. */
typedef struct oti_alloc {
    ot_alloc_fn fn;
    void *user;
} oti_alloc;

void *oti_malloc(const oti_alloc *a, size_t size);
void *oti_calloc(const oti_alloc *a, size_t n, size_t size); /* overflow-checked */
void *oti_realloc(const oti_alloc *a, void *p, size_t old_size, size_t new_size);
void oti_free(const oti_alloc *a, void *p, size_t size);
char *oti_strdup(const oti_alloc *a, const char *s);  /* free with strlen(s)+1 */

/*
 * Grows *pp (an array of elem-sized items with *cap capacity) to hold at
 * least `need` items, doubling.  Returns 0 on success, -1 on overflow/ENOMEM
 * (the array is untouched then).
 */
int oti_grow(const oti_alloc *a, void **pp, size_t *cap, size_t need, size_t elem);

/* Makes an ot_buf that takes ownership of `data` (allocated with `a`, `cap` bytes). */
ot_buf *oti_buf_wrap(const oti_alloc *a, uint8_t *data, size_t size, size_t cap);
/* Allocates an ot_buf of `size` bytes to fill in. */
ot_buf *oti_buf_new(const oti_alloc *a, size_t size);
uint8_t *oti_buf_mut(ot_buf *b);
/* Makes b's size `size` when that is smaller (its capacity stays). */
void oti_buf_shrink(ot_buf *b, size_t size);

/* ---- errors (status.c) ------------------------------------------------- */

#define OTI_ERRMSG_LEN 256

/* Formats a detail message into buf (OTI_ERRMSG_LEN bytes) and returns st. */
ot_status oti_err(char *buf, ot_status st, const char *fmt, ...) OTI_PRINTF(3, 4);

/* ---- config (config.c) ------------------------------------------------- */

/* Typed reads of a valid option id; a NULL cfg reads the default. */
int64_t oti_cfg_i64(const ot_config *cfg, int option);
double oti_cfg_f64(const ot_config *cfg, int option);
const char *oti_cfg_str(const ot_config *cfg, int option);
/* Index of a choice option's word in its choices list (0-based). */
int oti_cfg_choice(const ot_config *cfg, int option);
/* The config's allocator (the default one for a NULL cfg). */
oti_alloc oti_cfg_alloc(const ot_config *cfg);

/* ---- hashing (hash.c) -------------------------------------------------- */

uint32_t oti_murmur3(const void *data, size_t len, uint32_t seed);
/* CRC32C (Castagnoli), as used by file and wire formats; crc starts at 0.
 * Uses the SSE4.2 instruction on four streams where the processor has it. */
uint32_t oti_crc32c(uint32_t crc, const void *data, size_t len);
/* The same with the portable table code only (tests compare the two). */
uint32_t oti_crc32c_portable(uint32_t crc, const void *data, size_t len);
/* The CRC32C of A B from crc1 = CRC(A), crc2 = CRC(B) and B's length. */
uint32_t oti_crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t len2);

/* ---- examples (example.c) ---------------------------------------------- */

typedef struct oti_feat {
    uint32_t hash;  /* full 32-bit hash; the model masks it */
    float value;
    uint8_t ns;     /* namespace's first byte (' ' for the default) */
} oti_feat;

struct ot_example {
    oti_alloc alloc;
    int hash_all;     /* option hash == "all" */
    int format;       /* option format: 0 vw, 1 libsvm */
    float label;
    float weight;
    float initial;    /* VW's third label field (initial prediction); 0 if absent */
    int has_label;
    char *tag;
    size_t tag_len, tag_cap;
    oti_feat *feat;
    size_t nfeat, feat_cap;
    float *dense;
    size_t ndense, dense_cap;
    char errmsg[OTI_ERRMSG_LEN];
};

/* Appends a feature, growing the array; OT_ENOMEM on failure. */
ot_status oti_example_push(ot_example *ex, uint8_t ns, uint32_t hash, float value);

/* Hashes a namespace name / a feature name within a namespace as VW does. */
uint32_t oti_hash_namespace(const char *s, size_t len, int hash_all);
uint32_t oti_hash_feature(const char *s, size_t len, uint32_t ns_hash, int hash_all);

/* Parsers (parse.c): fill ex from one line; errmsg gets "column N: ...". */
ot_status oti_parse_vw(ot_example *ex, const char *line, size_t len);
ot_status oti_parse_libsvm(ot_example *ex, const char *line, size_t len);

/* ---- trainer (trainer.c) ------------------------------------------------ */

/* Called by a single-shard trainer once per delta frame the server
 * acknowledged (applied, or duplicate: applied by an earlier attempt), with
 * the frame's bytes exactly as sent; the bytes are valid only during the
 * call.  For `ot trainer --ack-log` (scripts/chaos.sh); not for sharded
 * trainers.  fn NULL removes the hook. */
typedef void (*oti_trainer_ack_fn)(void *ctx, const uint8_t *frame, size_t len, int duplicate);
void oti_trainer_set_ack_hook(ot_trainer *tr, oti_trainer_ack_fn fn, void *ctx);

/* ---- predictor (predictor.c) ------------------------------------------- */

/* Test hook: sets the transport test hook (oti_sock_set_test_hook) on the
 * predictor's SUB socket.  OT_ESTATE unless subscribed and running. */
ot_status oti_predictor_set_test_hook(ot_predictor *p, uint32_t drop_every, uint32_t delay_ms);

#endif /* OT_INTERNAL_H */
