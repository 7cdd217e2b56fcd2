/*
 * durable.h - durability of the parameter server (checkpoints and the
 * write-ahead log) and the roles' security settings and limits (internal).
 *
 *   checkpoint.c  the checkpoint file: write (temporary file, fsync, rename,
 *                 directory fsync) and read (every byte checked);
 *   wal.c         the write-ahead log: segment and record formats, the
 *                 scanner used at restart, and the appender with group
 *                 commit;
 *   durable.c     what a server does with them: restore at create, the
 *                 checkpoint procedure and its retention, the background
 *                 thread (interval syncs, periodic checkpoints), the test
 *                 hooks of a simulated crash, and the server's extra stats;
 *   security.c    the tls_* and hmac_key options mapped onto oti_tp_opts.
 *
 * docs/durability.md describes the promises and the file formats byte by
 * byte; docs/security.md the threat model.  Nothing here is exported.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_DURABLE_H
#define OT_DURABLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "delta.h"
#include "internal.h"
#include "stats.h"
#include "transport.h"

/* ---- security settings (security.c) ------------------------------------ */

/*
 * Fills the TLS and message-authentication fields of `o` from cfg:
 * tls_cert_key_file, tls_ca_file, tls_server_name (each "" = not set),
 * tls_auth, and hmac_key decoded into `key` (OTI_HMAC_KEY_MAX bytes, which
 * must stay valid until oti_sock_create() has copied it; wipe it after with
 * oti_wipe()).  The strings point into cfg.  OT_EINVAL for a key that is not
 * an even number of hex digits (the config refuses those when set).
 */
ot_status oti_role_security(const ot_config *cfg, oti_tp_opts *o, uint8_t *key, char *err);

/* Decodes a hex string ("" gives 0 bytes) into out (cap bytes).  0, or -1
 * for an odd length, a non-hex character or more than cap bytes. */
int oti_hex_decode(const char *s, uint8_t *out, size_t cap, size_t *len);

/* Overwrites n bytes with zeros in a way the compiler keeps. */
void oti_wipe(void *p, size_t n);

/* ---- byte sources (checkpoint.c) ---------------------------------------- */

/* A file (len from its size) or memory, read front to back. */
typedef struct oti_src {
    FILE *fp;
    const uint8_t *mem;
    uint64_t len, pos;
} oti_src;

void oti_src_mem(oti_src *s, const void *data, size_t len);
/* OT_OK, or OT_EIO when the file's size cannot be read. */
ot_status oti_src_file(oti_src *s, FILE *fp);
/* Reads up to n bytes; returns how many were read (less at the end). */
size_t oti_src_read(oti_src *s, void *buf, size_t n);

/* fsyncs a directory so that creates, renames and unlinks in it are durable.
 * 0, or -1 (errno set); file systems that refuse fsync on a directory are
 * not an error. */
int oti_fsync_dir(const char *dir);

/* ---- checkpoint files (checkpoint.c) ------------------------------------ */

#define OTI_CKPT_MAJOR 1
#define OTI_CKPT_MINOR 0
#define OTI_CKPT_HEADER 64       /* header bytes in format 1.0 */
#define OTI_CKPT_TRAINER 16      /* bytes per trainer-table entry */
#define OTI_CKPT_HEADER_MAX 4096 /* longest header accepted (later minors) */

typedef struct oti_ckpt_trainer {
    uint32_t id;       /* trainer id */
    uint64_t last_seq; /* last sequence applied from it */
} oti_ckpt_trainer;

/* What a checkpoint holds besides the arrays. */
typedef struct oti_ckpt_state {
    uint64_t version;           /* master version of the arrays */
    uint64_t published_version; /* version of the predictors' published snapshot */
    uint32_t shard;             /* the server's shard (checked on read) */
    oti_ckpt_trainer *trainers; /* ascending by id, distinct */
    size_t ntrainers, cap;
    int skip;                   /* set by a capture hook: nothing new to write */
} oti_ckpt_state;

/* Makes room for n trainers (ntrainers unchanged).  OT_ENOMEM. */
ot_status oti_ckpt_state_reserve(const oti_alloc *a, oti_ckpt_state *s, size_t n);
void oti_ckpt_state_fini(const oti_alloc *a, oti_ckpt_state *s);

/* Number of floats a checkpoint of m carries: every weight and state value. */
uint64_t oti_ckpt_floats(const ot_model *m);

