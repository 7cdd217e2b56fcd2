/*
 * config.c - options: the table of every option, typed setters and getters,
 * and introspection.
 *
 * To add an option: append its id to enum ot_option in the header, then add
 * one row to option_table below (kept sorted by id).
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct option_def {
    int id;
    const char *name;
    int type;
    int64_t i_def, i_min, i_max;
    double f_def, f_min, f_max;
    const char *s_def;
    const char *choices; /* "a|b|c" for word options, else NULL */
    int (*check)(const char *s); /* extra syntax check for list options */
    const char *doc;
} option_def;

static int check_pairs(const char *s);
static int check_embedding(const char *s);
static int check_widths(const char *s);
static int check_path(const char *s);
static int check_hex_key(const char *s);

#define I64(id, name, def, lo, hi, doc) \
    {id, name, OT_TYPE_I64, def, lo, hi, 0, 0, 0, NULL, NULL, NULL, doc}
#define F64(id, name, def, lo, hi, doc) \
    {id, name, OT_TYPE_F64, 0, 0, 0, def, lo, hi, NULL, NULL, NULL, doc}
#define WORD(id, name, def, choices, doc) \
    {id, name, OT_TYPE_STR, 0, 0, 0, 0, 0, 0, def, choices, NULL, doc}
#define LIST(id, name, def, check, doc) \
    {id, name, OT_TYPE_STR, 0, 0, 0, 0, 0, 0, def, NULL, check, doc}

