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
    OT_OPT_INIT_SCALE = 115     /**< "init_scale": scale of deep/embedding initial weights (default 0.1). */
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
 * text parser does (docs/formats.md).  @p ns_name NULL or "" is the default
 * namespace.
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
 * it held.  @p format is "vw" or "libsvm"; NULL uses the example's config.
 * @return OT_OK, or OT_EFORMAT with the column in ot_example_errmsg().
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
 * Opens a reader on a file; "-" is standard input; a name ending in ".gz"
 * is decompressed.  Options used: format, on_error, hash, max_line.
 * @return OT_OK, OT_ENOENT/OT_EIO for files that cannot be opened,
 *         OT_ENOTSUP for gzip without zlib.
 */
OT_API ot_status ot_reader_open_file(const ot_config *cfg, const char *path, ot_reader **out);

/** Opens a reader on @p len bytes of memory (copied). */
OT_API ot_status ot_reader_open_memory(const ot_config *cfg, const void *data, size_t len,
                                       ot_reader **out);

/**
 * Reads the next example into @p ex.  Blank lines and lines starting with
 * '#' are skipped.
 * @return OT_OK; OT_EEOF at the end; OT_EFORMAT for a bad line when
 *         on_error is "stop" (the message gives line and column; the next
 *         call continues after that line); OT_EIO on a read error.
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
 * dense_dim, init_scale, seed.
 * @return OT_OK, OT_ENOMEM, OT_EINVAL for inconsistent options (message in
 *         @p cfg's errmsg when @p cfg is not NULL).
 */
OT_API ot_status ot_model_create(const ot_config *cfg, ot_model **out);

/** Destroys a model.  Accepts NULL. */
OT_API void ot_model_destroy(ot_model *m);

/** Copies a model (shape, weights, state, counters).  The copy is independent. */
OT_API ot_status ot_model_clone(const ot_model *m, ot_model **out);

/**
 * Predicts one example: the probability for logistic loss, the value for
 * squared loss.  Never changes the model.
 */
OT_API ot_status ot_model_predict(const ot_model *m, const ot_example *ex, float *out);

/** Predicts @p n examples into @p out[0..n-1] (the deep part uses one sgemm per batch). */
OT_API ot_status ot_model_predict_batch(const ot_model *m, const ot_example *const *ex, size_t n,
                                        float *out);

/**
 * Learns from one labelled example.  @p loss (may be NULL) receives the
 * example's loss before the update, times its importance weight
 * (progressive validation).  An example without a label gives OT_EINVAL.
 */
OT_API ot_status ot_model_learn(ot_model *m, const ot_example *ex, float *loss);

/**
 * Learns from @p n examples as one mini-batch (gradients of the deep part
 * summed over the batch; wide weights updated per example).  @p losses
 * (may be NULL) receives each example's loss before the update.
 */
OT_API ot_status ot_model_learn_batch(ot_model *m, const ot_example *const *ex, size_t n,
                                      float *losses);

/**
 * Saves the model to a file: magic, format version, the model's config and
 * fingerprint, the arrays, a CRC32C checksum.  Written to a temporary file
 * and renamed, so a crash leaves the old file or the new one.
 */
OT_API ot_status ot_model_save(const ot_model *m, const char *path, ot_save_what what);

/**
 * Loads a model saved by ot_model_save() (a new model, shaped by the file).
 * @p cfg (may be NULL) supplies the allocator only.
 * @return OT_ENOENT/OT_EIO, OT_EFORMAT (not a model file), OT_EVERSION,
 *         OT_ECORRUPT (checksum or truncated).
 */
OT_API ot_status ot_model_load(const ot_config *cfg, const char *path, ot_model **out);

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

/* @@DELTA@@ */

#ifdef __cplusplus
}
#endif

#endif /* ONLINETRAIN_H */