/* The exact size of a checkpoint file of m with n trainers (format 1.0). */
uint64_t oti_ckpt_file_size(const ot_model *m, size_t ntrainers);

/*
 * Writes a checkpoint of m and s to `path`: to "<path>.tmp" first, fsync,
 * rename, then fsyncs the directory.  A crash leaves the old file set or
 * the new one.  OT_EIO (detail in err), OT_ENOMEM.
 */
ot_status oti_ckpt_save(const oti_alloc *a, const char *path, const ot_model *m,
                        const oti_ckpt_state *s, char *err);

/*
 * Reads a checkpoint into m's arrays (m gives the shape: its fingerprint and
 * float count must match) and s (s->shard is the shard expected; the
 * trainer table is allocated with a).  Statuses: OT_EFORMAT (not a
 * checkpoint, bad header or trainer table), OT_EVERSION (unknown major),
 * OT_ECORRUPT (truncated, size field wrong, checksum mismatch), OT_EMISMATCH
 * (another model's fingerprint or another shard), OT_ENONFINITE, OT_ENOMEM.
 * On error m's arrays may be partly overwritten: read into a scratch model.
 */
ot_status oti_ckpt_read(const oti_alloc *a, oti_src *src, ot_model *m, oti_ckpt_state *s,
                        char *err);

/* ---- write-ahead log (wal.c) -------------------------------------------- */

#define OTI_WAL_MAJOR 1
#define OTI_WAL_MINOR 0
#define OTI_WAL_SEG_HEADER 40 /* segment header bytes */
#define OTI_WAL_REC_HEADER 32 /* record header bytes */

/* wal_sync policies (the order of the option's words). */
enum { OTI_WAL_SYNC_EVERY = 0, OTI_WAL_SYNC_INTERVAL = 1, OTI_WAL_SYNC_NONE = 2 };

/* One logged ADD frame, as it was applied to the master. */
typedef struct oti_wal_rec {
    uint32_t sender;   /* trainer id */
    uint64_t sequence; /* the trainer's sequence number */
    uint64_t version;  /* master version after applying it */
    const uint8_t *frame;
    size_t len;
} oti_wal_rec;

/* Called for each valid record in order; a status other than OT_OK ends the
 * scan with that status. */
typedef ot_status (*oti_wal_rec_fn)(void *arg, const oti_wal_rec *r, char *err);

/* What a scan found. */
typedef struct oti_wal_scaninfo {
    uint64_t start;    /* the segment's start version */
    uint64_t records;  /* valid records passed to the callback */
    uint64_t good_end; /* offset just after the last valid record */
    int header_bad;    /* the segment header is missing, cut short or corrupt */
    int torn;          /* the scan stopped at a record that is cut short or invalid */
    char why[96];      /* why it stopped (torn or header_bad) */
} oti_wal_scaninfo;

/* Writes a segment header into out. */
void oti_wal_segment_header(uint8_t out[OTI_WAL_SEG_HEADER], uint64_t fingerprint, uint32_t shard,
                            uint64_t start);
/* Writes a record header for r (its CRC covers the frame too) into out. */
void oti_wal_record_header(uint8_t out[OTI_WAL_REC_HEADER], const oti_wal_rec *r);

/*
 * Scans one segment: its header (fingerprint and shard must match when not
 * 0 / UINT32_MAX), then records until the end or the first record that is
 * cut short or fails a check (magic, length 64..max_record, CRC32C, an ADD
 * frame of exactly that length whose sender and sequence equal the
 * record's, versions strictly increasing and above the segment's start).
 * Frames are not applied or fully checked here: fn does that.  Returns
 * OT_OK (with out->torn or out->header_bad set when it stopped early),
 * OT_EMISMATCH (another model or shard), OT_EVERSION (unknown major),
 * OT_ENOMEM, or fn's status.
 */
ot_status oti_wal_scan(const oti_alloc *a, oti_src *src, uint64_t fingerprint, uint32_t shard,
                       size_t max_record, oti_wal_rec_fn fn, void *arg, oti_wal_scaninfo *out,
                       char *err);

/* The appender: one open segment in a directory. */
typedef struct oti_wal oti_wal;

ot_status oti_wal_create(const oti_alloc *a, const char *dir, uint64_t fingerprint, uint32_t shard,
                         int policy, oti_wal **out, char *err);
void oti_wal_destroy(oti_wal *w);