static const option_def option_table[] = {
    WORD(OT_OPT_FORMAT, "format", "vw", "vw|libsvm", "input format of examples"),
    WORD(OT_OPT_ON_ERROR, "on_error", "stop", "stop|skip", "what a reader does with a malformed line"),
    WORD(OT_OPT_HASH, "hash", "strings", "strings|all",
         "feature-name hashing: 'strings' maps numeric names to their value, 'all' hashes every name"),
    I64(OT_OPT_MAX_LINE, "max_line", 1 << 20, 64, INT64_C(1) << 30, "longest accepted input line in bytes"),
    I64(OT_OPT_SEED, "seed", 0, 0, UINT32_MAX, "seed for hashing, initialisation and stochastic rounding"),

    I64(OT_OPT_BITS, "bits", 18, 1, 30, "log2 of the number of wide (hashed linear) weights"),
    WORD(OT_OPT_LOSS, "loss", "logistic", "logistic|squared", "loss function"),
    WORD(OT_OPT_OPTIMIZER, "optimizer", "ftrl", "sgd|adagrad|ftrl", "per-coordinate optimizer"),
    F64(OT_OPT_LEARNING_RATE, "learning_rate", 0.5, 0.0, 1e6, "learning rate (SGD and AdaGrad)"),
    F64(OT_OPT_POWER_T, "power_t", 0.5, 0.0, 1.0, "SGD rate decay: rate / (1 + t)^power_t"),
    F64(OT_OPT_L1, "l1", 0.0, 0.0, 1e6, "L1 regularisation strength"),
    F64(OT_OPT_L2, "l2", 0.0, 0.0, 1e6, "L2 regularisation strength"),
    F64(OT_OPT_FTRL_ALPHA, "ftrl_alpha", 0.1, 1e-9, 1e6, "FTRL-Proximal alpha (per-coordinate rate scale)"),
    F64(OT_OPT_FTRL_BETA, "ftrl_beta", 1.0, 0.0, 1e6, "FTRL-Proximal beta (rate smoothing)"),
    LIST(OT_OPT_QUADRATIC, "quadratic", "", check_pairs, "namespace pairs to cross, e.g. \"ab,cd\""),
    LIST(OT_OPT_EMBEDDING, "embedding", "", check_embedding,
         "namespaces with embedding tables and their widths, e.g. \"u:16,i:16\""),
    I64(OT_OPT_EMBEDDING_BITS, "embedding_bits", 16, 1, 26, "log2 of the rows of each embedding table"),
    LIST(OT_OPT_HIDDEN_LAYERS, "hidden_layers", "", check_widths,
         "hidden layer widths of the deep part, e.g. \"64,32\"; empty: wide only"),
    WORD(OT_OPT_ACTIVATION, "activation", "relu", "relu|tanh|sigmoid|linear", "activation of hidden layers"),
    I64(OT_OPT_DENSE_DIM, "dense_dim", 0, 0, 1 << 20, "length of the examples' dense vectors"),
    F64(OT_OPT_INIT_SCALE, "init_scale", 0.1, 0.0, 100.0, "scale of the deep and embedding initial weights"),

    WORD(OT_OPT_DELTA_SOURCE, "delta_source", "state", "weights|state|both",
         "what snapshots and deltas carry: weights, optimizer state (weights of blocks without state), or both"),
    F64(OT_OPT_THRESHOLD, "threshold", 0.0, 0.0, 1e38, "smallest absolute change a delta sends"),
    F64(OT_OPT_THRESHOLD_REL, "threshold_rel", 0.0, 0.0, 1e38,
        "smallest change a delta sends, relative to the magnitude of the snapshot value"),
    I64(OT_OPT_MAX_ENTRIES, "max_entries", 0, 0, UINT32_MAX,
        "most values a delta frame selects, largest changes first (0: no limit)"),
    WORD(OT_OPT_VALUE_ENCODING, "value_encoding", "fp32", "fp32|fp16|bf16|int8",
         "how delta values are encoded (int8: a scale per section)"),
    I64(OT_OPT_STOCHASTIC_ROUNDING, "stochastic_rounding", 0, 0, 1,
        "1: round encoded delta values stochastically (seeded by seed)"),
    I64(OT_OPT_MAX_MESSAGE, "max_message", 4 << 20, 4096, UINT32_MAX,
        "largest delta frame in bytes; larger updates are split or sent in later frames"),

    I64(OT_OPT_TRAINER_ID, "trainer_id", 1, 1, UINT32_MAX, "this trainer's id, unique among the server's trainers"),
    I64(OT_OPT_SYNC_EVERY_EXAMPLES, "sync_every_examples", 250, 0, INT64_C(1) << 40,
        "a trainer syncs after this many examples (0: not by count)"),
    I64(OT_OPT_SYNC_INTERVAL_MS, "sync_interval_ms", 1000, 0, INT64_C(86400000),
        "a trainer syncs when this long has passed since its last sync (0: not by time)"),
    I64(OT_OPT_RT_INTERVAL_MS, "rt_interval_ms", 100, 0, INT64_C(86400000),
        "period of real-time updates to predictors (0: only when asked)"),
    I64(OT_OPT_FULL_INTERVAL_MS, "full_interval_ms", 10000, 0, INT64_C(86400000) * 7,
        "period of full updates to predictors, at least 10 x rt_interval_ms (0: only when asked)"),
    F64(OT_OPT_RT_THRESHOLD, "rt_threshold", 1e-4, 0.0, 1e38,
        "smallest |master - published| a real-time update sends"),
    I64(OT_OPT_RT_MAX_ENTRIES, "rt_max_entries", 0, 0, UINT32_MAX,
        "most weights in one real-time update, largest changes first (0: no cap)"),
    WORD(OT_OPT_AGGREGATION, "aggregation", "sum", "sum|mean",
         "how the server adds deltas into the master: as they are, or scaled by 1/num_trainers"),
    I64(OT_OPT_NUM_TRAINERS, "num_trainers", 1, 1, 1 << 20, "trainers expected (for aggregation \"mean\")"),
    I64(OT_OPT_CHANGE_LOG_BYTES, "change_log_bytes", INT64_C(64) << 20, 0, INT64_C(1) << 40,
        "bytes of recent deltas a server keeps to build aggregated updates"),
    I64(OT_OPT_TIMEOUT_MS, "timeout_ms", 5000, 1, INT64_C(86400000), "how long a request waits for its reply"),
    I64(OT_OPT_RECONNECT_MS, "reconnect_ms", 100, 1, 600000, "first delay before redialing a lost peer"),
    I64(OT_OPT_RECV_MAX_BYTES, "recv_max_bytes", INT64_C(64) << 20, 1024, INT64_C(1) << 32,
        "largest message a socket accepts"),
    WORD(OT_OPT_GAP_POLICY, "gap_policy", "request", "request|wait",
         "what a predictor does when it misses an update: request a full copy, or wait for the next full update"),
    I64(OT_OPT_REQUEST_CONTEXTS, "request_contexts", 4, 1, 1024, "requests a server handles at once"),
    I64(OT_OPT_SHARD_ID, "shard_id", 0, 0, 65535, "this server's shard"),
    I64(OT_OPT_NUM_SHARDS, "num_shards", 1, 1, 65536, "number of shards the model's index space is split into"),
    I64(OT_OPT_SYNC_RETRIES, "sync_retries", 3, 0, 1000, "times a trainer resends a sync that got no reply"),
    LIST(OT_OPT_CHECKPOINT_DIR, "checkpoint_dir", "", check_path,
         "a server's directory for checkpoints and its write-ahead log (empty: no durability)"),
    I64(OT_OPT_CHECKPOINT_INTERVAL_MS, "checkpoint_interval_ms", 60000, 0, INT64_C(86400000) * 7,
        "period of a server's checkpoints (0: only when asked and at stop)"),
    WORD(OT_OPT_WAL, "wal", "on", "off|on",
         "a server's write-ahead log: every applied delta is logged before it is acknowledged"),
    WORD(OT_OPT_WAL_SYNC, "wal_sync", "every", "every|interval|none",
         "when the log is fsynced: before each reply, every wal_sync_interval_ms, or never (the OS decides)"),
    I64(OT_OPT_WAL_SYNC_INTERVAL_MS, "wal_sync_interval_ms", 100, 1, INT64_C(86400000),
        "period of log syncs for wal_sync \"interval\""),
    LIST(OT_OPT_TLS_CERT_KEY_FILE, "tls_cert_key_file", "", check_path,
         "PEM file holding this end's certificate then its private key (tls+tcp://)"),
    LIST(OT_OPT_TLS_CA_FILE, "tls_ca_file", "", check_path,
         "PEM file of the certificates trusted to sign the peer's (tls+tcp://)"),
    WORD(OT_OPT_TLS_AUTH, "tls_auth", "required", "none|optional|required",
         "how this end verifies its TLS peer's certificate"),
    LIST(OT_OPT_TLS_SERVER_NAME, "tls_server_name", "", check_path,
         "name a dialer expects in the server's certificate (empty: the URL's host)"),
    LIST(OT_OPT_HMAC_KEY, "hmac_key", "", check_hex_key,
         "shared key in hex (1 to 256 bytes) authenticating every message; empty: off"),
    I64(OT_OPT_MAX_DELTA_ENTRIES, "max_delta_entries", INT64_C(1) << 24, 1, UINT32_MAX,
        "most values a server accepts in one ADD frame; larger frames are refused"),
    I64(OT_OPT_MAX_PREDICT_BATCH, "max_predict_batch", 4096, 1, INT64_C(1) << 24,
        "most examples a predictor accepts in one prediction request"),
    I64(OT_OPT_MAX_CONNECTIONS, "max_connections", 1024, 0, 65536,
        "connections each of a role's sockets holds at once; more are closed at once and counted (0: no limit)"),
    I64(OT_OPT_SYNC_PIECE_ROWS, "sync_piece_rows", 131072, 0, INT64_C(1) << 32,
        "touched rows a frame of a large sync carries, about (0: one frame a shard, cut only by max_message)"),
};

