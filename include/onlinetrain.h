/*
 * onlinetrain.h - the public API of libonlinetrain.
 *
 * libonlinetrain trains machine-learning models online, on a live stream of
 * examples, while other workers serve predictions from copies that are kept
 * fresh with small real-time updates and rare full updates.
 *
 * This header is the whole contract.  Conventions that hold everywhere:
 *
 *  - Every fallible call returns an ::ot_status; results go through
 *    out-parameters, which are left untouched on error unless said otherwise.
 *  - Handles are opaque.  Their detail message for the last error is read
 *    with the handle's `*_errmsg` function.
 *  - Inputs are borrowed for the duration of a call; anything the library
 *    keeps, it copies.  Ownership of something passed in moves only on
 *    success.
 *  - `*_destroy` and `*_release` accept NULL.
 *  - The library never aborts, exits or prints.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef ONLINETRAIN_H
#define ONLINETRAIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @defgroup core Core: versions, status codes, buffers, allocators
 *  @{ */

/** Marks every public declaration; exported from the shared library. */
#if defined(_WIN32)
#  if defined(OT_BUILDING_LIBRARY)
#    define OT_API __declspec(dllexport)
#  else
#    define OT_API
#  endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#  define OT_API __attribute__((visibility("default")))
#else
#  define OT_API
#endif

/** Major version: incompatible API or ABI changes. */
#define OT_VERSION_MAJOR 0
/** Minor version: additions. */
#define OT_VERSION_MINOR 1
/** Patch version: fixes. */
#define OT_VERSION_PATCH 0
/** The version as one number, MAJOR*10000 + MINOR*100 + PATCH. */
#define OT_VERSION_NUMBER \
    (OT_VERSION_MAJOR * 10000 + OT_VERSION_MINOR * 100 + OT_VERSION_PATCH)
/** @cond INTERNAL */
#define OT_STR_(x) #x
#define OT_STR(x) OT_STR_(x)
/** @endcond */
/** The version as a string, "MAJOR.MINOR.PATCH". */
#define OT_VERSION_STRING \
    OT_STR(OT_VERSION_MAJOR) "." OT_STR(OT_VERSION_MINOR) "." OT_STR(OT_VERSION_PATCH)

/**
 * Status codes.  Every value is explicit and is never renumbered or reused;
 * new codes are only appended.  docs/errors.md lists them (a test checks it).
 */
typedef enum ot_status {
    OT_OK = 0,            /**< Success. */
    OT_EINVAL = 1,        /**< An argument is invalid (NULL handle, bad value). */
    OT_ENOMEM = 2,        /**< Out of memory. */
    OT_ENOTSUP = 3,       /**< Not supported (unknown option id, feature not built). */
    OT_EBADTYPE = 4,      /**< Option set or read with the wrong type. */
    OT_ERANGE = 5,        /**< Value out of the allowed range. */
    OT_ESTATE = 6,        /**< Call not allowed in the handle's current state. */
    OT_ENOSPC = 7,        /**< Caller's buffer too small; the size needed is reported. */
    OT_EFORMAT = 8,       /**< Malformed input (text or bytes). */
    OT_ECORRUPT = 9,      /**< Checksum mismatch or truncated data. */
    OT_EVERSION = 10,     /**< Unknown major version of a file or wire format. */
    OT_EMISMATCH = 11,    /**< Data made for a model of another shape. */
    OT_ENONFINITE = 12,   /**< A NaN or infinite value was refused. */
    OT_EIO = 13,          /**< An operating-system I/O call failed. */
    OT_EEOF = 14,         /**< End of input. */
    OT_ETIMEDOUT = 15,    /**< The operation timed out. */
    OT_ECLOSED = 16,      /**< The handle or connection was closed. */
    OT_ECONNREFUSED = 17, /**< The peer refused the connection. */
    OT_EADDRINUSE = 18,   /**< The address is already in use. */
    OT_EREPLAY = 19,      /**< A message or delta was already seen. */
    OT_EAUTH = 20,        /**< Authentication failed. */
    OT_ETRANSPORT = 21,   /**< Another transport error. */
    OT_ENOENT = 22,       /**< No such file, key or entry. */
    OT_EBUSY = 23,        /**< The resource is busy. */
    OT_ETOOBIG = 24       /**< A message or value exceeds a configured limit. */
} ot_status;

/**
 * A constant English message for a status.  Never NULL, for any input
 * (unknown values give "unknown status").  Thread-safe.
 */
OT_API const char *ot_strerror(int status);

/**
 * The status's symbolic name, such as "OT_EINVAL", for logs and binding
 * exceptions.  Never NULL ("OT_UNKNOWN" for unknown values).  Thread-safe.
 */
OT_API const char *ot_status_name(int status);

/** The library's version number at run time (see ::OT_VERSION_NUMBER). */
OT_API uint32_t ot_version(void);

/** The library's version string at run time.  Static; never NULL. */
OT_API const char *ot_version_string(void);

/**
 * A static one-line description of the build: library version, nng version,
 * the BLAS in use (reference or OpenBLAS, detected when first asked) and
 * optional features.  Never NULL.  Thread-safe.
 */
OT_API const char *ot_build_info(void);

/**
 * An allocator, in Lua's form: one function for allocate, resize and free.
 *
 * - `new_size > 0`, `ptr == NULL`: allocate `new_size` bytes.
 * - `new_size > 0`, `ptr != NULL`: resize `ptr` (of `old_size` bytes).
 * - `new_size == 0`: free `ptr` (of `old_size` bytes); return NULL.
 *
 * Returns NULL on failure to allocate.  Memory must be aligned for any
 * type, as malloc's is.  Called from any thread that uses a handle created
 * with it, so it must be thread-safe if those handles are used from several
 * threads.
 */
typedef void *(*ot_alloc_fn)(void *user, void *ptr, size_t old_size, size_t new_size);

/**
 * An owned byte buffer returned by convenience functions.
 * Release it with ot_buf_release(); never free() its data.
 */
typedef struct ot_buf ot_buf;

/** The buffer's bytes.  Valid until ot_buf_release().  NULL for a NULL buf. */
OT_API const uint8_t *ot_buf_data(const ot_buf *buf);

/** The buffer's length in bytes.  0 for a NULL buf. */
OT_API size_t ot_buf_size(const ot_buf *buf);

/** Releases a buffer.  Accepts NULL. */
OT_API void ot_buf_release(ot_buf *buf);

/** @} */

/** @defgroup config Configuration and option introspection
 *
 * An ::ot_config holds options, each set with a typed setter and checked
 * when set.  Handles copy the config they are created from, so a config can
 * be changed or destroyed afterwards.  A config is externally synchronized:
 * one thread at a time.
 *  @{ */

/** An option set. */
typedef struct ot_config ot_config;

/** The type of an option's value. */
typedef enum ot_type {
    OT_TYPE_NONE = 0, /**< Not an option (unknown id). */
    OT_TYPE_I64 = 1,  /**< A 64-bit signed integer (booleans are 0/1). */
    OT_TYPE_F64 = 2,  /**< A double. */
    OT_TYPE_STR = 3   /**< A UTF-8 string; some take one of a fixed set of words. */
} ot_type;

/**
 * Option ids.  Values are never renumbered; new ones are appended in their
 * range (1-99 input and general, 100-199 model, 200-299 delta codec,
 * 300-499 roles and transport).  Each option also has a name (the lower-case
 * word in the comment), used by ot_option_by_name() and the `ot` program.
 */
