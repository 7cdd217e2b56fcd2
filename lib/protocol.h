/*
 * protocol.h - the roles' protocol (docs/protocol.md), shared by the
 * parameter server, the trainer and the predictor: CONTROL payloads,
 * splitting a message into frames, the HELLO exchange and fetching a full
 * copy chunk by chunk.  Also the parameter server's internal hooks for
 * tests.  Nothing here is exported.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_PROTOCOL_H
#define OT_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "transport.h"

/* CONTROL operations: the first byte of a CONTROL frame's payload. */
enum {
    OTI_CTL_FULL_REQ = 1,
    OTI_CTL_SYNC_ACK = 2,
    OTI_CTL_HELLO = 3,
    OTI_CTL_HELLO_ACK = 4
};

/* SYNC_ACK results. */
enum { OTI_SYNC_APPLIED = 0, OTI_SYNC_DUPLICATE = 1 };

/* The longest CONTROL payload in bytes (HELLO_ACK: 1 + 8 * 5 + 4 * 2). */
#define OTI_CTL_MAX 49
/* The longest CONTROL frame. */
#define OTI_CTL_FRAME_MAX (64 + OTI_CTL_MAX)

/*
 * A decoded CONTROL payload.  Which fields mean something depends on op:
 *   FULL_REQ   version (wanted; 0: newest), chunk
 *   SYNC_ACK   result, version (master after the sync), resync, full_version
 *   HELLO      shard, num_shards
 *   HELLO_ACK  fingerprint, version (master), lo, hi (the shard's key range
 *              [lo, hi)), shard, num_shards, last_sequence (the last
 *              sequence applied from the HELLO's sender; 0: none)
 * Unused fields are zero after oti_ctl_decode().
 */
typedef struct oti_ctl {
    int op;
    uint64_t version;
    uint32_t chunk;
    int result;
    int resync;
    uint64_t full_version;
    uint32_t shard, num_shards;
    uint64_t fingerprint, lo, hi;
    uint64_t last_sequence;
} oti_ctl;

/* Writes c's payload into out (OTI_CTL_MAX bytes); returns its length, or 0
 * for an unknown op. */
size_t oti_ctl_encode(const oti_ctl *c, uint8_t *out);

/* Decodes a payload.  OT_EFORMAT for an unknown op, a wrong length or a
 * flag byte other than 0 or 1. */
ot_status oti_ctl_decode(const uint8_t *p, size_t n, oti_ctl *out);

/*
 * Encodes a whole CONTROL frame carrying c, with the given header fields
 * (flags FIRST|LAST, base_version 0) into dst (cap bytes; OTI_CTL_FRAME_MAX
 * is always enough).  OT_ENOSPC (size in *len), OT_EINVAL.  Thread-safe (no
 * shared state).
 */
ot_status oti_ctl_frame(const oti_ctl *c, uint64_t fingerprint, uint32_t shard, uint32_t sender,
                        uint64_t sequence, uint64_t new_version, uint8_t *dst, size_t cap,
                        size_t *len);

/*
 * Checks one frame (ot_delta_check) and decodes it as a CONTROL frame.
 * OT_EFORMAT when it is another kind; the check's statuses otherwise.  err
 * (OTI_ERRMSG_LEN bytes, may be NULL) receives the detail.
 */
ot_status oti_ctl_parse(const uint8_t *frame, size_t len, oti_ctl *out, char *err);

/*
 * Splits a message into frames: gives the frame at *off (its length from
 * its header) and advances *off past it.  Returns OT_OK, OT_EEOF when *off
 * is at the end, OT_ECORRUPT when the frame runs past the message, or the
 * statuses of ot_delta_peek() for bytes that are not a frame header.  The
 * frame itself is not checked (its checksum neither).
 */
ot_status oti_frame_next(const uint8_t *msg, size_t len, size_t *off, const uint8_t **frame,
                         size_t *flen);

/*
 * The HELLO exchange on a REQ socket: sends HELLO (shard, num_shards; the
 * header carries fingerprint and sender), waits up to timeout_ms for
 * HELLO_ACK and decodes it into *ack.  OT_EMISMATCH when the server's
 * fingerprint is not `fingerprint`; OT_EFORMAT for a reply that is not a
 * HELLO_ACK; the transport's statuses (OT_ETIMEDOUT, ...).
 */