#define NOPT (sizeof(option_table) / sizeof(option_table[0]))

typedef union option_value {
    int64_t i;
    double f;
    char *s; /* NULL: the default (static) string */
} option_value;

struct ot_config {
    oti_alloc alloc;
    option_value v[NOPT];
    char errmsg[OTI_ERRMSG_LEN];
};

static const option_def *find(int id, size_t *pos)
{
    size_t lo = 0, hi = NOPT;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (option_table[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < NOPT && option_table[lo].id == id) {
        if (pos != NULL)
            *pos = lo;
        return &option_table[lo];
    }
    return NULL;
}

/* ---- list syntax checks --------------------------------------------------- */

/* "ab,cd": pairs of namespace bytes, comma separated. */
static int check_pairs(const char *s)
{
    while (*s) {
        if (s[0] == ',' || s[1] == '\0' || s[1] == ',')
            return -1;
        s += 2;
        if (*s == ',') {
            if (s[1] == '\0')
                return -1;
            s++;
        } else if (*s != '\0') {
            return -1;
        }
    }
    return 0;
}

static int parse_uint(const char **sp, long lo, long hi)
{
    char *end;
    long v;

    if (**sp < '0' || **sp > '9')
        return -1;
    errno = 0;
    v = strtol(*sp, &end, 10);
    if (errno != 0 || v < lo || v > hi)
        return -1;
    *sp = end;
    return 0;
}

/* "u:16,i:8": namespace byte, ':', width 1..1024. */
static int check_embedding(const char *s)
{
    while (*s) {
        if (s[0] == ',' || s[0] == ':' || s[1] != ':')
            return -1;
        s += 2;
        if (parse_uint(&s, 1, 1024) != 0)
            return -1;
        if (*s == ',' && s[1] != '\0')
            s++;
        else if (*s != '\0')
            return -1;
    }
    return 0;
}

/* "64,32": widths 1..65536, at most 16 layers. */
static int check_widths(const char *s)
{
    int n = 0;

    while (*s) {
        if (parse_uint(&s, 1, 65536) != 0 || ++n > 16)
            return -1;
        if (*s == ',' && s[1] != '\0')
            s++;
        else if (*s != '\0')
            return -1;
    }
    return 0;
}

/* Paths and names: any text without control characters, at most 4095 bytes. */
static int check_path(const char *s)
{
    size_t n = 0;

    for (; *s; s++, n++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f || n >= 4095)
            return -1;
    return 0;
}

/* "" or an even number of hex digits, at most 512 (256 bytes). */
static int check_hex_key(const char *s)
{
    size_t n = strlen(s), i;

    if (n % 2 != 0 || n > 512)
        return -1;
    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
              (s[i] >= 'A' && s[i] <= 'F')))
            return -1;
    return 0;
}