typedef enum ot_option {
    /* input */
    OT_OPT_FORMAT = 1,          /**< "format": "vw" (default) or "libsvm". */
    OT_OPT_ON_ERROR = 2,        /**< "on_error": "stop" (default) or "skip" bad lines. */
    OT_OPT_HASH = 3,            /**< "hash": "strings" (default) or "all". */
    OT_OPT_MAX_LINE = 4,        /**< "max_line": longest accepted input line in bytes. */
    OT_OPT_SEED = 5,            /**< "seed": seed for hashing, initialisation and rounding. */
    /* model */
    OT_OPT_BITS = 100,          /**< "bits": log2 of the wide weight count (1-30, default 18). */
    OT_OPT_LOSS = 101,          /**< "loss": "logistic" (default) or "squared". */
    OT_OPT_OPTIMIZER = 102,     /**< "optimizer": "sgd", "adagrad" or "ftrl" (default). */
    OT_OPT_LEARNING_RATE = 103, /**< "learning_rate": step size (default 0.5). */
    OT_OPT_POWER_T = 104,       /**< "power_t": SGD rate decay exponent (default 0.5). */
    OT_OPT_L1 = 105,            /**< "l1": L1 regularisation strength (default 0). */
    OT_OPT_L2 = 106,            /**< "l2": L2 regularisation strength (default 0). */
    OT_OPT_FTRL_ALPHA = 107,    /**< "ftrl_alpha": FTRL-Proximal alpha (default 0.1). */
    OT_OPT_FTRL_BETA = 108,     /**< "ftrl_beta": FTRL-Proximal beta (default 1). */
    OT_OPT_QUADRATIC = 109,     /**< "quadratic": namespace pairs to cross, "ab,cd" (default ""). */
    OT_OPT_EMBEDDING = 110,     /**< "embedding": namespaces with embeddings, "ns:dim,..." (default ""). */
    OT_OPT_EMBEDDING_BITS = 111,/**< "embedding_bits": log2 rows of each embedding table (default 16). */
    OT_OPT_HIDDEN_LAYERS = 112, /**< "hidden_layers": widths, "64,32" (default "": wide only). */
    OT_OPT_ACTIVATION = 113,    /**< "activation": "relu" (default), "tanh", "sigmoid", "linear". */
    OT_OPT_DENSE_DIM = 114,     /**< "dense_dim": length of examples' dense vectors (default 0). */
    OT_OPT_INIT_SCALE = 115,    /**< "init_scale": scale of deep/embedding initial weights (default 0.1). */
    /* delta codec */
    OT_OPT_DELTA_SOURCE = 200,  /**< "delta_source": "weights", "state" (default: the optimizer state, and the weights of blocks without state) or "both". */
    OT_OPT_THRESHOLD = 201,     /**< "threshold": smallest |change| sent, absolute (default 0). */
    OT_OPT_THRESHOLD_REL = 202, /**< "threshold_rel": smallest |change| / |snapshot value| sent (default 0). */
    OT_OPT_MAX_ENTRIES = 203,   /**< "max_entries": most values selected per frame, largest first (0: all). */
    OT_OPT_VALUE_ENCODING = 204, /**< "value_encoding": "fp32" (default), "fp16", "bf16" or "int8". */
    OT_OPT_STOCHASTIC_ROUNDING = 205, /**< "stochastic_rounding": 1 rounds encoded values stochastically (default 0). */
    OT_OPT_MAX_MESSAGE = 206,   /**< "max_message": largest delta frame in bytes (default 4 MiB). */
    /* roles and transport */
    OT_OPT_TRAINER_ID = 300,    /**< "trainer_id": this trainer's id in its frames (default 1). */
    OT_OPT_SYNC_EVERY_EXAMPLES = 301, /**< "sync_every_examples": sync after this many examples (default 250; 0: off). */
    OT_OPT_SYNC_INTERVAL_MS = 302,    /**< "sync_interval_ms": sync when this long has passed, checked at each learn (default 1000; 0: off). */
    OT_OPT_RT_INTERVAL_MS = 303,      /**< "rt_interval_ms": period of real-time updates (default 100; 0: only ot_param_server_publish). */
    OT_OPT_FULL_INTERVAL_MS = 304,    /**< "full_interval_ms": period of full updates, at least 10 x rt_interval_ms (default 10000; 0: only on demand). */
    OT_OPT_RT_THRESHOLD = 305,        /**< "rt_threshold": smallest |master - published| sent in a real-time update (default 1e-4). */
    OT_OPT_RT_MAX_ENTRIES = 306,      /**< "rt_max_entries": most weights per real-time update, largest changes first (default 0: no cap). */
    OT_OPT_AGGREGATION = 307,         /**< "aggregation": "sum" (default) or "mean" (deltas scaled by 1/num_trainers). */
    OT_OPT_NUM_TRAINERS = 308,        /**< "num_trainers": trainers expected, for aggregation "mean" (default 1). */
    OT_OPT_CHANGE_LOG_BYTES = 309,    /**< "change_log_bytes": bytes of recent deltas the server keeps for aggregated updates (default 64 MiB). */
    OT_OPT_TIMEOUT_MS = 310,          /**< "timeout_ms": request timeout (default 5000). */
    OT_OPT_RECONNECT_MS = 311,        /**< "reconnect_ms": first redial delay (default 100). */
    OT_OPT_RECV_MAX_BYTES = 312,      /**< "recv_max_bytes": largest message accepted (default 64 MiB). */
    OT_OPT_GAP_POLICY = 313,          /**< "gap_policy": on a missed update "request" a full copy (default) or "wait" for the next full update. */
    OT_OPT_REQUEST_CONTEXTS = 314,    /**< "request_contexts": requests a server handles at once (default 4). */
    OT_OPT_SHARD_ID = 315,            /**< "shard_id": this server's shard (default 0). */
    OT_OPT_NUM_SHARDS = 316,          /**< "num_shards": shards the model is split into (default 1). */
    OT_OPT_SYNC_RETRIES = 317,        /**< "sync_retries": times a trainer retries a failed sync before reporting it (default 3). */
    /* durability and security (docs/durability.md, docs/security.md) */
    OT_OPT_CHECKPOINT_DIR = 318,      /**< "checkpoint_dir": a server's directory for checkpoints and its write-ahead log (default "": no durability). */
    OT_OPT_CHECKPOINT_INTERVAL_MS = 319, /**< "checkpoint_interval_ms": period of a server's checkpoints (default 60000; 0: only ot_param_server_checkpoint() and stop). */
    OT_OPT_WAL = 320,                 /**< "wal": "on" (default) logs every applied delta before it is acknowledged, "off" relies on checkpoints alone. */
    OT_OPT_WAL_SYNC = 321,            /**< "wal_sync": "every" (default) fsyncs the log before each reply, "interval" every wal_sync_interval_ms, "none" leaves it to the OS. */
    OT_OPT_WAL_SYNC_INTERVAL_MS = 322,/**< "wal_sync_interval_ms": period of log syncs for wal_sync "interval" (default 100). */
    OT_OPT_TLS_CERT_KEY_FILE = 323,   /**< "tls_cert_key_file": PEM file with this end's certificate then its key, for tls+tcp:// (default ""). */
    OT_OPT_TLS_CA_FILE = 324,         /**< "tls_ca_file": PEM file of the CAs trusted to sign the peer's certificate (default ""). */
    OT_OPT_TLS_AUTH = 325,            /**< "tls_auth": peer verification, "none", "optional" or "required" (default). */
    OT_OPT_TLS_SERVER_NAME = 326,     /**< "tls_server_name": name a dialer expects in the server's certificate (default "": the URL's host). */
    OT_OPT_HMAC_KEY = 327,            /**< "hmac_key": shared key, in hex, authenticating every message (default "": off). */
    OT_OPT_MAX_DELTA_ENTRIES = 328,   /**< "max_delta_entries": most values a server accepts in one ADD frame (default 16777216). */
    OT_OPT_MAX_PREDICT_BATCH = 329,   /**< "max_predict_batch": most examples in one prediction request (default 4096). */
    OT_OPT_MAX_CONNECTIONS = 330,     /**< "max_connections": connections each of a role's sockets holds at once; more are closed and counted (default 1024; 0: no limit). */
    OT_OPT_SYNC_PIECE_ROWS = 331      /**< "sync_piece_rows": touched rows a frame of a large sync carries, about; each frame is encoded while the one before is in flight (default 131072; 0: one frame a shard, cut only by max_message). */
} ot_option;

/** Creates a config holding every option at its default.  @p out receives it. */
OT_API ot_status ot_config_create(ot_config **out);

/** Copies a config (options and allocator). */
OT_API ot_status ot_config_clone(const ot_config *cfg, ot_config **out);

/** Destroys a config.  Accepts NULL. */
OT_API void ot_config_destroy(ot_config *cfg);

/**
 * Sets the allocator used by the config itself from now on and by every
 * handle later created from it.  @p fn NULL restores the default (malloc).
 * Must be called before anything is set that allocates: returns OT_ESTATE
 * if a string option was already set.
 */
OT_API ot_status ot_config_set_allocator(ot_config *cfg, ot_alloc_fn fn, void *user);

/**
 * Sets an integer option.
 * @return OT_ENOTSUP for an unknown id, OT_EBADTYPE if the option is not an
 *         integer, OT_ERANGE outside the option's bounds.
 */
OT_API ot_status ot_config_set_i64(ot_config *cfg, int option, int64_t value);

/** Sets a floating-point option.  Errors as ot_config_set_i64(); NaN gives OT_ERANGE. */
OT_API ot_status ot_config_set_f64(ot_config *cfg, int option, double value);

/**
 * Sets a string option (copied).  Errors as ot_config_set_i64(); a word not
 * among an option's choices, or a list that does not parse, gives OT_ERANGE.
 */
OT_API ot_status ot_config_set_str(ot_config *cfg, int option, const char *value);

/**
 * Sets an option of any type from its text form ("18", "0.5", "ftrl"), as
 * the command-line program and bindings do.  OT_ERANGE if the text does not
 * parse as the option's type.
 */
OT_API ot_status ot_config_set_text(ot_config *cfg, int option, const char *text);

/** Reads an integer option.  OT_ENOTSUP unknown id, OT_EBADTYPE wrong type. */
OT_API ot_status ot_config_get_i64(const ot_config *cfg, int option, int64_t *out);

/** Reads a floating-point option.  Errors as ot_config_get_i64(). */
OT_API ot_status ot_config_get_f64(const ot_config *cfg, int option, double *out);

/**
 * Reads a string option.  @p out receives a pointer owned by the config,
 * valid until the option is set again or the config is destroyed.
 */
OT_API ot_status ot_config_get_str(const ot_config *cfg, int option, const char **out);

/**
 * Checks the options against one another (for example, that a full-update
 * interval is at least ten real-time intervals).  On failure the reason is
 * in ot_config_errmsg().  @return OT_OK or OT_EINVAL.
 */
OT_API ot_status ot_config_validate(ot_config *cfg);

/** Detail message of the config's last error; "" if none.  Never NULL. */
OT_API const char *ot_config_errmsg(const ot_config *cfg);

/** The option's name ("bits"), or NULL for an unknown id. */
OT_API const char *ot_option_name(int option);