ot_status oti_hello(oti_sock *sock, uint64_t fingerprint, uint32_t sender, uint32_t shard,
                    uint32_t num_shards, int32_t timeout_ms, oti_ctl *ack, char *err);

/*
 * Loads a full copy from a server over a REQ socket, chunk by chunk
 * (FULL_REQ for chunk 0, 1, ... until the chunk flagged LAST), applying each
 * FULL frame to `model` with `dec`.
 *
 * `version` is the version wanted (0: the newest).  Every chunk must carry
 * the first chunk's new_version; when one does not, or the server answers
 * OT_ENOENT (that version is no longer kept), the fetch starts over at
 * chunk 0 asking for the newest (at most 8 times; then OT_EBUSY).  Each
 * request waits up to timeout_ms.
 *
 * On OT_OK the model holds the full copy, its touched rows are cleared,
 * *got_version (may be NULL) is the copy's master version, *bytes (may be
 * NULL) has the bytes received added, and, when snap is not NULL, *snap
 * receives a new snapshot of the model at that version made with cfg
 * (delta_source and allocator; any previous *snap is released).  On error
 * the model may hold part of a copy: load into a scratch model.  Statuses:
 * the transport's (OT_ETIMEDOUT, OT_ECLOSED, ...), the decoder's
 * (OT_EMISMATCH for a server with another model, OT_ECORRUPT, ...),
 * OT_EFORMAT (a reply that is not one FULL frame), OT_EBUSY, OT_ENOMEM.
 * err (OTI_ERRMSG_LEN bytes, may be NULL) receives the detail.
 */
ot_status oti_fetch_full_copy(oti_sock *sock, ot_delta_decoder *dec, ot_model *model,
                              const ot_config *cfg, ot_snapshot **snap, uint64_t version,
                              int32_t timeout_ms, uint64_t *got_version, uint64_t *bytes,
                              char *err);

/* ---- sharding --------------------------------------------------------------- */

struct oti_params;

/*
 * The key range [*lo, *hi) of shard `shard` of `num_shards` over the flat
 * index space of p (docs/deployment.md, "Key ranges"): a pure function of
 * the model's shape and the shard count, so every role computes it alike.
 * Shard s starts at the first row boundary at or after floor(total * s / N)
 * (a row boundary is the flat index of column 0 of some row of some block,
 * or total), so no row straddles two shards; shard N-1 ends at total.
 * OT_EINVAL for NULL arguments or shard >= num_shards; OT_ERANGE when the
 * range is empty (more shards than the model has rows to split).
 */
ot_status oti_shard_range(const struct oti_params *p, uint32_t shard, uint32_t num_shards,
                          uint64_t *lo, uint64_t *hi);

/* The rows [*r0, *r1) of block b of p whose first index lies in [lo, hi). */
void oti_shard_rows(const struct oti_params *p, size_t b, uint64_t lo, uint64_t hi, uint64_t *r0,
                    uint64_t *r1);

/* ---- parameter server hooks for tests (param_server.c) --------------------- */

/* Called with the master model under the server's lock. */
typedef void (*oti_master_fn)(void *arg, ot_model *master);

/*
 * Runs fn(arg, master) under the server's lock, then treats the master as
 * changed out of band: every row is marked touched (the next real-time
 * update sends what differs from the published copy), the master version
 * grows by one, the cached full copy is dropped, and the change log is
 * emptied (trainers behind the new version resync).  OT_EINVAL.
 */
ot_status oti_param_server_with_master(ot_param_server *ps, oti_master_fn fn, void *arg);

/*
 * Sets the transport test hook (oti_sock_set_test_hook) on the server's REP
 * socket: drop every drop_every-th request, delay the others.  After
 * ot_param_server_listen().  OT_ESTATE before.
 */
ot_status oti_param_server_set_test_hook(ot_param_server *ps, uint32_t drop_every,
                                         uint32_t delay_ms);

/*
 * Publishes a full update the way the full_interval_ms schedule does (the
 * copy made first, its chunks then sent one at a time, real-time updates
 * free to go out between them), calling between(arg) after the copy is made
 * and before its first chunk is sent.  Errors of ot_param_server_publish().
 */
ot_status oti_param_server_test_full_update(ot_param_server *ps, void (*between)(void *),
                                           void *arg);

#endif /* OT_PROTOCOL_H */