static int word_index(const char *choices, const char *w)
{
    size_t wl = strlen(w);
    int idx = 0;
    const char *p = choices;

    for (;;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == wl && memcmp(p, w, wl) == 0)
            return idx;
        if (bar == NULL)
            return -1;
        p = bar + 1;
        idx++;
    }
}

/* ---- handle ---------------------------------------------------------------- */

static void set_defaults(ot_config *cfg)
{
    size_t i;

    for (i = 0; i < NOPT; i++) {
        switch (option_table[i].type) {
        case OT_TYPE_I64: cfg->v[i].i = option_table[i].i_def; break;
        case OT_TYPE_F64: cfg->v[i].f = option_table[i].f_def; break;
        default: cfg->v[i].s = NULL; break;
        }
    }
}

static int has_strings(const ot_config *cfg)
{
    size_t i;

    for (i = 0; i < NOPT; i++)
        if (option_table[i].type == OT_TYPE_STR && cfg->v[i].s != NULL)
            return 1;
    return 0;
}

ot_status ot_config_create(ot_config **out)
{
    ot_config *cfg;

    if (out == NULL)
        return OT_EINVAL;
    cfg = oti_calloc(NULL, 1, sizeof(*cfg));
    if (cfg == NULL)
        return OT_ENOMEM;
    set_defaults(cfg);
    *out = cfg;
    return OT_OK;
}

static void free_strings(ot_config *cfg)
{
    size_t i;

    for (i = 0; i < NOPT; i++) {
        if (option_table[i].type == OT_TYPE_STR && cfg->v[i].s != NULL) {
            oti_free(&cfg->alloc, cfg->v[i].s, strlen(cfg->v[i].s) + 1);
            cfg->v[i].s = NULL;
        }
    }
}