/** Finds an option by name.  @return OT_OK, or OT_ENOTSUP if there is none. */
OT_API ot_status ot_option_by_name(const char *name, int *out);

/** The option's type; OT_TYPE_NONE for an unknown id. */
OT_API int ot_option_type(int option);

/** A one-line description of the option, or NULL for an unknown id. */
OT_API const char *ot_option_doc(int option);

/**
 * For string options taking one of a set of words, the words separated by
 * '|' ("vw|libsvm"); NULL for other options.
 */
OT_API const char *ot_option_choices(int option);

/** Bounds of an integer option.  OT_ENOTSUP / OT_EBADTYPE as the getters. */
OT_API ot_status ot_option_bounds_i64(int option, int64_t *min, int64_t *max);

/** Bounds of a floating-point option.  OT_ENOTSUP / OT_EBADTYPE as the getters. */
OT_API ot_status ot_option_bounds_f64(int option, double *min, double *max);

/**
 * Iterates option ids in increasing order: ot_option_next(0) is the first,
 * and 0 follows the last.
 */
OT_API int ot_option_next(int option);

/** @} */

/** @defgroup example Examples and input parsing
 *  @{ */

/**
 * One example: a label, an importance weight, an optional tag, hashed sparse
 * features grouped by namespace, and an optional dense vector.  An example
 * is a reusable buffer: ot_example_clear() keeps its memory, so refilling it
 * in a loop does not allocate.  Externally synchronized.
 */
typedef struct ot_example ot_example;

/**
 * Creates an empty example.  @p cfg may be NULL (defaults); its allocator
 * and hashing options are copied.
 */
OT_API ot_status ot_example_create(const ot_config *cfg, ot_example **out);

/** Destroys an example.  Accepts NULL. */
OT_API void ot_example_destroy(ot_example *ex);

/** Empties an example (no label, weight 1, no tag, no features), keeping its memory. */
OT_API void ot_example_clear(ot_example *ex);

/** Sets the label.  OT_ENONFINITE for NaN or infinity. */
OT_API ot_status ot_example_set_label(ot_example *ex, float label);

/** Sets the importance weight (>= 0; default 1).  OT_ERANGE if negative, OT_ENONFINITE. */
OT_API ot_status ot_example_set_weight(ot_example *ex, float weight);

/** Sets the tag (copied; @p len bytes, need not be NUL-terminated). */
OT_API ot_status ot_example_set_tag(ot_example *ex, const char *tag, size_t len);

/**
 * Adds a feature by its 32-bit hash to namespace @p ns (the namespace's
 * first byte, as in Vowpal Wabbit; ' ' for the default namespace).
 * OT_ENONFINITE for a non-finite value.
 */
OT_API ot_status ot_example_add_hashed(ot_example *ex, uint8_t ns, uint32_t hash, float value);

/**
 * Adds a feature by name to namespace @p ns_name, hashing both as the VW
 * text parser does (docs/formats.md), with the example's hash option.
 * @p ns_name NULL or "" is the default namespace.  Unlike the parser, a
 * value of 0 is kept.
 * @return OT_OK; OT_EINVAL for a NULL or empty @p name; OT_ENONFINITE.
 */
OT_API ot_status ot_example_add_feature(ot_example *ex, const char *ns_name,
                                        const char *name, float value);

/** Sets the dense vector (copied). */
OT_API ot_status ot_example_set_dense(ot_example *ex, const float *values, size_t n);

/** 1 if the example has a label, else 0 (predict only). */
OT_API int ot_example_has_label(const ot_example *ex);

/** The label (0 when there is none). */
OT_API float ot_example_label(const ot_example *ex);

/** The importance weight. */
OT_API float ot_example_weight(const ot_example *ex);

/** The tag and its length; "" and 0 when there is none.  Valid until the example changes. */
OT_API const char *ot_example_tag(const ot_example *ex, size_t *len);

/** Number of sparse features, over all namespaces. */
OT_API size_t ot_example_num_features(const ot_example *ex);

/**
 * Reads feature @p i (in insertion order): namespace byte, 32-bit hash and
 * value.  Any out-pointer may be NULL.  OT_ERANGE if @p i is out of range.
 */
OT_API ot_status ot_example_feature(const ot_example *ex, size_t i, uint8_t *ns,
                                    uint32_t *hash, float *value);

/** The dense vector and its length (NULL, 0 when there is none).  Valid until the example changes. */
OT_API const float *ot_example_dense(const ot_example *ex, size_t *n);

/**
 * Parses one line of text (without its newline) into @p ex, replacing what
 * it held (the dense vector too).  @p line need not be NUL-terminated; no
 * byte past @p len is read.  @p format is "vw" or "libsvm"; NULL uses the
 * example's config.  The formats, hashing and errors are in docs/formats.md.
 * @return OT_OK; OT_EFORMAT with "column N: ..." in ot_example_errmsg(),
 *         leaving the example empty; OT_EINVAL for an unknown format.
 */
OT_API ot_status ot_example_parse(ot_example *ex, const char *format, const char *line, size_t len);

/** Detail message of the example's last error; "" if none.  Never NULL. */
OT_API const char *ot_example_errmsg(const ot_example *ex);

/**
 * A streaming reader of examples from a file, standard input, a gzip file
 * (when built with zlib) or memory.  Reuses its buffers: reading does not
 * allocate per example in the steady state.  Externally synchronized.
 */
typedef struct ot_reader ot_reader;

/**
 * Opens a reader on a file; "-" is standard input (not closed by
 * ot_reader_close()); a name ending in ".gz" is decompressed.  Options used:
 * format, on_error, hash, max_line (the reader's hash and format apply to
 * the examples it fills, whatever their own config says).
 * @return OT_OK, OT_ENOENT/OT_EIO for files that cannot be opened (a
 *         directory gives OT_EIO), OT_ENOTSUP for gzip without zlib.
 */
OT_API ot_status ot_reader_open_file(const ot_config *cfg, const char *path, ot_reader **out);

/** Opens a reader on @p len bytes of memory (copied). */
OT_API ot_status ot_reader_open_memory(const ot_config *cfg, const void *data, size_t len,
                                       ot_reader **out);

/**
 * Reads the next example into @p ex.  Blank lines (only spaces, tabs and
 * carriage returns) and lines starting with '#' are skipped.  A line longer than max_line is
 * a bad line.  With on_error "skip", bad lines are counted
 * (ot_reader_skipped()) and the last one's message is kept in
 * ot_reader_errmsg().
 * @return OT_OK; OT_EEOF at the end; OT_EFORMAT for a bad line when
 *         on_error is "stop" (the message gives line and column; the next
 *         call continues after that line); OT_EIO on a read error,
 *         OT_ECORRUPT for corrupt or truncated gzip data (both final:
 *         later calls return them again); OT_ENOMEM.
 */
OT_API ot_status ot_reader_next(ot_reader *r, ot_example *ex);

/** Line number of the last line read (1-based). */
OT_API uint64_t ot_reader_line(const ot_reader *r);

/** Number of bad lines skipped so far (on_error "skip"). */
OT_API uint64_t ot_reader_skipped(const ot_reader *r);

/** Detail message of the reader's last error; "" if none.  Never NULL. */
OT_API const char *ot_reader_errmsg(const ot_reader *r);

/** Closes a reader.  Accepts NULL. */
OT_API void ot_reader_close(ot_reader *r);

/** 32-bit MurmurHash3 (x86_32) of @p len bytes with @p seed, as the parsers use. */
OT_API uint32_t ot_hash(const void *data, size_t len, uint32_t seed);

/** @} */

/** @defgroup model Models: wide, embeddings and deep, with per-coordinate optimizers
 *
 * A model's parameters are blocks over one flat index space: the hashed
 * wide weights, the bias, embedding tables and the deep layers' matrices and
 * biases.  Each weight may carry optimizer state (AdaGrad's sum of squared
 * gradients; FTRL-Proximal's z and n).  The output is the wide logit plus the
 * deep logit.  A model is externally synchronized: one thread at a time.
 *  @{ */

/** A model. */
typedef struct ot_model ot_model;

/** Kinds of parameter block. */
typedef enum ot_block_kind {
    OT_BLOCK_WIDE = 1,  /**< hashed linear weights (2^bits rows, 1 column) */
    OT_BLOCK_BIAS = 2,  /**< the bias (1 row, 1 column) */
    OT_BLOCK_EMBED = 3, /**< an embedding table (2^embedding_bits rows, dim columns) */
    OT_BLOCK_DENSE = 4  /**< a deep layer's weight matrix or bias vector */
} ot_block_kind;

/** Which array of a block to read. */
typedef enum ot_array {
    OT_ARRAY_WEIGHTS = 0, /**< the weights */
    OT_ARRAY_STATE0 = 1,  /**< first state array (AdaGrad: sum of g^2; FTRL: z) */
    OT_ARRAY_STATE1 = 2   /**< second state array (FTRL: n) */
} ot_array;

/** What a saved model file holds. */
typedef enum ot_save_what {
    OT_SAVE_WEIGHTS = 0,          /**< weights only (enough to predict) */
    OT_SAVE_WEIGHTS_AND_STATE = 1 /**< weights and optimizer state (to resume training) */
} ot_save_what;