/* Continues segment wal-<start> after cutting it to `end` bytes (dropping a
 * torn tail), or creates a new segment wal-<start> when `end` is 0. */
ot_status oti_wal_attach(oti_wal *w, uint64_t start, uint64_t end, char *err);

/*
 * Appends a record (the caller serializes appends and rotations: the
 * server's master lock).  On success *ticket is what oti_wal_sync() needs
 * to make this record durable.  A failed write is cut back off the file;
 * if that fails too the log is broken: every later append fails with
 * OT_EIO until oti_wal_mend() (after a checkpoint) or oti_wal_attach().
 * OT_EIO, OT_ENOMEM.
 */
ot_status oti_wal_append(oti_wal *w, const oti_wal_rec *r, uint64_t *ticket, char *err);

/*
 * Makes everything appended up to `ticket` durable (fdatasync), sharing one
 * fsync among the callers waiting at the same time (group commit).  Safe
 * from any thread, without the appenders' lock.  *did (may be NULL) is set
 * to 1 when this call ran an fdatasync.  A failed fdatasync breaks the log
 * (see oti_wal_append) and gives OT_EIO; so does a sync of a broken log
 * (without trying: a second fdatasync may succeed although pages were
 * lost).
 */
ot_status oti_wal_sync(oti_wal *w, uint64_t ticket, int *did, char *err);

/* The ticket of everything appended so far. */
uint64_t oti_wal_written(const oti_wal *w);

/* Whether appends are refused (a write or an fdatasync failed). */
int oti_wal_broken(const oti_wal *w);

/* After the checkpoint at the open segment's start was written: clears the
 * broken state when the break happened before oti_wal_rotate() started
 * the segment (nothing before it is needed any more); a break since then
 * stays. */
void oti_wal_mend(oti_wal *w);

/* Test hook: the next append writes half its record and fails with ENOSPC
 * (OTI_WAL_FAIL_WRITE), the next fdatasync of oti_wal_sync() fails with EIO
 * (OTI_WAL_FAIL_SYNC).  Bits may be combined; each fires once.  Any thread. */
#define OTI_WAL_FAIL_WRITE 1
#define OTI_WAL_FAIL_SYNC 2
void oti_wal_fail_next(oti_wal *w, int what);

/* The start version of the open segment. */
uint64_t oti_wal_segment_start(const oti_wal *w);

/*
 * Starts a new segment wal-<start> (caller holds the appenders' lock): the
 * open one is fdatasync'd (unless the policy is "none" or the log is
 * broken) and closed.  When the open segment already starts at `start` and
 * holds no record appended since it was opened, it is kept (cut back to
 * its last good record when broken).  A broken log stays broken (see
 * oti_wal_mend).  OT_EIO; on failure the open segment stays in use.
 */
ot_status oti_wal_rotate(oti_wal *w, uint64_t start, char *err);

/* ---- the server's durability (durable.c) --------------------------------- */

typedef struct oti_dur oti_dur;

/* What the server provides.  All but capture run during oti_dur_create(),
 * on the creating thread, before the server is shared. */
typedef struct oti_dur_hooks {
    void *arg;
    /* The checkpoint's state was loaded (the master already holds its
     * arrays), or nothing was (s->version 0, no trainers): take it over. */
    ot_status (*restored)(void *arg, const oti_ckpt_state *s, char *err);
    /* Apply one logged frame (its version is the next one).  OT_EREPLAY
     * when the trainer table says it was applied already (skipped). */
    ot_status (*replay)(void *arg, const oti_wal_rec *r, char *err);
    /* Under the server's locks: copy the master into `scratch`, fill s
     * (version, published_version, trainers), and call oti_dur_rotate()
     * while appends are excluded.  Set s->skip when oti_dur_checkpoint_due()
     * says the version is already checkpointed. */
    ot_status (*capture)(void *arg, ot_model *scratch, oti_ckpt_state *s, char *err);
} oti_dur_hooks;

/*
 * The server stats this module keeps, in this order, from index `base` of
 * the server's table (param_server.c lists their names and help texts in
 * its stat_defs; docs/durability.md and docs/security.md explain them).
 */