void ot_config_destroy(ot_config *cfg)
{
    if (cfg == NULL)
        return;
    free_strings(cfg);
    oti_free(NULL, cfg, sizeof(*cfg));
}

ot_status ot_config_clone(const ot_config *cfg, ot_config **out)
{
    ot_config *c;
    size_t i;

    if (cfg == NULL || out == NULL)
        return OT_EINVAL;
    c = oti_malloc(NULL, sizeof(*c));
    if (c == NULL)
        return OT_ENOMEM;
    memcpy(c, cfg, sizeof(*c));
    for (i = 0; i < NOPT; i++) {
        if (option_table[i].type == OT_TYPE_STR && cfg->v[i].s != NULL) {
            c->v[i].s = oti_strdup(&cfg->alloc, cfg->v[i].s);
            if (c->v[i].s == NULL) {
                while (i-- > 0)
                    if (option_table[i].type == OT_TYPE_STR && c->v[i].s != NULL)
                        oti_free(&c->alloc, c->v[i].s, strlen(c->v[i].s) + 1);
                oti_free(NULL, c, sizeof(*c));
                return OT_ENOMEM;
            }
        }
    }
    *out = c;
    return OT_OK;
}

ot_status ot_config_set_allocator(ot_config *cfg, ot_alloc_fn fn, void *user)
{
    if (cfg == NULL)
        return OT_EINVAL;
    if (has_strings(cfg))
        return oti_err(cfg->errmsg, OT_ESTATE, "set the allocator before any string option");
    /* The config struct itself always comes from malloc; what it allocates
     * from now on, and every handle made from it, uses fn. */
    cfg->alloc.fn = fn;
    cfg->alloc.user = fn != NULL ? user : NULL;
    return OT_OK;
}

static ot_status lookup(const ot_config *cfg, int option, int type, size_t *pos)
{
    const option_def *d = find(option, pos);

    (void)cfg;
    if (d == NULL)
        return OT_ENOTSUP;
    if (d->type != type)
        return OT_EBADTYPE;
    return OT_OK;
}

ot_status ot_config_set_i64(ot_config *cfg, int option, int64_t value)
{
    size_t pos;
    ot_status st;

    if (cfg == NULL)
        return OT_EINVAL;
    if ((st = lookup(cfg, option, OT_TYPE_I64, &pos)) != OT_OK)
        return oti_err(cfg->errmsg, st, "option %d: %s", option, ot_strerror(st));
    if (value < option_table[pos].i_min || value > option_table[pos].i_max)
        return oti_err(cfg->errmsg, OT_ERANGE, "%s: %lld is outside [%lld, %lld]",
                       option_table[pos].name, (long long)value,
                       (long long)option_table[pos].i_min, (long long)option_table[pos].i_max);
    cfg->v[pos].i = value;
    return OT_OK;
}

ot_status ot_config_set_f64(ot_config *cfg, int option, double value)
{
    size_t pos;
    ot_status st;

    if (cfg == NULL)
        return OT_EINVAL;
    if ((st = lookup(cfg, option, OT_TYPE_F64, &pos)) != OT_OK)
        return oti_err(cfg->errmsg, st, "option %d: %s", option, ot_strerror(st));
    if (!(value >= option_table[pos].f_min && value <= option_table[pos].f_max))
        return oti_err(cfg->errmsg, OT_ERANGE, "%s: %g is outside [%g, %g]", option_table[pos].name,
                       value, option_table[pos].f_min, option_table[pos].f_max);
    cfg->v[pos].f = value;
    return OT_OK;
}