/**
 * Creates a model from a config (NULL: defaults).  Options used: bits, loss,
 * optimizer, learning_rate, power_t, l1, l2, ftrl_alpha, ftrl_beta,
 * quadratic, embedding, embedding_bits, hidden_layers, activation,
 * dense_dim, init_scale, seed.  docs/models.md describes the blocks, the
 * losses and the optimizers.
 * @return OT_OK, OT_ENOMEM, OT_EINVAL for inconsistent options: hidden_layers
 *         without dense_dim or embedding (the deep part has no input), or a
 *         namespace listed twice in embedding.
 */
OT_API ot_status ot_model_create(const ot_config *cfg, ot_model **out);

/** Destroys a model.  Accepts NULL. */
OT_API void ot_model_destroy(ot_model *m);

/** Copies a model (shape, weights, state, counters).  The copy is independent. */
OT_API ot_status ot_model_clone(const ot_model *m, ot_model **out);

/**
 * Predicts one example: the probability for logistic loss, the value for
 * squared loss.  Never changes the model, and does not set its errmsg, so
 * several threads may predict with one model at once as long as no thread
 * changes it (ot_model_learn(), ot_model_learn_batch()) meanwhile.  A
 * wide-only model does not allocate; a deep model allocates per call only
 * when its layers are wider than a small stack buffer (with the model's
 * allocator, which must then be thread-safe).
 * @return OT_EINVAL for NULL arguments or a dense vector whose length is not
 *         dense_dim (when dense_dim > 0); OT_ENOMEM.
 */
OT_API ot_status ot_model_predict(const ot_model *m, const ot_example *ex, float *out);

/**
 * Predicts @p n examples into @p out[0..n-1] (the deep part uses one sgemm
 * per layer for the whole batch, so results may differ from
 * ot_model_predict() in the last bits).  Thread rules as ot_model_predict();
 * allocates scratch for the batch per call when the model has a deep part.
 */
OT_API ot_status ot_model_predict_batch(const ot_model *m, const ot_example *const *ex, size_t n,
                                        float *out);

/**
 * Learns from one labelled example.  @p loss (may be NULL) receives the
 * example's loss before the update, times its importance weight
 * (progressive validation).  An example without a label, or with a dense
 * vector whose length is not dense_dim (when dense_dim > 0), gives OT_EINVAL
 * and changes nothing.  Does not allocate once the model has seen an
 * example with as many wide coordinates (features plus crosses).
 */
OT_API ot_status ot_model_learn(ot_model *m, const ot_example *ex, float *loss);

/**
 * Learns from @p n examples as one mini-batch: the deep part (layers and
 * embeddings) runs forward once with the weights from before the batch and
 * is updated once with the gradients summed over the batch; the wide weights
 * and the bias are updated example by example, in order.  @p losses (may be
 * NULL) receives each example's loss before its own update.  Every example
 * is checked first: one that ot_model_learn() would refuse gives OT_EINVAL
 * and nothing is learned.  The batch scratch grows to the largest batch seen.
 * A model without a deep part gets exactly the results of ot_model_learn()
 * on each example in order, faster: the batch prefetches the next examples'
 * weights while it learns one (docs/models.md).
 */
OT_API ot_status ot_model_learn_batch(ot_model *m, const ot_example *const *ex, size_t n,
                                      float *losses);

/**
 * Saves the model to a file: magic, format version, the model's config and
 * fingerprint, the arrays, a CRC32C checksum (docs/models.md has the
 * layout).  Written to "<path>.tmp", flushed, fsync'd and renamed, so a
 * crash leaves the old file or the new one.  May run while other threads
 * predict; on failure the reason is in ot_model_errmsg().
 * @return OT_EINVAL (NULL or empty path, unknown @p what), OT_ENOENT (the
 *         directory does not exist), OT_EIO, OT_ENOMEM.
 */
OT_API ot_status ot_model_save(const ot_model *m, const char *path, ot_save_what what);

/**
 * Loads a model saved by ot_model_save() (a new model, shaped by the file,
 * with the file's example count).  @p cfg (may be NULL) supplies the
 * allocator only.  A file saved without state loads with zero state (FTRL's
 * z is rebuilt so that each weight stays as saved until it is next trained).
 * @return OT_ENOENT/OT_EIO, OT_EFORMAT (not a model file, or invalid
 *         contents), OT_EVERSION (unknown major format version),
 *         OT_ECORRUPT (checksum mismatch or truncated), OT_ENOMEM, OT_EINVAL.
 */
OT_API ot_status ot_model_load(const ot_config *cfg, const char *path, ot_model **out);

/**
 * Copies the key range of shard @p shard of @p num_shards (docs/deployment.md,
 * "Key ranges") from @p src into @p dst: weights and optimizer state.  Used
 * to assemble one model from the masters of a sharded server's shards.
 * Neither model's touched rows change.  Not thread-safe on @p dst.
 * @return OT_OK; OT_EINVAL (NULL, shard >= num_shards); OT_EMISMATCH (the
 *         models have different shapes); OT_ERANGE (the shard holds no rows).
 */
OT_API ot_status ot_model_copy_shard(ot_model *dst, const ot_model *src, uint32_t shard,
                                     uint32_t num_shards);

/** A 64-bit hash of the model's shape, so peers refuse data for another model. */
OT_API uint64_t ot_model_fingerprint(const ot_model *m);

/** Total number of weights (size of the flat index space). */
OT_API uint64_t ot_model_num_weights(const ot_model *m);

/** Number of parameter blocks. */
OT_API size_t ot_model_num_blocks(const ot_model *m);

/**
 * Describes block @p i.  Any out-pointer may be NULL.  @p name is static for
 * the model's life.  @p offset is the block's first flat index.
 * @return OT_ERANGE if @p i is out of range.
 */
OT_API ot_status ot_model_block_info(const ot_model *m, size_t i, const char **name, int *kind,
                                     uint64_t *offset, uint64_t *rows, uint32_t *cols,
                                     int *num_state);

/**
 * Gives a block's array (rows * cols floats, row-major) for reading, valid
 * until the model is destroyed.  OT_ENOENT if the block has no such array.
 */
OT_API ot_status ot_model_block_data(const ot_model *m, size_t i, int array, const float **out);

/** Number of examples learned since creation (or load). */
OT_API uint64_t ot_model_examples(const ot_model *m);

/** Detail message of the model's last error; "" if none.  Never NULL. */
OT_API const char *ot_model_errmsg(const ot_model *m);

/** @} */

/** @defgroup delta Snapshots and the delta codec
 *
 * A snapshot is an immutable, reference-counted copy of a model's weights,
 * optimizer state or both (option delta_source), with a version number.
 *
 * A delta frame carries values for some coordinates of a model: an ADD frame
 * carries differences (trainer <-> parameter server), a SET frame absolute
 * values (real-time update, server -> predictors), a FULL frame one chunk of a
 * full update.  The layout is in docs/wire-format.md.
 *
 * The encoder sends local - snapshot for the coordinates that pass the
 * threshold and the top-k budget, and advances the snapshot by exactly the
 * values the receiver will decode, so what it held back or rounded away stays
 * in local - snapshot and is sent later.
 *
 * The decoder treats every frame as hostile: it checks the whole frame
 * (header, checksum, structure, indices, finite values) before it changes
 * anything.
 *
 * Threads: an encoder and a decoder are externally synchronized (one thread
 * at a time).  A snapshot never changes once made: any number of threads may
 * read, retain and release it at once.  ot_delta_peek(), ot_delta_check()
 * and ot_delta_walk() keep no state and are thread-safe.
 *  @{ */

/** An immutable, reference-counted copy of a model's arrays. */
typedef struct ot_snapshot ot_snapshot;

/** Frame kinds (header byte 6). */
typedef enum ot_delta_kind {
    OT_DELTA_ADD = 1,    /**< differences, added by the receiver */
    OT_DELTA_SET = 2,    /**< absolute values; applying a SET frame twice equals once */
    OT_DELTA_FULL = 3,   /**< one chunk of a full update (absolute values, every coordinate) */
    OT_DELTA_CONTROL = 4 /**< no values: an opaque payload for the roles */
} ot_delta_kind;

/** Frame flags (header byte 7). */
typedef enum ot_delta_flag {
    OT_DELTA_FLAG_FIRST = 1, /**< the first frame of an update */
    OT_DELTA_FLAG_LAST = 2   /**< the last frame of an update (ADD and SET frames carry both) */
} ot_delta_flag;

/** Header fields read by ot_delta_peek(). */
typedef enum ot_delta_field {
    OT_DELTA_FIELD_VERSION_MAJOR = 1,  /**< format major version */
    OT_DELTA_FIELD_VERSION_MINOR = 2,  /**< format minor version */
    OT_DELTA_FIELD_KIND = 3,           /**< an ::ot_delta_kind */
    OT_DELTA_FIELD_FLAGS = 4,          /**< ::ot_delta_flag bits */
    OT_DELTA_FIELD_HEADER_LENGTH = 5,  /**< header bytes (64 in format 1.0) */
    OT_DELTA_FIELD_SHARD = 6,          /**< shard id */
    OT_DELTA_FIELD_FINGERPRINT = 7,    /**< the model fingerprint */
    OT_DELTA_FIELD_SEQUENCE = 8,       /**< sender's sequence number */
    OT_DELTA_FIELD_BASE_VERSION = 9,   /**< version the frame was made against */
    OT_DELTA_FIELD_NEW_VERSION = 10,   /**< version after applying it */
    OT_DELTA_FIELD_SENDER = 11,        /**< sender id */
    OT_DELTA_FIELD_ENTRIES = 12,       /**< number of values carried */
    OT_DELTA_FIELD_PAYLOAD_LENGTH = 13,/**< payload bytes */
    OT_DELTA_FIELD_CHECKSUM = 14,      /**< the CRC32C field as stored */
    OT_DELTA_FIELD_FRAME_LENGTH = 15   /**< header length + payload length */
} ot_delta_field;