enum {
    OTI_DS_CHECKPOINTS,        /* "checkpoints": checkpoints written */
    OTI_DS_CHECKPOINT_ERRORS,  /* "checkpoint_errors": checkpoints that failed */
    OTI_DS_CHECKPOINT_FALLBACKS, /* "checkpoint_fallbacks": corrupt checkpoints skipped at start */
    OTI_DS_CHECKPOINT_VERSION, /* "checkpoint_version" (gauge): version of the newest checkpoint */
    OTI_DS_CHECKPOINT_MS,      /* "checkpoint_ms" (gauge): duration of the last checkpoint */
    OTI_DS_CHECKPOINT_BYTES,   /* "checkpoint_bytes" (gauge): size of the last checkpoint file */
    OTI_DS_WAL_RECORDS,        /* "wal_records": records appended */
    OTI_DS_WAL_BYTES,          /* "wal_bytes": bytes appended */
    OTI_DS_WAL_SYNCS,          /* "wal_syncs": fdatasync calls on the log */
    OTI_DS_WAL_ERRORS,         /* "wal_errors": failed appends and syncs */
    OTI_DS_WAL_REPLAYED,       /* "wal_replayed": records applied at start */
    OTI_DS_WAL_TORN,           /* "wal_torn_records": torn records dropped at start */
    OTI_DS_RESTORED_VERSION,   /* "restored_version" (gauge): version restored at start */
    OTI_DS_REJ_TOO_BIG,        /* "rejected_too_big": frames over max_delta_entries */
    OTI_DS_DROP_AUTH,          /* "drop_auth": requests failing authentication (transport) */
    OTI_DS_DROP_REPLAY,        /* "drop_replay": replayed requests (transport) */
    OTI_DS_DROP_OVERSIZE,      /* "drop_oversize": requests over recv_max_bytes (transport, inproc) */
    OTI_DS_DROP_SHORT,         /* "drop_short": requests too short for the trailer (transport) */
    OTI_DS_REFUSED_CONNS,      /* "refused_connections": connections over max_connections (transport) */
    OTI_DS_COUNT
};

/*
 * Creates the server's durability state from cfg (checkpoint_dir,
 * checkpoint_interval_ms, wal, wal_sync, wal_sync_interval_ms,
 * max_delta_entries, recv_max_bytes); `stats` from index `base` holds its
 * OTI_DS_COUNT stats.  With checkpoint_dir "" only the limits and stats are
 * kept.  Otherwise the directory is created if missing, the newest
 * checkpoint that loads is read into `master` (a corrupt one is renamed
 * "<name>.corrupt" and the previous one is tried), the log is replayed after
 * it (a torn tail is cut off, counted in wal_torn_records and described in
 * err), and the log is opened for appends.  err receives a note even on
 * success when something was dropped ("" otherwise).  Statuses:
 * OT_ENOENT/OT_EIO (directory or files), OT_ECORRUPT (no checkpoint loads
 * and the log does not reach back to version 0; a damaged record before
 * the last segment; a gap in the log's versions), OT_EMISMATCH (files of
 * another model or shard), the hooks' statuses, OT_ENOMEM.
 */
ot_status oti_dur_create(const ot_config *cfg, const oti_alloc *a, ot_model *master,
                         uint32_t shard, oti_stats *stats, size_t base, const oti_dur_hooks *h,
                         oti_dur **out, char *err);

/* Frees everything (the background thread must be stopped).  NULL is ignored. */
void oti_dur_destroy(oti_dur *d);

/* Whether checkpoints are on (checkpoint_dir set). */
int oti_dur_enabled(const oti_dur *d);

/* The max_delta_entries limit: OT_ETOOBIG (counted in rejected_too_big). */
ot_status oti_dur_check_frame(oti_dur *d, uint64_t entries, char *err);

/*
 * Under the master lock, before an ADD frame is applied: when the log is
 * on, validates the frame against the master (so that only a frame that
 * applies is logged) and appends it; *ticket receives the record's ticket
 * (0 when nothing was logged).  Statuses: the decoder's (message in the
 * decoder), OT_EIO (message in err).
 */
ot_status oti_dur_log(oti_dur *d, ot_delta_decoder *dec, const ot_model *master, uint32_t sender,
                      uint64_t sequence, uint64_t version, const uint8_t *frame, size_t len,
                      uint64_t *ticket, char *err);

/* The ticket of everything logged so far (0 when the log is off); any
 * thread.  A reply that shows the master's state (a sync's ack and
 * aggregated update, a duplicate's ack, a full copy) reads it after that
 * state was made and commits it before the reply goes out, so nothing the
 * reply reports applied can be lost by a crash (wal_sync "every"). */