ot_status ot_config_set_str(ot_config *cfg, int option, const char *value)
{
    size_t pos;
    ot_status st;
    const option_def *d;
    char *copy;

    if (cfg == NULL || value == NULL)
        return OT_EINVAL;
    if ((st = lookup(cfg, option, OT_TYPE_STR, &pos)) != OT_OK)
        return oti_err(cfg->errmsg, st, "option %d: %s", option, ot_strerror(st));
    d = &option_table[pos];
    if (d->choices != NULL && word_index(d->choices, value) < 0)
        return oti_err(cfg->errmsg, OT_ERANGE, "%s: \"%s\" is not one of %s", d->name, value,
                       d->choices);
    if (d->check != NULL && d->check(value) != 0)
        return oti_err(cfg->errmsg, OT_ERANGE, "%s: cannot parse \"%s\"", d->name, value);
    copy = oti_strdup(&cfg->alloc, value);
    if (copy == NULL)
        return OT_ENOMEM;
    if (cfg->v[pos].s != NULL)
        oti_free(&cfg->alloc, cfg->v[pos].s, strlen(cfg->v[pos].s) + 1);
    cfg->v[pos].s = copy;
    return OT_OK;
}

ot_status ot_config_set_text(ot_config *cfg, int option, const char *text)
{
    const option_def *d;
    char *end;

    if (cfg == NULL || text == NULL)
        return OT_EINVAL;
    d = find(option, NULL);
    if (d == NULL)
        return oti_err(cfg->errmsg, OT_ENOTSUP, "option %d: %s", option, ot_strerror(OT_ENOTSUP));
    switch (d->type) {
    case OT_TYPE_I64: {
        long long v;
        errno = 0;
        v = strtoll(text, &end, 0);
        if (errno != 0 || end == text || *end != '\0') {
            if (strcmp(text, "true") == 0 || strcmp(text, "on") == 0)
                v = 1;
            else if (strcmp(text, "false") == 0 || strcmp(text, "off") == 0)
                v = 0;
            else
                return oti_err(cfg->errmsg, OT_ERANGE, "%s: \"%s\" is not an integer", d->name, text);
        }
        return ot_config_set_i64(cfg, option, v);
    }
    case OT_TYPE_F64: {
        double v;
        errno = 0;
        v = strtod(text, &end);
        if (errno != 0 || end == text || *end != '\0')
            return oti_err(cfg->errmsg, OT_ERANGE, "%s: \"%s\" is not a number", d->name, text);
        return ot_config_set_f64(cfg, option, v);
    }
    default:
        return ot_config_set_str(cfg, option, text);
    }
}

ot_status ot_config_get_i64(const ot_config *cfg, int option, int64_t *out)
{
    size_t pos;
    ot_status st;

    if (cfg == NULL || out == NULL)
        return OT_EINVAL;
    if ((st = lookup(cfg, option, OT_TYPE_I64, &pos)) != OT_OK)
        return st;
    *out = cfg->v[pos].i;
    return OT_OK;
}

ot_status ot_config_get_f64(const ot_config *cfg, int option, double *out)
{
    size_t pos;
    ot_status st;

    if (cfg == NULL || out == NULL)
        return OT_EINVAL;
    if ((st = lookup(cfg, option, OT_TYPE_F64, &pos)) != OT_OK)
        return st;
    *out = cfg->v[pos].f;
    return OT_OK;
}

ot_status ot_config_get_str(const ot_config *cfg, int option, const char **out)
{
    size_t pos;
    ot_status st;

    if (cfg == NULL || out == NULL)
        return OT_EINVAL;
    if ((st = lookup(cfg, option, OT_TYPE_STR, &pos)) != OT_OK)
        return st;
    *out = cfg->v[pos].s != NULL ? cfg->v[pos].s : option_table[pos].s_def;
    return OT_OK;
}