/**
 * Makes a snapshot: a copy of the model's arrays that delta_source selects
 * ("weights", "state": the optimizer state, or the weights of blocks without
 * state, "both").  @p cfg (may be NULL) gives delta_source and the allocator.
 * @p out receives a snapshot holding one reference.
 * @return OT_OK, OT_EINVAL, OT_ENOMEM.
 */
OT_API ot_status ot_snapshot_create(const ot_config *cfg, const ot_model *m, uint64_t version,
                                    ot_snapshot **out);

/**
 * Makes a snapshot of @p m that shares every page of @p prev holding no row
 * the model marks touched, and copies the others (cost: the touched pages,
 * not the model).  The caller promises that every row changed since @p prev
 * was taken is marked touched: true when @p prev was taken from @p m and
 * nothing cleared the model's touched rows since (ot_delta_encode() and
 * ot_delta_encode_set() clear them).  Does not change the touched rows.
 * @return OT_OK, OT_EINVAL, OT_EMISMATCH (@p prev is of another model),
 *         OT_ENOMEM.
 */
OT_API ot_status ot_snapshot_update(const ot_snapshot *prev, const ot_model *m, uint64_t version,
                                    ot_snapshot **out);

/** Adds a reference; returns @p s.  Thread-safe.  Accepts NULL. */
OT_API ot_snapshot *ot_snapshot_retain(ot_snapshot *s);

/** Drops a reference; the last one frees the snapshot.  Thread-safe.  Accepts NULL. */
OT_API void ot_snapshot_release(ot_snapshot *s);

/** The snapshot's version (0 for NULL). */
OT_API uint64_t ot_snapshot_version(const ot_snapshot *s);

/** Fingerprint of the model the snapshot was taken from (0 for NULL). */
OT_API uint64_t ot_snapshot_fingerprint(const ot_snapshot *s);

/** Size of the flat index space (0 for NULL). */
OT_API uint64_t ot_snapshot_num_weights(const ot_snapshot *s);

/** 1 if the snapshot holds array @p array (an ::ot_array) of some block, else 0. */
OT_API int ot_snapshot_has_array(const ot_snapshot *s, int array);

/**
 * Copies @p n values of array @p array (an ::ot_array) starting at flat
 * index @p first into @p out.  Thread-safe.
 * @return OT_OK, OT_EINVAL, OT_ERANGE (past the end), OT_ENOENT (a block in
 *         the range has no such array in the snapshot).
 */
OT_API ot_status ot_snapshot_read(const ot_snapshot *s, int array, uint64_t first, size_t n,
                                  float *out);

/** A delta encoder: options, header ids, sequence numbers and scratch memory. */
typedef struct ot_delta_encoder ot_delta_encoder;

/**
 * Creates an encoder.  @p cfg (may be NULL: defaults) gives threshold,
 * threshold_rel, max_entries, value_encoding, stochastic_rounding,
 * max_message, seed and the allocator.  What a frame carries (weights,
 * state or both) is what the snapshot holds, chosen by delta_source when
 * the snapshot was made.
 * @return OT_OK, OT_EINVAL, OT_ENOMEM.
 */
OT_API ot_status ot_delta_encoder_create(const ot_config *cfg, ot_delta_encoder **out);

/** Destroys an encoder.  Accepts NULL. */
OT_API void ot_delta_encoder_destroy(ot_delta_encoder *enc);

/** Detail message of the encoder's last error; "" if none.  Never NULL. */
OT_API const char *ot_delta_encoder_errmsg(const ot_delta_encoder *enc);

/** Sets the shard id and sender id written into the frames that follow (default 0, 0). */
OT_API ot_status ot_delta_encoder_set_ids(ot_delta_encoder *enc, uint32_t shard, uint32_t sender);

/** Sets the sequence number of the next frame (default 1); each frame made increments it. */
OT_API ot_status ot_delta_encoder_set_sequence(ot_delta_encoder *enc, uint64_t next);

/** The sequence number the next frame will carry (0 for NULL). */
OT_API uint64_t ot_delta_encoder_sequence(const ot_delta_encoder *enc);

/** Sets the base and new version written into the frames that follow (default 0, 0). */
OT_API ot_status ot_delta_encoder_set_versions(ot_delta_encoder *enc, uint64_t base,
                                               uint64_t new_version);

/** Abandons a full update in progress: the next ot_delta_encode_set() with full = 1 starts over. */
OT_API void ot_delta_encoder_reset(ot_delta_encoder *enc);

/**
 * Number of values the last encode call held back because they (or the
 * snapshot's values) were NaN or infinite; 0 for NULL.
 */
OT_API uint64_t ot_delta_encoder_nonfinite(const ot_delta_encoder *enc);

/**
 * An upper bound of the size of the next frame ot_delta_encode() (@p kind
 * OT_DELTA_ADD), ot_delta_encode_set() (OT_DELTA_SET) or a full-update chunk
 * (OT_DELTA_FULL) would make for @p m now.  Never more than max_message.
 * Costs O(blocks).  0 for invalid arguments.
 */
OT_API size_t ot_delta_encode_bound(const ot_delta_encoder *enc, const ot_model *m, int kind);

/**
 * Encodes one ADD frame of `local - snapshot` into @p dst and advances the
 * snapshot by exactly the values the frame decodes to.
 *
 * Coordinates are selected when |local - snapshot| is nonzero, at least
 * threshold and at least threshold_rel * |snapshot|, then the max_entries
 * largest by magnitude (0: all); a row is sent whole when one of its values
 * is selected.  Values are encoded with value_encoding.  Only rows the model
 * marks touched are examined (every row of blocks without touched tracking);
 * afterwards exactly the rows whose `local - snapshot` is still nonzero stay
 * touched.  A frame never exceeds max_message: rows that do not fit stay
 * touched, and @p more (may be NULL) is set to 1.  Rows holding NaN or
 * infinity (in the model or the snapshot) are never sent: they stay touched
 * and ot_delta_encoder_nonfinite() counts their values.
 *
 * @p snap is consumed and replaced: on success *snap is the advanced
 * snapshot (the same object when the caller held the only reference, else a
 * new one sharing unchanged pages; the old reference is released).  On error
 * nothing changes: not the model, not *snap.
 *
 * @return OT_OK with the frame length in @p len; OT_ENOSPC with the size
 *         needed in @p len; OT_EMISMATCH (snapshot of another model);
 *         OT_ETOOBIG (one row alone exceeds max_message); OT_EINVAL;
 *         OT_ENOMEM.
 */
OT_API ot_status ot_delta_encode(ot_delta_encoder *enc, ot_model *m, ot_snapshot **snap, void *dst,
                                 size_t cap, size_t *len, int *more);

/** ot_delta_encode() into a new buffer (release with ot_buf_release()). */
OT_API ot_status ot_delta_encode_buf(ot_delta_encoder *enc, ot_model *m, ot_snapshot **snap,
                                     ot_buf **out, int *more);

/**
 * Encodes one SET frame of absolute values into @p dst and advances
 * @p published (what the receivers hold) to the decoded values.
 *
 * @p full 0: a real-time update: the touched coordinates whose
 * |model - published| passes threshold and threshold_rel (and the
 * max_entries budget), as ot_delta_encode() selects them.  @p full 1: the
 * next chunk of a full update (kind OT_DELTA_FULL): every coordinate, in
 * order, in frames of at most max_message bytes; the first carries
 * OT_DELTA_FLAG_FIRST and the last OT_DELTA_FLAG_LAST, and @p more is 1 until
 * the last chunk is made.  Chunks of one full update carry consecutive
 * sequence numbers.  A full update leaves the touched rows as they are.
 *
 * Ownership of @p published and errors as ot_delta_encode().
 */
OT_API ot_status ot_delta_encode_set(ot_delta_encoder *enc, ot_model *m, ot_snapshot **published,
                                     int full, void *dst, size_t cap, size_t *len, int *more);

/** ot_delta_encode_set() into a new buffer. */
OT_API ot_status ot_delta_encode_set_buf(ot_delta_encoder *enc, ot_model *m,
                                         ot_snapshot **published, int full, ot_buf **out,
                                         int *more);

/**
 * Encodes a CONTROL frame carrying @p n opaque bytes (copied) for a model of
 * fingerprint @p fingerprint.
 * @return OT_OK, OT_ENOSPC (size needed in @p len), OT_ETOOBIG (over
 *         max_message), OT_EINVAL.
 */
OT_API ot_status ot_delta_encode_control(ot_delta_encoder *enc, uint64_t fingerprint,
                                         const void *payload, size_t n, void *dst, size_t cap,
                                         size_t *len);

/**
 * Merges two ADD frames for @p m into one fp32 ADD frame whose application
 * equals applying @p a then @p b (coordinate-wise sums, within float
 * rounding).  Both are validated first.  The header comes from the encoder
 * (ids, versions, next sequence number).
 * @return OT_OK, OT_ENOSPC (size needed in @p len), OT_ETOOBIG (over
 *         max_message), OT_EINVAL (not ADD frames), or any validation error
 *         of ot_delta_validate().
 */