uint64_t oti_dur_ticket(const oti_dur *d);

/* After the master lock is released, before the reply: makes the record
 * durable as wal_sync says (every: now; interval and none: later).  A
 * failed sync is counted (wal_errors) and breaks the log; the frame stays
 * applied, and OT_EBUSY (detail in err) says that the reply must not go
 * out: the trainer resends the frame (OT_EBUSY is transient for it) and
 * gets a duplicate's acknowledgement once a checkpoint has made the master
 * durable (the background thread tries one a second while the log is
 * broken).  OT_OK otherwise. */
ot_status oti_dur_commit(oti_dur *d, uint64_t ticket, char *err);

/* Under the master lock (from the capture hook): whether a checkpoint at
 * `version` would hold anything new (or mend a broken log). */
int oti_dur_checkpoint_due(const oti_dur *d, uint64_t version);

/* Under the master lock (from the capture hook): starts a new log segment
 * at `version`. */
ot_status oti_dur_rotate(oti_dur *d, uint64_t version, char *err);

/*
 * Takes a checkpoint now: capture, write, keep the newest two checkpoints,
 * delete the log segments no kept checkpoint needs.  One at a time.
 * OT_ESTATE (checkpoints off, or the server crashed), OT_EIO, OT_ENOMEM.
 */
ot_status oti_dur_checkpoint(oti_dur *d, char *err);

/* Starts the background thread when needed (interval syncs, periodic
 * checkpoints).  OT_ENOMEM. */
ot_status oti_dur_start(oti_dur *d);

/* Stop, first part (before the request socket is stopped): wakes handlers
 * held by a simulated crash and joins the background thread. */
void oti_dur_release(oti_dur *d);

/* Stop, last part (no handler runs any more): the final checkpoint, unless
 * checkpoints are off or the server crashed.  Its status. */
ot_status oti_dur_finish(oti_dur *d, char *err);

/* Copies the request socket's drop counters into the stats (any thread;
 * the socket must stay open during the call). */
void oti_dur_refresh_transport(oti_dur *d, const oti_sock *rep);

/* Copies the connections refused by the request socket and the publishing
 * socket (either may be NULL) into refused_connections; as above. */
void oti_dur_refresh_conns(oti_dur *d, const oti_sock *rep, const oti_sock *pub);

/* ---- test hooks: failing disks -------------------------------------------- */

/* The next checkpoint write fails with OT_EIO (ENOSPC), leaving a partial
 * "<name>.tmp" behind.  Combine with OTI_WAL_FAIL_WRITE / _SYNC. */
#define OTI_DUR_FAIL_CHECKPOINT 4

/* Arms the failures in `what` (OTI_DUR_FAIL_CHECKPOINT, OTI_WAL_FAIL_*); each
 * fires once.  Any thread. */
void oti_dur_fail_next(oti_dur *d, int what);
/* The same on a server (param_server.c).  OT_EINVAL, OT_ESTATE (checkpoint_dir
 * is not set). */
ot_status oti_param_server_fail_next(ot_param_server *ps, int what);

/* ---- test hooks: a simulated crash --------------------------------------- */

/* Called after a delta was applied, logged and synced, before the reply; a
 * nonzero return makes the server behave as if killed at that point. */
typedef int (*oti_crash_fn)(void *arg, uint64_t version);

void oti_dur_set_crash_hook(oti_dur *d, oti_crash_fn fn, void *arg);
/* Marks the server crashed. */
void oti_dur_crash(oti_dur *d);
/*
 * At a handler's start (applied 0) and after a delta was applied (applied
 * 1, version the master version): calls the crash hook when applied, and
 * when the server has crashed holds the handler until oti_dur_release(),
 * then returns 1 (the handler must return an error: no reply is wanted).
 * 0 otherwise.
 */
int oti_dur_crash_point(oti_dur *d, uint64_t version, int applied);

/*
 * Parameter-server side of the hooks (param_server.c).  A crashed server
 * answers no request (handlers are held until stop), takes no final
 * checkpoint at stop and syncs nothing more: destroying it is as close to
 * kill -9 as one process allows.  OT_EINVAL.
 */
ot_status oti_param_server_set_crash_hook(ot_param_server *ps, oti_crash_fn fn, void *arg);
ot_status oti_param_server_crash(ot_param_server *ps);

#endif /* OT_DURABLE_H */