ot_status ot_config_validate(ot_config *cfg)
{
    if (cfg == NULL)
        return OT_EINVAL;
    cfg->errmsg[0] = '\0';
    {
        int64_t rt = oti_cfg_i64(cfg, OT_OPT_RT_INTERVAL_MS);
        int64_t full = oti_cfg_i64(cfg, OT_OPT_FULL_INTERVAL_MS);
        if (rt > 0 && full > 0 && full < 10 * rt)
            return oti_err(cfg->errmsg, OT_EINVAL,
                           "full_interval_ms (%lld) must be at least 10 x rt_interval_ms (%lld)",
                           (long long)full, (long long)rt);
    }
    if (oti_cfg_i64(cfg, OT_OPT_SHARD_ID) >= oti_cfg_i64(cfg, OT_OPT_NUM_SHARDS))
        return oti_err(cfg->errmsg, OT_EINVAL, "shard_id (%lld) must be below num_shards (%lld)",
                       (long long)oti_cfg_i64(cfg, OT_OPT_SHARD_ID),
                       (long long)oti_cfg_i64(cfg, OT_OPT_NUM_SHARDS));
    return OT_OK;
}

const char *ot_config_errmsg(const ot_config *cfg)
{
    return cfg != NULL ? cfg->errmsg : "";
}

/* ---- introspection ------------------------------------------------------- */

const char *ot_option_name(int option)
{
    const option_def *d = find(option, NULL);
    return d ? d->name : NULL;
}

ot_status ot_option_by_name(const char *name, int *out)
{
    size_t i;

    if (name == NULL || out == NULL)
        return OT_EINVAL;
    for (i = 0; i < NOPT; i++) {
        if (strcmp(option_table[i].name, name) == 0) {
            *out = option_table[i].id;
            return OT_OK;
        }
    }
    return OT_ENOTSUP;
}

int ot_option_type(int option)
{
    const option_def *d = find(option, NULL);
    return d ? d->type : OT_TYPE_NONE;
}

const char *ot_option_doc(int option)
{
    const option_def *d = find(option, NULL);
    return d ? d->doc : NULL;
}

const char *ot_option_choices(int option)
{
    const option_def *d = find(option, NULL);
    return d ? d->choices : NULL;
}

ot_status ot_option_bounds_i64(int option, int64_t *min, int64_t *max)
{
    size_t pos;
    ot_status st = lookup(NULL, option, OT_TYPE_I64, &pos);

    if (st != OT_OK)
        return st;
    if (min)
        *min = option_table[pos].i_min;
    if (max)
        *max = option_table[pos].i_max;
    return OT_OK;
}

ot_status ot_option_bounds_f64(int option, double *min, double *max)
{
    size_t pos;
    ot_status st = lookup(NULL, option, OT_TYPE_F64, &pos);

    if (st != OT_OK)
        return st;
    if (min)
        *min = option_table[pos].f_min;
    if (max)
        *max = option_table[pos].f_max;
    return OT_OK;
}

int ot_option_next(int option)
{
    size_t i;

    for (i = 0; i < NOPT; i++)
        if (option_table[i].id > option)
            return option_table[i].id;
    return 0;
}

/* ---- internal typed reads ----------------------------------------------- */

int64_t oti_cfg_i64(const ot_config *cfg, int option)
{
    size_t pos;
    const option_def *d = find(option, &pos);

    if (d == NULL)
        return 0;
    return cfg != NULL ? cfg->v[pos].i : d->i_def;
}

double oti_cfg_f64(const ot_config *cfg, int option)
{
    size_t pos;
    const option_def *d = find(option, &pos);

    if (d == NULL)
        return 0;
    return cfg != NULL ? cfg->v[pos].f : d->f_def;
}

const char *oti_cfg_str(const ot_config *cfg, int option)
{
    size_t pos;
    const option_def *d = find(option, &pos);

    if (d == NULL)
        return "";
    return cfg != NULL && cfg->v[pos].s != NULL ? cfg->v[pos].s : d->s_def;
}

int oti_cfg_choice(const ot_config *cfg, int option)
{
    const option_def *d = find(option, NULL);

    if (d == NULL || d->choices == NULL)
        return 0;
    return word_index(d->choices, oti_cfg_str(cfg, option));
}

oti_alloc oti_cfg_alloc(const ot_config *cfg)
{
    oti_alloc a = {NULL, NULL};
    return cfg != NULL ? cfg->alloc : a;
}