OT_API ot_status ot_delta_merge(ot_delta_encoder *enc, const ot_model *m, const void *a,
                                size_t alen, const void *b, size_t blen, void *dst, size_t cap,
                                size_t *len);

/** ot_delta_merge() into a new buffer. */
OT_API ot_status ot_delta_merge_buf(ot_delta_encoder *enc, const ot_model *m, const void *a,
                                    size_t alen, const void *b, size_t blen, ot_buf **out);

/** A delta decoder: limits, the accepted shard and an error message. */
typedef struct ot_delta_decoder ot_delta_decoder;

/**
 * Creates a decoder.  @p cfg (may be NULL) gives max_message (longer frames
 * are refused with OT_ETOOBIG) and the allocator.
 */
OT_API ot_status ot_delta_decoder_create(const ot_config *cfg, ot_delta_decoder **out);

/** Destroys a decoder.  Accepts NULL. */
OT_API void ot_delta_decoder_destroy(ot_delta_decoder *dec);

/** Detail message of the decoder's last error; "" if none.  Never NULL. */
OT_API const char *ot_delta_decoder_errmsg(const ot_delta_decoder *dec);

/**
 * Accept only frames of shard @p shard whose values all lie in flat indices
 * [@p lo, @p hi): others are refused with OT_EMISMATCH (shard) or OT_ERANGE
 * (index).  By default every shard and the whole model are accepted.
 * @return OT_OK, OT_EINVAL (lo > hi).
 */
OT_API ot_status ot_delta_decoder_set_shard(ot_delta_decoder *dec, uint32_t shard, uint64_t lo,
                                            uint64_t hi);

/**
 * Checks a frame against a model without changing anything.  Statuses, in
 * the order the checks run (docs/wire-format.md, "Validation"):
 * OT_EFORMAT (bad magic), OT_EVERSION (unknown major version), OT_ECORRUPT
 * (truncated), OT_EFORMAT (trailing bytes), OT_ETOOBIG (over max_message),
 * OT_ECORRUPT (checksum mismatch), OT_EFORMAT (unknown kind or flags),
 * OT_EMISMATCH (fingerprint, or shard when one is set), then for each
 * section OT_EFORMAT (malformed, unknown block or array, wrong column
 * count, a row past the block), OT_ERANGE (an index outside the decoder's
 * shard range), OT_ENONFINITE (NaN or infinity).  OT_EINVAL for NULL
 * arguments, OT_ENOMEM.
 */
OT_API ot_status ot_delta_validate(ot_delta_decoder *dec, const ot_model *m, const void *data,
                                   size_t len);

/**
 * Validates a frame as ot_delta_validate(), then applies it to @p m: ADD
 * adds, SET and FULL overwrite; rows written are marked touched; rows whose
 * optimizer state was written get their weights derived from it (FTRL).
 * An ADD whose sum overflows saturates at the largest finite float.  On any
 * error the model is unchanged.  CONTROL frames give OT_EINVAL.
 */
OT_API ot_status ot_delta_apply(ot_delta_decoder *dec, ot_model *m, const void *data, size_t len);

/**
 * Validates a frame against a snapshot and applies it, replacing *@p snap as
 * ot_delta_encode() does; the result's version is the frame's new version.
 * A frame carrying an array the snapshot does not hold gives OT_EMISMATCH.
 */
OT_API ot_status ot_delta_apply_snapshot(ot_delta_decoder *dec, ot_snapshot **snap,
                                         const void *data, size_t len);

/**
 * Reads one header field (an ::ot_delta_field) without checking the
 * checksum, for routing.
 * @return OT_OK; OT_EFORMAT (not a delta frame); OT_EVERSION (unknown major
 *         version); OT_ECORRUPT (shorter than its header); OT_ENOTSUP
 *         (unknown field); OT_EINVAL.
 */
OT_API ot_status ot_delta_peek(const void *data, size_t len, int field, uint64_t *value);

/**
 * Checks everything that does not need the model: header, length, checksum,
 * structure, finite values.  @p len must be exactly one frame.
 * @return OT_OK or the statuses of ot_delta_validate() except OT_EMISMATCH
 *         and OT_ERANGE.
 */
OT_API ot_status ot_delta_check(const void *data, size_t len);

/**
 * Called by ot_delta_walk() for each section of a frame: the block index,
 * the array (an ::ot_array), the value encoding (0 fp32, 1 fp16, 2 bf16,
 * 3 int8), the layout (0 sparse, 1 dense), the first row, the number of rows
 * carried, the values per row, the section's bytes and the smallest and
 * largest decoded value.  Return nonzero to stop the walk.
 */
typedef int (*ot_delta_section_fn)(void *user, uint32_t block, int array, int encoding,
                                   int layout, uint64_t first_row, uint64_t rows, uint32_t cols,
                                   size_t bytes, float min_value, float max_value);

/**
 * Checks a frame as ot_delta_check(), then calls @p fn for each section in
 * order.  @return the check's status (OT_OK also when @p fn stopped early).
 */
OT_API ot_status ot_delta_walk(const void *data, size_t len, ot_delta_section_fn fn, void *user);

/**
 * The opaque payload of a CONTROL frame, after ot_delta_check(): @p payload
 * points into @p data.  OT_EINVAL if the frame is not a CONTROL frame.
 */
OT_API ot_status ot_delta_control_payload(const void *data, size_t len, const uint8_t **payload,
                                          size_t *n);

/** "ADD", "SET", "FULL", "CONTROL", or "?" for other values.  Static. */
OT_API const char *ot_delta_kind_name(int kind);

/** "fp32", "fp16", "bf16", "int8", or "?" for other values.  Static. */
OT_API const char *ot_delta_encoding_name(int encoding);

/** @} */

/** @defgroup roles The three roles: parameter server, trainer, predictor
 *
 * The roles talk as docs/protocol.md describes, over nng URLs (inproc://,
 * ipc://, tcp://, tls+tcp://).  Each role copies its config at create time.
 *
 * Threads: a parameter server runs its own threads (request handlers and a
 * publisher); its calls are thread-safe.  A trainer is externally
 * synchronized (one thread at a time; it syncs inside ot_trainer_learn() and
 * ot_trainer_sync()).  A predictor runs an update thread; ot_predictor_predict()
 * and ot_predictor_predict_batch() may be called from any number of threads
 * while updates land, and never wait for them.  Stats can be read from any
 * thread.  Stop and destroy may be called from any thread but not from a
 * library callback.
 *
 * Stats: each role has named counters and gauges, read by name with
 * `ot_*_stat()` and listed with `ot_*_stat_name()` (NULL past the last).
 *  @{ */

/** A parameter server (one shard of the master model). */
typedef struct ot_param_server ot_param_server;

/**
 * Creates a server whose master model is built from @p cfg (model options,
 * plus rt_interval_ms, full_interval_ms, rt_threshold, rt_max_entries,
 * aggregation, num_trainers, change_log_bytes, shard_id, num_shards,
 * max_message, recv_max_bytes, request_contexts, max_delta_entries, the
 * durability options checkpoint_dir, checkpoint_interval_ms, wal, wal_sync,
 * wal_sync_interval_ms (see ot_param_server_checkpoint()), and the security
 * options tls_cert_key_file, tls_ca_file, tls_auth, hmac_key, used by
 * ot_param_server_listen()).  The config is validated
 * (ot_config_validate()).
 */
OT_API ot_status ot_param_server_create(const ot_config *cfg, ot_param_server **out);

/**
 * Binds the server: @p trainer_url for request/reply (trainers' syncs and
 * everyone's full-copy requests), @p predictor_url (may be NULL) for
 * publishing updates to predictors.  A TCP port 0 picks a free port; read
 * the bound URLs with ot_param_server_url().  Before ot_param_server_start().
 * @return OT_OK, OT_EADDRINUSE, OT_EINVAL (bad URL), OT_ESTATE.
 */
OT_API ot_status ot_param_server_listen(ot_param_server *ps, const char *trainer_url,
                                        const char *predictor_url);

/**
 * The URL a listener is bound to, with the port resolved: @p which 0 the
 * trainer URL, 1 the predictor URL.  Owned by the server; NULL if not bound.
 */
OT_API const char *ot_param_server_url(const ot_param_server *ps, int which);

/** Starts serving requests and publishing on schedule.  OT_ESTATE if not bound or started. */
OT_API ot_status ot_param_server_start(ot_param_server *ps);

/**
 * Publishes now: a real-time update (@p full 0) or a full update (@p full 1),
 * whatever the schedule.  Returns when the frames have been handed to the
 * transport.  OT_ESTATE if not started.
 */
OT_API ot_status ot_param_server_publish(ot_param_server *ps, int full);

/**
 * Stops: finishes requests in flight, stops the publisher, closes the
 * sockets.  Returns when no server thread or callback is running.
 * Idempotent.  With checkpoint_dir set, then writes a final checkpoint (as
 * ot_param_server_checkpoint()); @return OT_OK, or that checkpoint's error
 * (the server is stopped all the same).
 */
OT_API ot_status ot_param_server_stop(ot_param_server *ps);

/** Stops (if running) and destroys.  Accepts NULL. */
OT_API void ot_param_server_destroy(ot_param_server *ps);

/**
 * Writes a checkpoint now (docs/durability.md): the master's weights and
 * optimizer state, its version, the published snapshot's version and the
 * last sequence applied per trainer, to "checkpoint-<version>.otc" in
 * checkpoint_dir (a temporary file, fsync'd, renamed, the directory
 * fsync'd).  The write-ahead log starts a new segment at that version; the
 * newest two checkpoints are kept and older log segments deleted.  Does
 * nothing when the master has not changed since the last checkpoint.
 * Checkpoints are also taken every checkpoint_interval_ms and by
 * ot_param_server_stop().  Thread-safe; syncs keep being served while the
 * file is written (the master is copied first, under its lock).
 *
 * With checkpoint_dir set, ot_param_server_create() restores the newest
 * checkpoint that loads (a corrupt one is renamed "<name>.corrupt" and the
 * one before it is used), replays the log after it, and drops a torn
 * record at the log's end (stat wal_torn_records; the detail is then in
 * ot_param_server_errmsg() although create succeeded); it fails with
 * OT_ECORRUPT when no consistent state can be rebuilt and OT_EMISMATCH for
 * files of another model or shard.
 *
 * @return OT_OK, OT_EINVAL (NULL), OT_ESTATE (checkpoint_dir is empty),
 *         OT_ENOENT/OT_EIO (the detail in ot_param_server_errmsg()),
 *         OT_ENOMEM.
 */
OT_API ot_status ot_param_server_checkpoint(ot_param_server *ps);

/** The master version: the number of deltas applied. */
OT_API uint64_t ot_param_server_version(const ot_param_server *ps);

/** A copy of the master model, taken under the server's lock. */
OT_API ot_status ot_param_server_copy_model(const ot_param_server *ps, ot_model **out);

/** Reads a stat by name.  OT_ENOENT for an unknown name. */
OT_API ot_status ot_param_server_stat(const ot_param_server *ps, const char *name, double *value);

/** The name of stat @p i, or NULL past the last. */
OT_API const char *ot_param_server_stat_name(const ot_param_server *ps, size_t i);

/** Detail message of the server's last error; "" if none.  Never NULL. */
OT_API const char *ot_param_server_errmsg(const ot_param_server *ps);

/**
 * Serves the server's stats over HTTP, in Prometheus' text format, until
 * ot_param_server_destroy(): for each stat a "# HELP" line, a "# TYPE" line
 * (counter or gauge) and "ot_param_server_<stat> <value>"
 * (docs/metrics.md).  @p url is "http://HOST:PORT" (path /metrics) or
 * "http://HOST:PORT/PATH"; roles of one process may share a port with
 * different paths.  Requests are answered on nng's threads.  Thread-safe.
 * @return OT_OK; OT_EINVAL (NULL or malformed URL); OT_ENOTSUP (a scheme
 *         other than http://); OT_EADDRINUSE (the port is taken, or the path
 *         is already served on it); OT_ESTATE (this server already serves
 *         its metrics); OT_ENOMEM.  The detail is in ot_param_server_errmsg().
 */
OT_API ot_status ot_param_server_serve_metrics(ot_param_server *ps, const char *url);

/** A training worker: a local model and a snapshot of what the server has. */
typedef struct ot_trainer ot_trainer;

/**
 * Creates a trainer whose local model is built from @p cfg (the same model
 * options as the server's), plus trainer_id, sync_every_examples,
 * sync_interval_ms, the delta codec's options, timeout_ms, reconnect_ms,
 * sync_retries, and the security options tls_cert_key_file, tls_ca_file,
 * tls_auth, tls_server_name, hmac_key (docs/security.md), used by
 * ot_trainer_connect().
 */
OT_API ot_status ot_trainer_create(const ot_config *cfg, ot_trainer **out);

/**
 * Connects to a server's trainer URL and loads its master as the local model
 * and the snapshot (a full copy).  Waits up to timeout_ms for the server.
 *
 * Sharded servers (num_shards > 1 in @p cfg): call once per shard, in shard
 * order (shard 0's URL first); each call connects the next shard and loads
 * its key range (docs/deployment.md).  The trainer syncs only once every
 * shard is connected (before that ot_trainer_sync() gives OT_ESTATE); each
 * sync sends every shard the delta's rows of its key range, all shards at
 * once.
 * @return OT_OK, OT_ETIMEDOUT, OT_EMISMATCH (the server's model has another
 *         shape, or it is not the expected shard of num_shards: the message
 *         says which), OT_ESTATE (already connected to every shard).
 */
OT_API ot_status ot_trainer_connect(ot_trainer *tr, const char *url);

/**
 * Connects to the @p n shards whose trainer URLs are @p urls, in shard order
 * (ot_trainer_connect() for each).  @p n must equal num_shards.
 * @return as ot_trainer_connect(); OT_EINVAL (NULL, or @p n is not
 *         num_shards); OT_ESTATE (a shard is already connected).
 */
OT_API ot_status ot_trainer_connect_shards(ot_trainer *tr, const char *const *urls, size_t n);

/**
 * Learns one example on the local model, then syncs if sync_every_examples
 * or sync_interval_ms says so.  @p loss as ot_model_learn().  A failed sync
 * keeps the delta for the next one (nothing is lost) and is reported here.
 */
OT_API ot_status ot_trainer_learn(ot_trainer *tr, const ot_example *ex, float *loss);

/**
 * Learns @p n examples in order with ot_model_learn_batch(), split at the
 * sync points of sync_every_examples so that each sync comes after the same
 * example as with ot_trainer_learn() one at a time (each part is one
 * mini-batch); sync_interval_ms is checked after each part.  @p losses as
 * ot_model_learn_batch().  Every example is checked first: OT_EINVAL learns
 * nothing.  After a failed sync the rest of the examples are learned without
 * syncing and the failure is returned (the delta is kept for the next sync).
 */
OT_API ot_status ot_trainer_learn_batch(ot_trainer *tr, const ot_example *const *ex, size_t n,
                                        float *losses);

/**
 * Sends the delta (local - snapshot) to the server and applies the
 * aggregated update it returns.  A large delta goes as several frames, each
 * encoded while the one before is in flight (docs/roles.md, "Learn and
 * sync").  A request that times out is resent with
 * the same sequence number (sync_retries times), so the server applies it
 * once; after that the delta stays pending and the next sync resends it.
 * A durable server (docs/durability.md) answers OT_EIO when it could not
 * log the delta (not applied: the delta goes back into local - snapshot and
 * a later sync sends it as a new frame) and OT_EBUSY when it applied the
 * delta but could not make it durable (it stays pending, like a timeout,
 * and a later sync gets it acknowledged once the server has checkpointed).
 */
OT_API ot_status ot_trainer_sync(ot_trainer *tr);

/** Predicts with the local model. */
OT_API ot_status ot_trainer_predict(const ot_trainer *tr, const ot_example *ex, float *out);

/** The local model, borrowed: valid until the next call on the trainer. */
OT_API const ot_model *ot_trainer_model(const ot_trainer *tr);

/** The master version the trainer has seen (its last sync's); sharded: the
 * sum of the shards' versions. */
OT_API uint64_t ot_trainer_version(const ot_trainer *tr);

/** Reads a stat by name.  OT_ENOENT for an unknown name. */
OT_API ot_status ot_trainer_stat(const ot_trainer *tr, const char *name, double *value);

/** The name of stat @p i, or NULL past the last. */
OT_API const char *ot_trainer_stat_name(const ot_trainer *tr, size_t i);

/** Detail message of the trainer's last error; "" if none.  Never NULL. */
OT_API const char *ot_trainer_errmsg(const ot_trainer *tr);

/**
 * Serves the trainer's stats over HTTP as ot_param_server_serve_metrics()
 * does, named "ot_trainer_<stat>", until ot_trainer_destroy().  Called like
 * every trainer call (one thread at a time); the requests are answered on
 * nng's threads and read only the stats, which are atomic, so scraping
 * never waits for learning and learning never waits for a scrape.
 * @return OT_OK; OT_EINVAL (NULL or malformed URL); OT_ENOTSUP (a scheme
 *         other than http://); OT_EADDRINUSE (the port is taken, or the path
 *         is already served on it); OT_ESTATE (this trainer already serves
 *         its metrics); OT_ENOMEM.  The detail is in ot_trainer_errmsg().
 */
OT_API ot_status ot_trainer_serve_metrics(ot_trainer *tr, const char *url);

/** Destroys a trainer (without syncing).  Accepts NULL. */
OT_API void ot_trainer_destroy(ot_trainer *tr);

/** A prediction worker: serves a local copy kept fresh by the server. */
typedef struct ot_predictor ot_predictor;

/**
 * Creates a predictor for models of the shape @p cfg describes (the same
 * model options as the server's), plus gap_policy, timeout_ms, reconnect_ms,
 * recv_max_bytes, max_message (largest frame accepted: at least the
 * server's), shard_id and num_shards (sent in the HELLO), and the security
 * options tls_cert_key_file, tls_ca_file, tls_auth, tls_server_name,
 * hmac_key (docs/security.md), used by ot_predictor_subscribe().  The predictor
 * keeps up to three models of that shape (served, staging, spare), plus one
 * while a full update is assembled (docs/threading.md).
 * @return OT_OK, OT_EINVAL (NULL @p out, or model options that do not
 *         parse), OT_ENOMEM.
 */
OT_API ot_status ot_predictor_create(const ot_config *cfg, ot_predictor **out);

/**
 * Subscribes to a server: @p pub_url is its predictor URL, @p req_url its
 * trainer URL (for full copies).  Dials both, says HELLO (the server's
 * model must have this one's shape), waits up to timeout_ms for the
 * subscription to connect, loads a full copy, then starts the update
 * thread.  Each request waits up to timeout_ms for the server.  On failure
 * nothing is left running and subscribe may be called again.
 * @return OT_OK, OT_ETIMEDOUT, OT_EMISMATCH, OT_EINVAL (NULL or bad URL),
 *         OT_ESTATE (already subscribed, or stopped), the transport's and
 *         the decoder's statuses; the detail is in ot_predictor_errmsg().
 */
OT_API ot_status ot_predictor_subscribe(ot_predictor *p, const char *pub_url, const char *req_url);

/**
 * Subscribes to the @p n shards of a sharded server (n = num_shards; n 1 is
 * ot_predictor_subscribe()): @p pub_urls[i] and @p req_urls[i] are shard
 * i's predictor and trainer URLs, in shard order.  Says HELLO to each (it
 * must be shard i of num_shards: OT_EMISMATCH otherwise, with a message),
 * loads each shard's full copy (its key range) into one model, then follows
 * every shard's updates, tracking a sequence and a version per shard.  A
 * gap in one shard's sequence fetches that shard's full copy (sharded
 * predictors always repair by fetching, whatever gap_policy says).  A full
 * update that starts while another shard's is being assembled is skipped
 * (counted in ignored_waiting).  The served version
 * (ot_predictor_version()) is the sum of the shards' versions.
 * @return as ot_predictor_subscribe(); OT_EINVAL (NULL, or @p n is not
 *         num_shards).
 */
OT_API ot_status ot_predictor_subscribe_shards(ot_predictor *p, const char *const *pub_urls,
                                               const char *const *req_urls, size_t n);

/**
 * Predicts one example with the current model, as ot_model_predict() does.
 * Thread-safe: any number of threads at once, while updates land; never
 * waits for the update thread and never changes the model.  Does not set
 * the errmsg.  @return OT_OK, OT_EINVAL, OT_ESTATE (no model loaded yet),
 * OT_ENOMEM.
 */
OT_API ot_status ot_predictor_predict(ot_predictor *p, const ot_example *ex, float *out);

/**
 * Predicts @p n examples with one model object: no full update or swap
 * lands in the middle of the batch, though real-time updates written in
 * place may (as during ot_predictor_predict()).  Thread-safe; statuses as
 * ot_predictor_predict().
 */
OT_API ot_status ot_predictor_predict_batch(ot_predictor *p, const ot_example *const *ex, size_t n,
                                            float *out);

/** The master version of the model being served. */
OT_API uint64_t ot_predictor_version(const ot_predictor *p);

/** A predictor's serving socket (ot_predict_server_start()). */
typedef struct ot_predict_server ot_predict_server;

/**
 * Prediction serving (docs/deployment.md, docs/wire-format.md "Prediction
 * requests"): answers prediction requests for @p pred on @p url
 * (request/reply; tcp://, ipc://, inproc://, tls+tcp://) with a pool of
 * request_contexts nng contexts, each calling ot_predictor_predict_batch().
 * A request carries 1 to max_predict_batch examples as VW text lines or as
 * hashed features; the reply carries one score per example and the master
 * version served when the batch finished (real-time updates may land during
 * a batch).  A malformed or oversized request gets an error reply
 * (OT_EFORMAT, OT_ERANGE, with the detail) and never reaches the model.
 * @p cfg (may be NULL) gives request_contexts, max_predict_batch,
 * recv_max_bytes, timeout_ms, the security options and the allocator.
 * Destroy the returned handle before @p pred.
 * @return OT_OK, OT_EINVAL, OT_ENOMEM, OT_EADDRINUSE and the transport's
 *         statuses for @p url.
 */
OT_API ot_status ot_predict_server_start(ot_predictor *pred, const ot_config *cfg, const char *url,
                                         ot_predict_server **out);
/** The URL served (a tcp:// port 0 replaced by the bound port).  Valid until destroy. */
OT_API const char *ot_predict_server_url(const ot_predict_server *s);
/** Stops serving (returns when no request is being answered) and frees.  NULL is ignored. */
OT_API void ot_predict_server_destroy(ot_predict_server *s);

/** A client of a predictor's serving socket. */
typedef struct ot_predict_client ot_predict_client;

/**
 * A client of ot_predict_server_start(): one request at a time (externally
 * synchronized).  @p cfg (may be NULL) gives timeout_ms, reconnect_ms,
 * recv_max_bytes and the security options.  Connects in the background.
 * @return OT_OK, OT_EINVAL, OT_ENOMEM, the transport's statuses.
 */
OT_API ot_status ot_predict_client_create(const ot_config *cfg, const char *url,
                                          ot_predict_client **out);
/**
 * Predicts the examples of @p lines (@p len bytes of VW text, one example
 * per line; a final newline is optional).  @p n receives the number of
 * examples; @p scores (room for @p cap) the scores; @p version (may be NULL)
 * the served version.
 * @return OT_OK; OT_ENOSPC (more than @p cap examples; *n says how many);
 *         OT_EINVAL; the server's refusal (OT_EFORMAT, OT_ERANGE, OT_ESTATE)
 *         with its text in ot_predict_client_errmsg(); OT_ETIMEDOUT.
 */
OT_API ot_status ot_predict_client_predict_text(ot_predict_client *c, const char *lines, size_t len,
                                                float *scores, size_t cap, size_t *n,
                                                uint64_t *version);
/** Predicts @p n examples sent as hashed features (sparse features only). */
OT_API ot_status ot_predict_client_predict(ot_predict_client *c, const ot_example *const *ex,
                                           size_t n, float *scores, uint64_t *version);
/** Detail of the last failure; "" if none.  Never NULL. */
OT_API const char *ot_predict_client_errmsg(const ot_predict_client *c);
/** Frees the client.  NULL is ignored. */
OT_API void ot_predict_client_destroy(ot_predict_client *c);

/**
 * Waits until the served version is at least @p version, up to
 * @p timeout_ms (>= 0).  Thread-safe.
 * @return OT_OK, OT_ETIMEDOUT, OT_EINVAL (NULL or negative timeout).
 */
OT_API ot_status ot_predictor_wait_version(ot_predictor *p, uint64_t version, int32_t timeout_ms);

/**
 * A copy of the model being served (the caller owns it).  Thread-safe; waits
 * for a real-time update being written in place.  @return OT_OK, OT_EINVAL,
 * OT_ESTATE (no model loaded yet), OT_ENOMEM.
 */
OT_API ot_status ot_predictor_copy_model(ot_predictor *p, ot_model **out);

/** Reads a stat by name.  OT_ENOENT for an unknown name. */
OT_API ot_status ot_predictor_stat(const ot_predictor *p, const char *name, double *value);

/** The name of stat @p i, or NULL past the last. */
OT_API const char *ot_predictor_stat_name(const ot_predictor *p, size_t i);

/** Detail message of the predictor's last error; "" if none.  Never NULL. */
OT_API const char *ot_predictor_errmsg(const ot_predictor *p);

/**
 * Serves the predictor's stats over HTTP as ot_param_server_serve_metrics()
 * does, named "ot_predictor_<stat>", until ot_predictor_destroy() (not
 * ot_predictor_stop(): a stopped predictor still serves its last model and
 * its stats).  Thread-safe.
 * @return OT_OK; OT_EINVAL (NULL or malformed URL); OT_ENOTSUP (a scheme
 *         other than http://); OT_EADDRINUSE (the port is taken, or the path
 *         is already served on it); OT_ESTATE (this predictor already serves
 *         its metrics); OT_ENOMEM.  The detail is in ot_predictor_errmsg().
 */
OT_API ot_status ot_predictor_serve_metrics(ot_predictor *p, const char *url);

/**
 * Stops the update thread and closes the sockets; returns when the thread
 * has ended.  The last model keeps being served.  Idempotent; a stopped
 * predictor cannot subscribe again.
 */
OT_API ot_status ot_predictor_stop(ot_predictor *p);

/** Stops and destroys.  Accepts NULL. */
OT_API void ot_predictor_destroy(ot_predictor *p);

/**
 * Saves the model being served to @p path with ot_model_save() (weights and
 * optimizer state), from a copy taken as ot_predictor_copy_model() does, so
 * serving and updates go on meanwhile.  The file does not record the master
 * version.  Thread-safe.
 * @return OT_OK, OT_EINVAL (NULL), OT_ESTATE (no model loaded yet), and the
 *         statuses of ot_model_save() (detail in ot_predictor_errmsg()).
 */
OT_API ot_status ot_predictor_save(ot_predictor *p, const char *path);

/**
 * Loads a model saved by ot_predictor_save() or ot_model_save() and serves
 * it at once, before ot_predictor_subscribe(): a restarted predictor can
 * answer while it subscribes.  Subscribing still loads a full copy from the
 * server, which replaces this model; until then ot_predictor_version() is
 * 0.  Call before subscribing, from one thread.
 * @return OT_OK, OT_EINVAL (NULL), OT_ESTATE (already subscribed or
 *         stopped), OT_EMISMATCH (a model of another shape than the
 *         predictor's config describes), and the statuses of
 *         ot_model_load() (detail in ot_predictor_errmsg()).
 */
OT_API ot_status ot_predictor_load(ot_predictor *p, const char *path);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* ONLINETRAIN_H */
