/*
 * transport.c - sockets by URL over nng.  The only file that includes nng.
 *
 * Four socket kinds (REP, REQ, PUB, SUB) behind one opaque oti_sock; an
 * optional HMAC-SHA256 trailer authenticates every message on transports
 * without TLS.  docs/transport.md describes behaviour, limits and the trailer.
 *
 * Concurrency: every aio callback runs on an nng thread.  A REP socket runs
 * `contexts` independent state machines (recv -> handler -> send -> recv),
 * each owning one nng_ctx and one nng_aio; a SUB socket in callback mode
 * runs one (recv -> callback -> recv); each oti_request runs one
 * (send -> recv [-> resend -> recv] -> done).  Stopping a machine is
 * nng_aio_stop() on its aio, which cancels the pending operation, makes
 * further operations fail with NNG_ECANCELED and waits for the callback.
 * The socket's memory is reference counted so requests may outlive it.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mbedtls/md.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "internal.h"
#include "transport.h"

const char *oti_transport_version(void)
{
    return nng_version();
}

/* ---- small helpers ------------------------------------------------------ */

enum { KIND_REQUEST = 1, KIND_REPLY = 2, KIND_PUBLISH = 3 };
#define TRAILER_VERSION 1
#define TRAILER_HEAD 16 /* version, kind, reserved, sender, sequence */
#define BIND_LEN 12     /* a reply's MAC also covers the request's sender and sequence */
#define WINDOW_WORDS (OTI_REPLAY_WINDOW / 64)
#define MAX_CONTEXTS 1024
#define MAX_QUEUE 8192

/* Counter slots (the order of oti_tp_stats). */
enum {
    ST_SENT, ST_RECEIVED, ST_BYTES_SENT, ST_BYTES_RECEIVED, ST_SEND_ERRORS, ST_DROP_SHORT,
    ST_DROP_AUTH, ST_DROP_REPLAY, ST_DROP_OVERSIZE, ST_DROP_HOOK, ST_HANDLER_ERRORS,
    ST_RESENDS, ST_SENDERS_EVICTED, ST_REFUSED_CONNS, ST_COUNT
};

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* Writes a detail message when the caller gave a buffer; returns st. */
static ot_status tp_err(char *err, ot_status st, const char *fmt, ...) OTI_PRINTF(3, 4);
static ot_status tp_err(char *err, ot_status st, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL) {
        va_start(ap, fmt);
        vsnprintf(err, OTI_ERRMSG_LEN, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* nng error -> ot_status (the table in docs/transport.md). */
static ot_status map_nng(int rv)
{
    switch (rv) {
    case 0:
        return OT_OK;
    case NNG_ETIMEDOUT:
        return OT_ETIMEDOUT;
    case NNG_ECLOSED:
    case NNG_ECANCELED:
        return OT_ECLOSED;
    case NNG_ECONNREFUSED:
        return OT_ECONNREFUSED;
    case NNG_EADDRINUSE:
        return OT_EADDRINUSE;
    case NNG_ENOMEM:
        return OT_ENOMEM;
    case NNG_EINVAL:
    case NNG_EADDRINVAL:
        return OT_EINVAL;
    case NNG_ENOTSUP:
        return OT_ENOTSUP;
    case NNG_EMSGSIZE:
        return OT_ETOOBIG;
    case NNG_ECRYPTO:
    case NNG_EPEERAUTH:
        return OT_EAUTH;
    case NNG_ENOENT:
        return OT_ENOENT;
    default:
        return OT_ETRANSPORT;
    }
}

static ot_status nng_fail(char *err, int rv, const char *what, const char *url)
{
    if (url != NULL)
        return tp_err(err, map_nng(rv), "%s %s: %s", what, url, nng_strerror(rv));
    return tp_err(err, map_nng(rv), "%s: %s", what, nng_strerror(rv));
}

/* Wall-clock nanoseconds: the first sequence number of a sender, so that a
 * restarted sender continues above what receivers remember of it. */
static uint64_t realtime_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 1;
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static int url_scheme_ok(const char *url, int *is_tls)
{
    static const char *const plain[] = {"inproc://", "ipc://", "tcp://", "tcp4://", "tcp6://"};
    static const char *const tls[] = {"tls+tcp://", "tls+tcp4://", "tls+tcp6://"};
    size_t i;

    for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        if (strncmp(url, plain[i], strlen(plain[i])) == 0) {
            *is_tls = 0;
            return 1;
        }
    for (i = 0; i < sizeof(tls) / sizeof(tls[0]); i++)
        if (strncmp(url, tls[i], strlen(tls[i])) == 0) {
            *is_tls = 1;
            return 1;
        }
    return 0;
}

/* ---- HMAC-SHA256 --------------------------------------------------------- */

ot_status oti_hmac_sha256(const uint8_t *key, size_t keylen, const void *const p[3],
                          const size_t n[3], uint8_t mac[32])
{
    const mbedtls_md_info_t *info = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    mbedtls_md_context_t c;
    int rc, i;

    if (info == NULL)
        return OT_ENOTSUP;
    mbedtls_md_init(&c);
    rc = mbedtls_md_setup(&c, info, 1);
    if (rc == 0)
        rc = mbedtls_md_hmac_starts(&c, key, keylen);
    for (i = 0; i < 3 && rc == 0; i++)
        if (p[i] != NULL && n[i] > 0)
            rc = mbedtls_md_hmac_update(&c, p[i], n[i]);
    if (rc == 0)
        rc = mbedtls_md_hmac_finish(&c, mac);
    mbedtls_md_free(&c);
    if (rc == MBEDTLS_ERR_MD_ALLOC_FAILED)
        return OT_ENOMEM;
    return rc == 0 ? OT_OK : OT_EINVAL;
}

/* Constant-time comparison of two MACs. */
static int mac_equal(const uint8_t *a, const uint8_t *b)
{
    unsigned d = 0;
    int i;

    for (i = 0; i < 32; i++)
        d |= (unsigned)(a[i] ^ b[i]);
    return d == 0;
}

/* ---- the socket ------------------------------------------------------------ */

typedef struct replay_ent {
    uint32_t sender;
    uint64_t highest;
    uint64_t heard; /* table tick of the last accepted message, for eviction */
    uint64_t bits[WINDOW_WORDS]; /* bit (seq % window) set: seq seen */
} replay_ent;

struct oti_reply {
    nng_msg *msg; /* OTI_REPLY_HEADER status bytes, then the payload */
    nng_msg *req; /* the request being answered */
    int kept;     /* oti_reply_keep_request: the handler owns req */
    char errbuf[OTI_ERRMSG_LEN];
};

typedef struct srv_ctx {
    oti_sock *s;
    nng_ctx ctx;
    nng_aio *aio;
    int sending;
    uint32_t bind_sender; /* trailer fields of the request being answered */
    uint64_t bind_seq;
    oti_reply reply;
} srv_ctx;

struct oti_sock {
    oti_alloc alloc;
    int kind;
    nng_socket sock;
    atomic_int refs;
    atomic_int stopping; /* set first thing in stop: callbacks stop re-arming */
    int stopped;         /* under stop_mtx: stop has completed */
    nng_mtx *stop_mtx;
    int started;         /* server or callback subscriber running */

    size_t recv_max;
    int32_t send_timeout, recv_timeout, reconnect_min, reconnect_max, resend;
    int contexts;
    int tls_auth;
    char *tls_cert_key_file, *tls_ca_file, *tls_server_name;

    /* authentication */
    int auth;
    uint8_t key[OTI_HMAC_KEY_MAX];
    size_t keylen;
    uint32_t sender_id;
    _Atomic uint64_t seq;
    nng_mtx *replay_mtx;
    replay_ent *replay;
    uint32_t nreplay, replay_cap;
    uint64_t replay_tick;

    /* REP */
    oti_handler_fn handler;
    void *handler_arg;
    srv_ctx *ctxs;
    int nctx;

    /* SUB */
    oti_recv_fn recv_fn;
    void *recv_arg;
    nng_aio *sub_aio;

    /* test hook */
    _Atomic uint32_t hook_drop, hook_delay;
    _Atomic uint64_t hook_count;

    atomic_int peers;
    _Atomic uint64_t st[ST_COUNT];

    /* connection limit (max_conns > 0): the ids of the pipes admitted */
    int max_conns;
    nng_mtx *conn_mtx;
    uint32_t *conn_ids; /* max_conns slots, nconn used */
    int nconn;
};

static void count(oti_sock *s, int slot, uint64_t n)
{
    atomic_fetch_add_explicit(&s->st[slot], n, memory_order_relaxed);
}

void oti_tp_opts_init(oti_tp_opts *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof(*o));
    o->recv_max = (size_t)16 << 20;
    o->send_timeout_ms = 5000;
    o->recv_timeout_ms = 10000;
    o->reconnect_min_ms = 100;
    o->reconnect_max_ms = 5000;
    o->resend_ms = 5000;
    o->contexts = 4;
    o->recv_buffer = 1024;
    o->send_buffer = 1024;
    o->tls_auth_mode = OTI_TLS_AUTH_DEFAULT;
    o->replay_senders = 256;
}

static void free_str(const oti_alloc *a, char *p)
{
    if (p != NULL)
        oti_free(a, p, strlen(p) + 1);
}

/* Frees a message left in a stopped aio: nng versions differ in whether an
 * operation started on a stopped aio calls back (1.5.2 does not), so a
 * reply set for sending may still be there. */
static void aio_free_stopped(nng_aio *aio)
{
    nng_msg *m;

    if (aio == NULL)
        return;
    if ((m = nng_aio_get_msg(aio)) != NULL) {
        nng_aio_set_msg(aio, NULL);
        nng_msg_free(m);
    }
    nng_aio_free(aio);
}

static void sock_free(oti_sock *s)
{
    oti_alloc a = s->alloc;
    volatile uint8_t *k = s->key;
    size_t i;
    int c;

    for (c = 0; c < s->nctx; c++) {
        aio_free_stopped(s->ctxs[c].aio);
        if (s->ctxs[c].reply.msg != NULL)
            nng_msg_free(s->ctxs[c].reply.msg);
    }
    if (s->ctxs != NULL)
        oti_free(&a, s->ctxs, (size_t)s->contexts * sizeof(*s->ctxs));
    aio_free_stopped(s->sub_aio);
    if (s->replay != NULL)
        oti_free(&a, s->replay, (size_t)s->replay_cap * sizeof(*s->replay));
    if (s->replay_mtx != NULL)
        nng_mtx_free(s->replay_mtx);
    if (s->stop_mtx != NULL)
        nng_mtx_free(s->stop_mtx);
    if (s->conn_mtx != NULL)
        nng_mtx_free(s->conn_mtx);
    if (s->conn_ids != NULL)
        oti_free(&a, s->conn_ids, (size_t)s->max_conns * sizeof(*s->conn_ids));
    free_str(&a, s->tls_cert_key_file);
    free_str(&a, s->tls_ca_file);
    free_str(&a, s->tls_server_name);
    for (i = 0; i < sizeof(s->key); i++)
        k[i] = 0;
    oti_free(&a, s, sizeof(*s));
}

static void sock_release(oti_sock *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1)
        sock_free(s);
}

/* Connection limit: admits pipe id when fewer than max_conns are held
 * (1), else 0. */
static int conn_admit(oti_sock *s, uint32_t id)
{
    int ok;

    nng_mtx_lock(s->conn_mtx);
    ok = s->nconn < s->max_conns;
    if (ok)
        s->conn_ids[s->nconn++] = id;
    nng_mtx_unlock(s->conn_mtx);
    return ok;
}

/* Forgets pipe id; 1 when it was admitted, 0 when it was refused (nng
 * reports the removal of a pipe closed in NNG_PIPE_EV_ADD_PRE too). */
static int conn_release(oti_sock *s, uint32_t id)
{
    int i, found = 0;

    nng_mtx_lock(s->conn_mtx);
    for (i = 0; i < s->nconn; i++) {
        if (s->conn_ids[i] == id) {
            s->conn_ids[i] = s->conn_ids[--s->nconn];
            found = 1;
            break;
        }
    }
    nng_mtx_unlock(s->conn_mtx);
    return found;
}

static void pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    oti_sock *s = arg;
    uint32_t id = (uint32_t)nng_pipe_id(p);

    if (ev == NNG_PIPE_EV_ADD_PRE) {
        /* Registered only with a connection limit.  Closing the pipe here
         * is what nng provides for refusing it: the socket never uses it. */
        if (!conn_admit(s, id)) {
            count(s, ST_REFUSED_CONNS, 1);
            nng_pipe_close(p);
        }
    } else if (ev == NNG_PIPE_EV_ADD_POST) {
        atomic_fetch_add(&s->peers, 1);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        if (s->max_conns == 0 || conn_release(s, id))
            atomic_fetch_sub(&s->peers, 1);
    }
}

static ot_status check_opts(int kind, const oti_tp_opts *o, char *err)
{
    if (kind < OTI_SOCK_REP || kind > OTI_SOCK_SUB)
        return tp_err(err, OT_EINVAL, "unknown socket kind %d", kind);
    if (o->send_timeout_ms < OTI_TP_INFINITE || o->recv_timeout_ms < OTI_TP_INFINITE)
        return tp_err(err, OT_EINVAL, "timeouts must be >= 0 or OTI_TP_INFINITE");
    if (o->reconnect_min_ms < 0 || o->reconnect_max_ms < 0 || o->resend_ms < 0)
        return tp_err(err, OT_EINVAL, "reconnect and resend times must be >= 0");
    if (o->contexts < 1 || o->contexts > MAX_CONTEXTS)
        return tp_err(err, OT_EINVAL, "contexts must be 1..%d", MAX_CONTEXTS);
    if (o->recv_buffer < 0 || o->recv_buffer > MAX_QUEUE || o->send_buffer < 0 ||
        o->send_buffer > MAX_QUEUE)
        return tp_err(err, OT_EINVAL, "queue depths must be 0..%d", MAX_QUEUE);
    if (o->tls_auth_mode < OTI_TLS_AUTH_DEFAULT || o->tls_auth_mode > OTI_TLS_AUTH_REQUIRED)
        return tp_err(err, OT_EINVAL, "unknown TLS auth mode %d", o->tls_auth_mode);
    if (o->hmac_key != NULL && (o->hmac_key_len < 1 || o->hmac_key_len > OTI_HMAC_KEY_MAX))
        return tp_err(err, OT_EINVAL, "HMAC key must be 1..%d bytes", OTI_HMAC_KEY_MAX);
    if (o->replay_senders < 1 || o->replay_senders > 65536)
        return tp_err(err, OT_EINVAL, "replay_senders must be 1..65536");
    if (o->max_conns < 0 || o->max_conns > OTI_TP_MAX_CONNS)
        return tp_err(err, OT_EINVAL, "max_conns must be 0..%d", OTI_TP_MAX_CONNS);
    return OT_OK;
}

static int copy_str(const oti_alloc *a, const char *src, char **dst)
{
    if (src == NULL)
        return 0;
    *dst = oti_strdup(a, src);
    return *dst == NULL ? -1 : 0;
}

static nng_duration dur(int32_t ms)
{
    return ms < 0 ? NNG_DURATION_INFINITE : (nng_duration)ms;
}

ot_status oti_sock_create(int kind, const oti_tp_opts *o, oti_sock **out, char *err)
{
    oti_tp_opts def;
    oti_sock *s;
    ot_status st;
    int rv = 0;

    if (out == NULL)
        return tp_err(err, OT_EINVAL, "NULL out-pointer");
    if (o == NULL) {
        oti_tp_opts_init(&def);
        o = &def;
    }
    if ((st = check_opts(kind, o, err)) != OT_OK)
        return st;
    s = oti_calloc(&o->alloc, 1, sizeof(*s));
    if (s == NULL)
        return tp_err(err, OT_ENOMEM, "out of memory");
    s->alloc = o->alloc;
    s->kind = kind;
    atomic_init(&s->refs, 1);
    s->recv_max = o->recv_max;
    s->send_timeout = o->send_timeout_ms;
    s->recv_timeout = o->recv_timeout_ms;
    s->reconnect_min = o->reconnect_min_ms;
    /* A cap below the first delay would shorten it: raise the cap instead. */
    s->reconnect_max = o->reconnect_max_ms != 0 && o->reconnect_max_ms < o->reconnect_min_ms
                           ? o->reconnect_min_ms
                           : o->reconnect_max_ms;
    s->resend = o->resend_ms;
    s->contexts = o->contexts;
    s->tls_auth = o->tls_auth_mode;
    if (copy_str(&s->alloc, o->tls_cert_key_file, &s->tls_cert_key_file) != 0 ||
        copy_str(&s->alloc, o->tls_ca_file, &s->tls_ca_file) != 0 ||
        copy_str(&s->alloc, o->tls_server_name, &s->tls_server_name) != 0) {
        sock_free(s);
        return tp_err(err, OT_ENOMEM, "out of memory");
    }
    if ((rv = nng_mtx_alloc(&s->stop_mtx)) != 0) {
        sock_free(s);
        return nng_fail(err, rv, "mutex", NULL);
    }
    if (o->max_conns > 0) {
        s->conn_ids = oti_calloc(&s->alloc, (size_t)o->max_conns, sizeof(*s->conn_ids));
        if (s->conn_ids == NULL) {
            sock_free(s);
            return tp_err(err, OT_ENOMEM, "out of memory");
        }
        s->max_conns = o->max_conns;
        if ((rv = nng_mtx_alloc(&s->conn_mtx)) != 0) {
            sock_free(s);
            return nng_fail(err, rv, "mutex", NULL);
        }
    }
    if (o->hmac_key != NULL) {
        s->auth = 1;
        memcpy(s->key, o->hmac_key, o->hmac_key_len);
        s->keylen = o->hmac_key_len;
        s->sender_id = o->sender_id;
        while (s->sender_id == 0)
            s->sender_id = nng_random();
        atomic_init(&s->seq, realtime_ns());
        s->replay_cap = o->replay_senders;
        s->replay = oti_calloc(&s->alloc, s->replay_cap, sizeof(*s->replay));
        if (s->replay == NULL) {
            sock_free(s);
            return tp_err(err, OT_ENOMEM, "out of memory");
        }
        if ((rv = nng_mtx_alloc(&s->replay_mtx)) != 0) {
            sock_free(s);
            return nng_fail(err, rv, "mutex", NULL);
        }
    }

    switch (kind) {
    case OTI_SOCK_REP:
        rv = nng_rep0_open(&s->sock);
        break;
    case OTI_SOCK_REQ:
        rv = nng_req0_open(&s->sock);
        break;
    case OTI_SOCK_PUB:
        rv = nng_pub0_open(&s->sock);
        break;
    default:
        rv = nng_sub0_open(&s->sock);
        break;
    }
    if (rv != 0) {
        sock_free(s);
        return nng_fail(err, rv, "open socket", NULL);
    }
    /* From here on errors close the nng socket too. */
    if (rv == 0)
        rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, s->recv_max);
    if (rv == 0)
        rv = nng_socket_set_ms(s->sock, NNG_OPT_SENDTIMEO, dur(s->send_timeout));
    if (rv == 0)
        rv = nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, dur(s->recv_timeout));
    if (rv == 0)
        rv = nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, (nng_duration)s->reconnect_min);
    if (rv == 0)
        rv = nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, (nng_duration)s->reconnect_max);
    if (rv == 0 && kind == OTI_SOCK_REQ)
        /* Authenticated requests are resent by this file with a fresh
         * sequence number (an identical resend would be a replay). */
        rv = nng_socket_set_ms(s->sock, NNG_OPT_REQ_RESENDTIME,
                               s->auth || s->resend == 0 ? NNG_DURATION_INFINITE
                                                         : (nng_duration)s->resend);
    if (rv == 0 && kind == OTI_SOCK_SUB)
        rv = nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    if (rv == 0 && kind == OTI_SOCK_SUB && o->recv_buffer > 0)
        rv = nng_socket_set_int(s->sock, NNG_OPT_RECVBUF, o->recv_buffer);
    if (rv == 0 && kind == OTI_SOCK_PUB && o->send_buffer > 0)
        rv = nng_socket_set_int(s->sock, NNG_OPT_SENDBUF, o->send_buffer);
    if (rv == 0)
        rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, pipe_cb, s);
    if (rv == 0)
        rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, pipe_cb, s);
    if (rv == 0 && s->max_conns > 0)
        rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_PRE, pipe_cb, s);
    if (rv != 0) {
        nng_close(s->sock);
        sock_free(s);
        return nng_fail(err, rv, "socket options", NULL);
    }
    *out = s;
    return OT_OK;
}

/* A TLS configuration from the socket's settings.  The caller frees its
 * reference after handing it to a listener or dialer (they hold their own). */
static ot_status make_tls(oti_sock *s, int server, const char *url, nng_tls_config **out,
                          char *err)
{
    nng_tls_config *cfg;
    nng_url *u = NULL;
    int rv;

    if (server && s->tls_cert_key_file == NULL)
        return tp_err(err, OT_EINVAL, "a tls+tcp listener needs tls_cert_key_file");
    rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT);
    if (rv != 0)
        return nng_fail(err, rv, "TLS configuration", NULL);
    if (s->tls_auth != OTI_TLS_AUTH_DEFAULT)
        rv = nng_tls_config_auth_mode(cfg, (nng_tls_auth_mode)s->tls_auth);
    if (rv != 0) {
        nng_tls_config_free(cfg);
        return nng_fail(err, rv, "TLS auth mode", NULL);
    }
    if (s->tls_ca_file != NULL && (rv = nng_tls_config_ca_file(cfg, s->tls_ca_file)) != 0) {
        nng_tls_config_free(cfg);
        return nng_fail(err, rv, "TLS CA file", s->tls_ca_file);
    }
    if (s->tls_cert_key_file != NULL &&
        (rv = nng_tls_config_cert_key_file(cfg, s->tls_cert_key_file, NULL)) != 0) {
        nng_tls_config_free(cfg);
        return nng_fail(err, rv, "TLS certificate file", s->tls_cert_key_file);
    }
    if (!server) {
        /* The name the server's certificate must carry: the option, else
         * the URL's host (as nng's own dialer configuration does). */
        const char *name = s->tls_server_name;
        if (name == NULL && (rv = nng_url_parse(&u, url)) == 0)
            name = u->u_hostname;
        if (rv == 0 && name != NULL)
            rv = nng_tls_config_server_name(cfg, name);
        if (u != NULL)
            nng_url_free(u);
        if (rv != 0) {
            nng_tls_config_free(cfg);
            return nng_fail(err, rv, "TLS server name", url);
        }
    }
    *out = cfg;
    return OT_OK;
}

static ot_status check_endpoint(oti_sock *s, const char *url, int *is_tls, char *err)
{
    if (s == NULL || url == NULL)
        return tp_err(err, OT_EINVAL, "NULL socket or URL");
    if (atomic_load(&s->stopping))
        return tp_err(err, OT_ECLOSED, "socket is closed");
    if (!url_scheme_ok(url, is_tls))
        return tp_err(err, OT_ENOTSUP,
                      "%s: unsupported URL (inproc://, ipc://, tcp://, tls+tcp://)", url);
    return OT_OK;
}

ot_status oti_sock_listen(oti_sock *s, const char *url, int *port, char *err)
{
    nng_listener l;
    nng_tls_config *cfg = NULL;
    nng_sockaddr sa;
    ot_status st;
    int rv, is_tls;

    if ((st = check_endpoint(s, url, &is_tls, err)) != OT_OK)
        return st;
    if (port != NULL)
        *port = 0;
    if ((rv = nng_listener_create(&l, s->sock, url)) != 0)
        return nng_fail(err, rv, "listen", url);
    rv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, s->recv_max);
    if (rv == 0 && is_tls) {
        if ((st = make_tls(s, 1, url, &cfg, err)) != OT_OK) {
            nng_listener_close(l);
            return st;
        }
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg);
        nng_tls_config_free(cfg);
    }
    if (rv == 0)
        rv = nng_listener_start(l, 0);
    if (rv != 0) {
        nng_listener_close(l);
        return nng_fail(err, rv, "listen", url);
    }
    if (port != NULL && nng_listener_get_addr(l, NNG_OPT_LOCADDR, &sa) == 0) {
        const uint8_t *pb = NULL;
        if (sa.s_family == NNG_AF_INET)
            pb = (const uint8_t *)&sa.s_in.sa_port;
        else if (sa.s_family == NNG_AF_INET6)
            pb = (const uint8_t *)&sa.s_in6.sa_port;
        if (pb != NULL) /* network byte order */
            *port = (int)pb[0] << 8 | (int)pb[1];
    }
    return OT_OK;
}

ot_status oti_sock_dial(oti_sock *s, const char *url, int flags, char *err)
{
    nng_dialer d;
    nng_tls_config *cfg = NULL;
    ot_status st;
    int rv, is_tls;

    if ((st = check_endpoint(s, url, &is_tls, err)) != OT_OK)
        return st;
    if ((flags & ~OTI_DIAL_WAIT) != 0)
        return tp_err(err, OT_EINVAL, "unknown dial flags 0x%x", (unsigned)flags);
    if ((rv = nng_dialer_create(&d, s->sock, url)) != 0)
        return nng_fail(err, rv, "dial", url);
    rv = nng_dialer_set_size(d, NNG_OPT_RECVMAXSZ, s->recv_max);
    if (rv == 0)
        rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, (nng_duration)s->reconnect_min);
    if (rv == 0)
        rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, (nng_duration)s->reconnect_max);
    if (rv == 0 && is_tls) {
        if ((st = make_tls(s, 0, url, &cfg, err)) != OT_OK) {
            nng_dialer_close(d);
            return st;
        }
        rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
        nng_tls_config_free(cfg);
    }
    if (rv == 0)
        rv = nng_dialer_start(d, (flags & OTI_DIAL_WAIT) ? 0 : NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        nng_dialer_close(d);
        return nng_fail(err, rv, "dial", url);
    }
    return OT_OK;
}

void oti_sock_stop(oti_sock *s)
{
    int c;

    if (s == NULL)
        return;
    nng_mtx_lock(s->stop_mtx);
    if (!s->stopped) {
        atomic_store(&s->stopping, 1);
        for (c = 0; c < s->nctx; c++)
            nng_aio_stop(s->ctxs[c].aio);
        if (s->sub_aio != NULL)
            nng_aio_stop(s->sub_aio);
        nng_close(s->sock);
        s->stopped = 1;
    }
    nng_mtx_unlock(s->stop_mtx);
}

void oti_sock_destroy(oti_sock *s)
{
    if (s == NULL)
        return;
    oti_sock_stop(s);
    sock_release(s);
}

int oti_sock_peers(const oti_sock *s)
{
    int n = s != NULL ? atomic_load(&((oti_sock *)s)->peers) : 0;

    return n > 0 ? n : 0; /* a removal may be seen before its addition */
}

void oti_sock_stats(const oti_sock *s, oti_tp_stats *out)
{
    oti_sock *m = (oti_sock *)s;
    uint64_t v[ST_COUNT];
    int i;

    if (out == NULL)
        return;
    for (i = 0; i < ST_COUNT; i++)
        v[i] = s != NULL ? atomic_load_explicit(&m->st[i], memory_order_relaxed) : 0;
    out->sent = v[ST_SENT];
    out->received = v[ST_RECEIVED];
    out->bytes_sent = v[ST_BYTES_SENT];
    out->bytes_received = v[ST_BYTES_RECEIVED];
    out->send_errors = v[ST_SEND_ERRORS];
    out->drop_short = v[ST_DROP_SHORT];
    out->drop_auth = v[ST_DROP_AUTH];
    out->drop_replay = v[ST_DROP_REPLAY];
    out->drop_oversize = v[ST_DROP_OVERSIZE];
    out->drop_hook = v[ST_DROP_HOOK];
    out->handler_errors = v[ST_HANDLER_ERRORS];
    out->resends = v[ST_RESENDS];
    out->senders_evicted = v[ST_SENDERS_EVICTED];
    out->refused_conns = v[ST_REFUSED_CONNS];
}

void oti_sock_set_test_hook(oti_sock *s, uint32_t drop_every, uint32_t delay_ms)
{
    if (s == NULL)
        return;
    atomic_store(&s->hook_count, 0);
    atomic_store(&s->hook_drop, drop_every);
    atomic_store(&s->hook_delay, delay_ms);
}

/* ---- authentication trailer ----------------------------------------------- */

/* Appends the trailer to m.  For a reply, (bsender, bseq) are the request's. */
static int auth_wrap(oti_sock *s, nng_msg *m, int kind, uint32_t bsender, uint64_t bseq,
                     uint64_t *seq_out)
{
    uint8_t t[OTI_HMAC_TRAILER], bind[BIND_LEN];
    uint64_t seq = atomic_fetch_add(&s->seq, 1) + 1;
    const void *p[3];
    size_t n[3];

    t[0] = TRAILER_VERSION;
    t[1] = (uint8_t)kind;
    t[2] = 0;
    t[3] = 0;
    put32(t + 4, s->sender_id);
    put64(t + 8, seq);
    put32(bind, bsender);
    put64(bind + 4, bseq);
    p[0] = nng_msg_body(m);
    n[0] = nng_msg_len(m);
    p[1] = t;
    n[1] = TRAILER_HEAD;
    p[2] = bind;
    n[2] = kind == KIND_REPLY ? BIND_LEN : 0;
    if (oti_hmac_sha256(s->key, s->keylen, p, n, t + TRAILER_HEAD) != OT_OK)
        return NNG_ENOMEM;
    if (seq_out != NULL)
        *seq_out = seq;
    return nng_msg_append(m, t, sizeof(t));
}

/* Records (sender, seq) in the replay table; 0 if new, -1 if seen or too old. */
static int replay_check(oti_sock *s, uint32_t sender, uint64_t seq)
{
    replay_ent *e = NULL;
    uint32_t i;
    int ok = 1;

    nng_mtx_lock(s->replay_mtx);
    for (i = 0; i < s->nreplay; i++)
        if (s->replay[i].sender == sender) {
            e = &s->replay[i];
            break;
        }
    if (e == NULL) {
        if (s->nreplay < s->replay_cap) {
            e = &s->replay[s->nreplay++];
        } else {
            e = &s->replay[0];
            for (i = 1; i < s->nreplay; i++)
                if (s->replay[i].heard < e->heard)
                    e = &s->replay[i];
            count(s, ST_SENDERS_EVICTED, 1);
        }
        memset(e, 0, sizeof(*e));
        e->sender = sender;
        e->highest = seq;
    } else if (seq > e->highest) {
        uint64_t d = seq - e->highest, k;
        if (d >= OTI_REPLAY_WINDOW)
            memset(e->bits, 0, sizeof(e->bits));
        else
            for (k = e->highest + 1; k <= seq; k++)
                e->bits[(k % OTI_REPLAY_WINDOW) / 64] &= ~(UINT64_C(1) << (k % 64));
        e->highest = seq;
    } else if (e->highest - seq >= OTI_REPLAY_WINDOW ||
               (e->bits[(seq % OTI_REPLAY_WINDOW) / 64] & (UINT64_C(1) << (seq % 64)))) {
        ok = 0;
    }
    if (ok) {
        e->bits[(seq % OTI_REPLAY_WINDOW) / 64] |= UINT64_C(1) << (seq % 64);
        e->heard = ++s->replay_tick;
    }
    nng_mtx_unlock(s->replay_mtx);
    return ok ? 0 : -1;
}

/*
 * Checks and strips the trailer.  Returns -1 when accepted (sender and seq
 * filled), else the counter slot of the reason.  Replies are checked
 * against (bsender, bseq), their request's fields, instead of the replay
 * table: a reply is accepted only for the request it answers.
 */
static int auth_unwrap(oti_sock *s, nng_msg *m, int kind, uint32_t bsender, uint64_t bseq,
                       uint32_t *sender, uint64_t *seq)
{
    uint8_t mac[32], bind[BIND_LEN];
    const uint8_t *body = nng_msg_body(m), *t;
    size_t len = nng_msg_len(m);
    const void *p[3];
    size_t n[3];

    if (len < OTI_HMAC_TRAILER)
        return ST_DROP_SHORT;
    t = body + len - OTI_HMAC_TRAILER;
    put32(bind, bsender);
    put64(bind + 4, bseq);
    p[0] = body;
    n[0] = len - OTI_HMAC_TRAILER;
    p[1] = t;
    n[1] = TRAILER_HEAD;
    p[2] = bind;
    n[2] = kind == KIND_REPLY ? BIND_LEN : 0;
    if (oti_hmac_sha256(s->key, s->keylen, p, n, mac) != OT_OK ||
        !mac_equal(mac, t + TRAILER_HEAD))
        return ST_DROP_AUTH;
    if (t[0] != TRAILER_VERSION || t[1] != kind || t[2] != 0 || t[3] != 0)
        return ST_DROP_AUTH;
    *sender = get32(t + 4);
    *seq = get64(t + 8);
    if (kind != KIND_REPLY && replay_check(s, *sender, *seq) != 0)
        return ST_DROP_REPLAY;
    nng_msg_chop(m, OTI_HMAC_TRAILER);
    return -1;
}

/* The receive checks of REP and SUB sockets: size, trailer, test hook.
 * Returns 0 to deliver (trailer stripped), -1 to drop (counted). */
static int rx_accept(oti_sock *s, nng_msg *m, int kind, uint32_t *sender, uint64_t *seq)
{
    uint32_t drop, delay;
    int why;

    *sender = 0;
    *seq = 0;
    /* The hook acts first: it stands for loss and delay on the wire, so a
     * message it drops leaves no trace (not even in the replay table). */
    drop = atomic_load(&s->hook_drop);
    if (drop > 0 && (atomic_fetch_add(&s->hook_count, 1) + 1) % drop == 0) {
        count(s, ST_DROP_HOOK, 1);
        return -1;
    }
    delay = atomic_load(&s->hook_delay);
    if (delay > 0)
        nng_msleep((nng_duration)delay);
    if (s->recv_max > 0 && nng_msg_len(m) > s->recv_max) {
        count(s, ST_DROP_OVERSIZE, 1);
        return -1;
    }
    if (s->auth && (why = auth_unwrap(s, m, kind, 0, 0, sender, seq)) >= 0) {
        count(s, why, 1);
        return -1;
    }
    count(s, ST_RECEIVED, 1);
    count(s, ST_BYTES_RECEIVED, nng_msg_len(m));
    return 0;
}

/* ---- REP: server contexts -------------------------------------------------- */

static void srv_recv(srv_ctx *c)
{
    nng_aio_set_timeout(c->aio, NNG_DURATION_INFINITE);
    nng_ctx_recv(c->ctx, c->aio);
}

static void srv_cb(void *arg)
{
    srv_ctx *c = arg;
    oti_sock *s = c->s;
    int rv = nng_aio_result(c->aio);
    nng_msg *m, *rm;
    size_t len;
    ot_status st;

    if (c->sending) {
        c->sending = 0;
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(c->aio));
            nng_aio_set_msg(c->aio, NULL);
            count(s, ST_SEND_ERRORS, 1);
        } else {
            count(s, ST_SENT, 1);
        }
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || atomic_load(&s->stopping))
            return;
        srv_recv(c);
        return;
    }
    if (rv != 0) {
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || atomic_load(&s->stopping))
            return;
        srv_recv(c);
        return;
    }
    m = nng_aio_get_msg(c->aio);
    nng_aio_set_msg(c->aio, NULL);
    if (rx_accept(s, m, KIND_REQUEST, &c->bind_sender, &c->bind_seq) != 0 ||
        nng_msg_alloc(&rm, OTI_REPLY_HEADER) != 0) {
        nng_msg_free(m);
        srv_recv(c);
        return;
    }
    c->reply.msg = rm;
    c->reply.req = m;
    c->reply.kept = 0;
    c->reply.errbuf[0] = '\0';
    st = s->handler(s->handler_arg, nng_msg_body(m), nng_msg_len(m), &c->reply);
    if (!c->reply.kept)
        nng_msg_free(m);
    c->reply.req = NULL;
    rm = c->reply.msg;
    c->reply.msg = NULL;
    if (st != OT_OK) {
        const char *text = c->reply.errbuf[0] != '\0' ? c->reply.errbuf : ot_strerror(st);
        count(s, ST_HANDLER_ERRORS, 1);
        len = nng_msg_len(rm);
        nng_msg_chop(rm, len - OTI_REPLY_HEADER);
        if (nng_msg_append(rm, text, strnlen(text, OTI_ERRMSG_LEN)) != 0)
            nng_msg_chop(rm, nng_msg_len(rm) - OTI_REPLY_HEADER);
    }
    put32(nng_msg_body(rm), (uint32_t)st);
    len = nng_msg_len(rm) - OTI_REPLY_HEADER;
    if (s->auth && auth_wrap(s, rm, KIND_REPLY, c->bind_sender, c->bind_seq, NULL) != 0) {
        nng_msg_free(rm);
        count(s, ST_SEND_ERRORS, 1);
        srv_recv(c);
        return;
    }
    count(s, ST_BYTES_SENT, len);
    nng_aio_set_msg(c->aio, rm);
    c->sending = 1;
    nng_aio_set_timeout(c->aio, dur(s->send_timeout));
    nng_ctx_send(c->ctx, c->aio);
}

ot_status oti_server_start(oti_sock *s, oti_handler_fn fn, void *arg, char *err)
{
    int c, rv;

    if (s == NULL || fn == NULL)
        return tp_err(err, OT_EINVAL, "NULL socket or handler");
    if (s->kind != OTI_SOCK_REP)
        return tp_err(err, OT_EINVAL, "not a REP socket");
    if (s->started || atomic_load(&s->stopping))
        return tp_err(err, OT_ESTATE, "server already started or stopped");
    s->ctxs = oti_calloc(&s->alloc, (size_t)s->contexts, sizeof(*s->ctxs));
    if (s->ctxs == NULL)
        return tp_err(err, OT_ENOMEM, "out of memory");
    s->handler = fn;
    s->handler_arg = arg;
    for (c = 0; c < s->contexts; c++) {
        srv_ctx *x = &s->ctxs[c];
        x->s = s;
        if ((rv = nng_aio_alloc(&x->aio, srv_cb, x)) != 0)
            break;
        s->nctx = c + 1; /* aio allocated: freed by sock_free */
        if ((rv = nng_ctx_open(&x->ctx, s->sock)) != 0)
            break;
    }
    if (rv != 0) {
        for (c = 0; c < s->nctx; c++) {
            nng_aio_free(s->ctxs[c].aio);
            if (nng_ctx_id(s->ctxs[c].ctx) > 0)
                nng_ctx_close(s->ctxs[c].ctx);
        }
        oti_free(&s->alloc, s->ctxs, (size_t)s->contexts * sizeof(*s->ctxs));
        s->ctxs = NULL;
        s->nctx = 0;
        return nng_fail(err, rv, "server contexts", NULL);
    }
    s->started = 1;
    for (c = 0; c < s->nctx; c++)
        srv_recv(&s->ctxs[c]);
    return OT_OK;
}

ot_status oti_reply_append(oti_reply *r, const void *data, size_t len)
{
    size_t used;

    if (r == NULL || (data == NULL && len > 0))
        return OT_EINVAL;
    if (len == 0)
        return OT_OK;
    /* nng 1.5.2 grows a message to the exact size on every append, so a
     * reply built from many frames (a trainer's aggregated update) cost
     * O(n^2) copying: seconds for a few MiB, longer than the trainer's
     * timeout.  Reserve geometrically instead. */
    used = nng_msg_len(r->msg);
    if (len > SIZE_MAX / 2 - used)
        return OT_ENOMEM;
    if (used + len > nng_msg_capacity(r->msg) && nng_msg_reserve(r->msg, 2 * (used + len)) != 0)
        return OT_ENOMEM;
    return nng_msg_append(r->msg, data, len) == 0 ? OT_OK : OT_ENOMEM;
}

ot_status oti_reply_reserve(oti_reply *r, size_t len, uint8_t **out)
{
    size_t old;

    if (r == NULL || out == NULL)
        return OT_EINVAL;
    old = nng_msg_len(r->msg);
    if (len > SIZE_MAX - old)
        return OT_ENOMEM;
    if (nng_msg_realloc(r->msg, old + len) != 0)
        return OT_ENOMEM;
    *out = (uint8_t *)nng_msg_body(r->msg) + old;
    return OT_OK;
}

ot_status oti_reply_truncate(oti_reply *r, size_t len)
{
    size_t cur;

    if (r == NULL)
        return OT_EINVAL;
    cur = nng_msg_len(r->msg) - OTI_REPLY_HEADER;
    if (len > cur)
        return OT_ERANGE;
    nng_msg_chop(r->msg, cur - len);
    return OT_OK;
}

size_t oti_reply_size(const oti_reply *r)
{
    return r != NULL ? nng_msg_len(r->msg) - OTI_REPLY_HEADER : 0;
}

char *oti_reply_errbuf(oti_reply *r)
{
    return r->errbuf;
}

oti_kept *oti_reply_keep_request(oti_reply *r)
{
    if (r == NULL || r->req == NULL || r->kept)
        return NULL;
    r->kept = 1;
    return (oti_kept *)(void *)r->req;
}

void oti_kept_free(oti_kept *k)
{
    if (k != NULL)
        nng_msg_free((nng_msg *)(void *)k);
}

/* ---- REQ: requests ---------------------------------------------------------- */

enum { RQ_IDLE, RQ_SENDING, RQ_RECEIVING };

struct oti_request {
    oti_sock *s;
    nng_ctx ctx;
    nng_aio *aio;
    nng_mtx *mtx;
    nng_cv *cv;
    int state;      /* callback-owned while in flight */
    int inflight;   /* under mtx */
    ot_status status;
    atomic_int cancelled;
    nng_time deadline; /* 0: none */
    nng_msg *orig;  /* authenticated socket: the payload, for resends */
    uint64_t sent_seq;
    nng_msg *reply; /* after OT_OK: OTI_REPLY_HEADER + payload */
    char errmsg[OTI_ERRMSG_LEN];
};

static void req_finish(oti_request *r, ot_status st)
{
    r->state = RQ_IDLE;
    nng_mtx_lock(r->mtx);
    r->status = st;
    r->inflight = 0;
    nng_cv_wake(r->cv);
    nng_mtx_unlock(r->mtx);
}

/* Milliseconds left before the deadline, as an aio timeout (0: expired). */
static nng_duration req_left(const oti_request *r)
{
    nng_time now;

    if (r->deadline == 0)
        return NNG_DURATION_INFINITE;
    now = nng_clock();
    if (now >= r->deadline)
        return 0;
    return r->deadline - now > INT32_MAX ? INT32_MAX : (nng_duration)(r->deadline - now);
}

/*
 * Closes the race between oti_request_cancel() (store the flag, then cancel
 * the aio) and a callback starting the next operation (start, then read the
 * flag): whichever comes second sees the other, so a cancelled request never
 * waits on a fresh operation.  Cancelling an aio whose operation already
 * ended does nothing.
 */
static void req_recheck_cancel(oti_request *r)
{
    if (atomic_load(&r->cancelled))
        nng_aio_cancel(r->aio);
}

/* Sends (or resends) the request; authenticated sockets send a copy of the
 * payload with a fresh trailer. */
static int req_send(oti_request *r, nng_msg *m)
{
    oti_sock *s = r->s;
    int rv;

    if (s->auth) {
        if ((rv = nng_msg_dup(&m, r->orig)) != 0)
            return rv;
        if ((rv = auth_wrap(s, m, KIND_REQUEST, 0, 0, &r->sent_seq)) != 0) {
            nng_msg_free(m);
            return rv;
        }
    }
    r->state = RQ_SENDING;
    nng_aio_set_msg(r->aio, m);
    nng_aio_set_timeout(r->aio, req_left(r));
    nng_ctx_send(r->ctx, r->aio);
    req_recheck_cancel(r);
    return 0;
}

static void req_recv(oti_request *r)
{
    nng_duration left = req_left(r);

    if (r->s->auth && r->s->resend > 0 && (left < 0 || left > r->s->resend))
        left = r->s->resend;
    r->state = RQ_RECEIVING;
    nng_aio_set_timeout(r->aio, left);
    nng_ctx_recv(r->ctx, r->aio);
    req_recheck_cancel(r);
}

static void req_got_reply(oti_request *r, nng_msg *m)
{
    oti_sock *s = r->s;
    uint32_t sender, code;
    uint64_t seq;
    const char *text;
    size_t len;
    int why;

    if (s->recv_max > 0 && nng_msg_len(m) > s->recv_max) {
        count(s, ST_DROP_OVERSIZE, 1);
        nng_msg_free(m);
        req_finish(r, tp_err(r->errmsg, OT_ETOOBIG, "reply larger than recv_max (%zu bytes)",
                             s->recv_max));
        return;
    }
    if (s->auth &&
        (why = auth_unwrap(s, m, KIND_REPLY, s->sender_id, r->sent_seq, &sender, &seq)) >= 0) {
        count(s, why, 1);
        nng_msg_free(m);
        if (why == ST_DROP_SHORT)
            req_finish(r, tp_err(r->errmsg, OT_EFORMAT, "reply shorter than its trailer"));
        else
            req_finish(r, tp_err(r->errmsg, OT_EAUTH, "reply failed authentication"));
        return;
    }
    len = nng_msg_len(m);
    if (len < OTI_REPLY_HEADER) {
        nng_msg_free(m);
        req_finish(r, tp_err(r->errmsg, OT_EFORMAT, "reply too short (%zu bytes)", len));
        return;
    }
    count(s, ST_RECEIVED, 1);
    count(s, ST_BYTES_RECEIVED, len - OTI_REPLY_HEADER);
    code = get32(nng_msg_body(m));
    if (code != OT_OK) {
        int n = (int)(len - OTI_REPLY_HEADER < 200 ? len - OTI_REPLY_HEADER : 200);
        ot_status st = (ot_status)code;
        text = (const char *)nng_msg_body(m) + OTI_REPLY_HEADER;
        if (code > INT32_MAX || strcmp(ot_status_name((int)code), "OT_UNKNOWN") == 0)
            st = OT_ETRANSPORT;
        tp_err(r->errmsg, st, "remote: %.*s (status %u)", n, text, (unsigned)code);
        nng_msg_free(m);
        req_finish(r, st);
        return;
    }
    r->reply = m;
    req_finish(r, OT_OK);
}

static void req_cb(void *arg)
{
    oti_request *r = arg;
    oti_sock *s = r->s;
    int rv = nng_aio_result(r->aio);
    nng_msg *m;

    if (r->state == RQ_SENDING) {
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(r->aio));
            nng_aio_set_msg(r->aio, NULL);
            if (rv == NNG_ECANCELED && atomic_load(&r->cancelled))
                req_finish(r, tp_err(r->errmsg, OT_ECLOSED, "request cancelled"));
            else
                req_finish(r, nng_fail(r->errmsg, rv, "send request", NULL));
            return;
        }
        count(s, ST_SENT, 1);
        if (atomic_load(&r->cancelled)) {
            req_finish(r, tp_err(r->errmsg, OT_ECLOSED, "request cancelled"));
            return;
        }
        req_recv(r);
        return;
    }
    if (rv == NNG_ETIMEDOUT && s->auth && s->resend > 0 && !atomic_load(&r->cancelled) &&
        req_left(r) != 0) {
        count(s, ST_RESENDS, 1);
        if ((rv = req_send(r, NULL)) == 0)
            return;
    }
    if (rv != 0) {
        if (rv == NNG_ECANCELED && atomic_load(&r->cancelled))
            req_finish(r, tp_err(r->errmsg, OT_ECLOSED, "request cancelled"));
        else
            req_finish(r, nng_fail(r->errmsg, rv, "request", NULL));
        return;
    }
    m = nng_aio_get_msg(r->aio);
    nng_aio_set_msg(r->aio, NULL);
    req_got_reply(r, m);
}

ot_status oti_request_create(oti_sock *s, oti_request **out, char *err)
{
    oti_request *r;
    int rv;

    if (s == NULL || out == NULL)
        return tp_err(err, OT_EINVAL, "NULL socket or out-pointer");
    if (s->kind != OTI_SOCK_REQ)
        return tp_err(err, OT_EINVAL, "not a REQ socket");
    if (atomic_load(&s->stopping))
        return tp_err(err, OT_ECLOSED, "socket is closed");
    r = oti_calloc(&s->alloc, 1, sizeof(*r));
    if (r == NULL)
        return tp_err(err, OT_ENOMEM, "out of memory");
    r->s = s;
    if ((rv = nng_mtx_alloc(&r->mtx)) != 0) {
        oti_free(&s->alloc, r, sizeof(*r));
        return nng_fail(err, rv, "request", NULL);
    }
    if ((rv = nng_cv_alloc(&r->cv, r->mtx)) != 0) {
        nng_mtx_free(r->mtx);
        oti_free(&s->alloc, r, sizeof(*r));
        return nng_fail(err, rv, "request", NULL);
    }
    if ((rv = nng_aio_alloc(&r->aio, req_cb, r)) != 0) {
        nng_cv_free(r->cv);
        nng_mtx_free(r->mtx);
        oti_free(&s->alloc, r, sizeof(*r));
        return nng_fail(err, rv, "request", NULL);
    }
    if ((rv = nng_ctx_open(&r->ctx, s->sock)) != 0) {
        nng_aio_free(r->aio);
        nng_cv_free(r->cv);
        nng_mtx_free(r->mtx);
        oti_free(&s->alloc, r, sizeof(*r));
        return nng_fail(err, rv, "request context", NULL);
    }
    atomic_fetch_add(&s->refs, 1);
    *out = r;
    return OT_OK;
}

ot_status oti_request_start(oti_request *r, const void *req, size_t len, int32_t timeout_ms)
{
    oti_sock *s;
    nng_msg *m;
    int rv, busy;

    if (r == NULL || (req == NULL && len > 0) || timeout_ms < OTI_TP_DEFAULT)
        return OT_EINVAL;
    s = r->s;
    nng_mtx_lock(r->mtx);
    busy = r->inflight;
    nng_mtx_unlock(r->mtx);
    if (busy) /* errmsg belongs to the request in flight: leave it alone */
        return OT_ESTATE;
    if (atomic_load(&s->stopping))
        return tp_err(r->errmsg, OT_ECLOSED, "socket is closed");
    if (r->reply != NULL) {
        nng_msg_free(r->reply);
        r->reply = NULL;
    }
    if (r->orig != NULL) {
        nng_msg_free(r->orig);
        r->orig = NULL;
    }
    r->errmsg[0] = '\0';
    if ((rv = nng_msg_alloc(&m, len)) != 0)
        return nng_fail(r->errmsg, rv, "request", NULL);
    if (len > 0)
        memcpy(nng_msg_body(m), req, len);
    if (timeout_ms == OTI_TP_DEFAULT)
        timeout_ms = s->recv_timeout;
    r->deadline = timeout_ms < 0 ? 0 : nng_clock() + (nng_time)timeout_ms;
    if (r->deadline == 0 && timeout_ms >= 0)
        r->deadline = 1;
    atomic_store(&r->cancelled, 0);
    if (s->auth) {
        r->orig = m;
        m = NULL;
    }
    nng_mtx_lock(r->mtx);
    r->inflight = 1;
    r->status = OT_OK;
    nng_mtx_unlock(r->mtx);
    count(s, ST_BYTES_SENT, len);
    if ((rv = req_send(r, m)) != 0) {
        if (m != NULL)
            nng_msg_free(m);
        req_finish(r, nng_fail(r->errmsg, rv, "request", NULL));
        return r->status;
    }
    return OT_OK;
}

ot_status oti_request_wait(oti_request *r)
{
    ot_status st;

    if (r == NULL)
        return OT_EINVAL;
    nng_mtx_lock(r->mtx);
    while (r->inflight)
        nng_cv_wait(r->cv);
    st = r->status;
    nng_mtx_unlock(r->mtx);
    return st;
}

ot_status oti_request_wait_all(oti_request *const *rs, size_t n)
{
    ot_status first = OT_OK, st;
    size_t i;

    if (rs == NULL && n > 0)
        return OT_EINVAL;
    for (i = 0; i < n; i++) {
        st = oti_request_wait(rs[i]);
        if (first == OT_OK)
            first = st;
    }
    return first;
}

void oti_request_cancel(oti_request *r)
{
    if (r == NULL)
        return;
    atomic_store(&r->cancelled, 1);
    nng_aio_cancel(r->aio);
}

ot_status oti_request_reply(const oti_request *r, const uint8_t **data, size_t *len)
{
    if (r == NULL || data == NULL || len == NULL)
        return OT_EINVAL;
    if (r->reply == NULL)
        return OT_ESTATE;
    *data = (const uint8_t *)nng_msg_body(r->reply) + OTI_REPLY_HEADER;
    *len = nng_msg_len(r->reply) - OTI_REPLY_HEADER;
    return OT_OK;
}

const char *oti_request_errmsg(const oti_request *r)
{
    return r != NULL ? r->errmsg : "";
}

void oti_request_destroy(oti_request *r)
{
    oti_sock *s;

    if (r == NULL)
        return;
    s = r->s;
    atomic_store(&r->cancelled, 1);
    nng_aio_stop(r->aio);
    nng_ctx_close(r->ctx);
    if (r->reply != NULL)
        nng_msg_free(r->reply);
    if (r->orig != NULL)
        nng_msg_free(r->orig);
    aio_free_stopped(r->aio);
    nng_cv_free(r->cv);
    nng_mtx_free(r->mtx);
    oti_free(&s->alloc, r, sizeof(*r));
    sock_release(s);
}

ot_status oti_sock_call(oti_sock *s, const void *req, size_t len, int32_t timeout_ms,
                        ot_buf **reply, char *err)
{
    oti_request *r;
    const uint8_t *data;
    size_t n;
    ot_status st;

    if (reply == NULL)
        return tp_err(err, OT_EINVAL, "NULL reply out-pointer");
    if ((st = oti_request_create(s, &r, err)) != OT_OK)
        return st;
    st = oti_request_start(r, req, len, timeout_ms);
    if (st == OT_OK)
        st = oti_request_wait(r);
    if (st == OT_OK && oti_request_reply(r, &data, &n) == OT_OK) {
        ot_buf *b = oti_buf_new(&s->alloc, n);
        if (b == NULL) {
            st = tp_err(err, OT_ENOMEM, "out of memory");
        } else {
            if (n > 0)
                memcpy(oti_buf_mut(b), data, n);
            *reply = b;
        }
    } else if (st != OT_OK) {
        tp_err(err, st, "%s", r->errmsg);
    }
    oti_request_destroy(r);
    return st;
}

/* ---- PUB / SUB ------------------------------------------------------------------ */

ot_status oti_sock_publish(oti_sock *s, const void *data, size_t len, char *err)
{
    nng_msg *m;
    int rv;

    if (s == NULL || (data == NULL && len > 0))
        return tp_err(err, OT_EINVAL, "NULL socket or data");
    if (s->kind != OTI_SOCK_PUB)
        return tp_err(err, OT_EINVAL, "not a PUB socket");
    if (atomic_load(&s->stopping))
        return tp_err(err, OT_ECLOSED, "socket is closed");
    if ((rv = nng_msg_alloc(&m, len)) != 0)
        return nng_fail(err, rv, "publish", NULL);
    if (len > 0)
        memcpy(nng_msg_body(m), data, len);
    if (s->auth && (rv = auth_wrap(s, m, KIND_PUBLISH, 0, 0, NULL)) != 0) {
        nng_msg_free(m);
        return nng_fail(err, rv, "publish", NULL);
    }
    if ((rv = nng_sendmsg(s->sock, m, 0)) != 0) {
        nng_msg_free(m);
        count(s, ST_SEND_ERRORS, 1);
        return nng_fail(err, rv, "publish", NULL);
    }
    count(s, ST_SENT, 1);
    count(s, ST_BYTES_SENT, len);
    return OT_OK;
}

static void sub_cb(void *arg)
{
    oti_sock *s = arg;
    int rv = nng_aio_result(s->sub_aio);
    uint32_t sender;
    uint64_t seq;
    nng_msg *m;

    if (rv == 0) {
        m = nng_aio_get_msg(s->sub_aio);
        nng_aio_set_msg(s->sub_aio, NULL);
        if (rx_accept(s, m, KIND_PUBLISH, &sender, &seq) == 0)
            s->recv_fn(s->recv_arg, nng_msg_body(m), nng_msg_len(m));
        nng_msg_free(m);
    } else if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
        return;
    }
    if (!atomic_load(&s->stopping))
        nng_recv_aio(s->sock, s->sub_aio);
}

ot_status oti_sub_start(oti_sock *s, oti_recv_fn fn, void *arg, char *err)
{
    int rv;

    if (s == NULL || fn == NULL)
        return tp_err(err, OT_EINVAL, "NULL socket or callback");
    if (s->kind != OTI_SOCK_SUB)
        return tp_err(err, OT_EINVAL, "not a SUB socket");
    if (s->started || atomic_load(&s->stopping))
        return tp_err(err, OT_ESTATE, "subscriber already started or stopped");
    if ((rv = nng_aio_alloc(&s->sub_aio, sub_cb, s)) != 0)
        return nng_fail(err, rv, "subscriber", NULL);
    s->recv_fn = fn;
    s->recv_arg = arg;
    s->started = 1;
    nng_recv_aio(s->sock, s->sub_aio);
    return OT_OK;
}

ot_status oti_sock_recv(oti_sock *s, int32_t timeout_ms, ot_buf **out, char *err)
{
    nng_aio *aio;
    nng_time deadline = 0, now;
    uint32_t sender;
    uint64_t seq;
    ot_status st = OT_OK;
    nng_msg *m;
    int rv;

    if (s == NULL || out == NULL || timeout_ms < OTI_TP_DEFAULT)
        return tp_err(err, OT_EINVAL, "NULL socket or out-pointer, or bad timeout");
    if (s->kind != OTI_SOCK_SUB)
        return tp_err(err, OT_EINVAL, "not a SUB socket");
    if (s->started)
        return tp_err(err, OT_ESTATE, "subscriber delivers to a callback");
    if (atomic_load(&s->stopping))
        return tp_err(err, OT_ECLOSED, "socket is closed");
    if (timeout_ms == OTI_TP_DEFAULT)
        timeout_ms = s->recv_timeout;
    if (timeout_ms >= 0)
        deadline = nng_clock() + (nng_time)timeout_ms;
    if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0)
        return nng_fail(err, rv, "receive", NULL);
    for (;;) {
        nng_duration left = NNG_DURATION_INFINITE;
        if (timeout_ms >= 0) {
            now = nng_clock();
            left = now >= deadline ? 0 : (nng_duration)(deadline - now);
        }
        nng_aio_set_timeout(aio, left);
        nng_recv_aio(s->sock, aio);
        nng_aio_wait(aio);
        if ((rv = nng_aio_result(aio)) != 0) {
            st = nng_fail(err, rv, "receive", NULL);
            break;
        }
        m = nng_aio_get_msg(aio);
        nng_aio_set_msg(aio, NULL);
        if (rx_accept(s, m, KIND_PUBLISH, &sender, &seq) == 0) {
            ot_buf *b = oti_buf_new(&s->alloc, nng_msg_len(m));
            if (b == NULL) {
                st = tp_err(err, OT_ENOMEM, "out of memory");
            } else {
                if (nng_msg_len(m) > 0)
                    memcpy(oti_buf_mut(b), nng_msg_body(m), nng_msg_len(m));
                *out = b;
            }
            nng_msg_free(m);
            break;
        }
        nng_msg_free(m);
    }
    nng_aio_free(aio);
    return st;
}

/* ---- HTTP: one handler at one URL -------------------------------------------------
 *
 * nng calls a handler's callback on its own threads, and keeps a reference
 * to the handler while a call is being dispatched, so the handler (and the
 * http_ctx set as its data) may outlive oti_http_stop() by a moment.  The
 * http_ctx is therefore owned by the handler: allocated with nng_alloc and
 * freed by nng through the handler's destructor, never with the caller's
 * allocator.  What belongs to the caller (fn, arg, the allocator) is only
 * used between `running++` and `running--`, which oti_http_stop() waits
 * out after setting `stopped`. */

typedef struct http_ctx {
    nng_mtx *mtx;
    nng_cv *cv;
    int stopped; /* under mtx */
    int running; /* under mtx: calls of fn in progress */
    oti_http_fn fn;
    void *arg;
    oti_alloc alloc;
    char ctype[128];
} http_ctx;

struct oti_http {
    oti_alloc alloc;
    nng_http_server *srv;
    nng_http_handler *h;
    http_ctx *ctx;
};

static void http_ctx_free(void *arg)
{
    http_ctx *c = arg;

    if (c == NULL)
        return;
    if (c->cv != NULL)
        nng_cv_free(c->cv);
    if (c->mtx != NULL)
        nng_mtx_free(c->mtx);
    nng_free(c, sizeof(*c));
}

static void http_cb(nng_aio *aio)
{
    nng_http_handler *h = nng_aio_get_input(aio, 1);
    http_ctx *c = nng_http_handler_get_data(h);
    nng_http_res *res = NULL;
    uint8_t *data = NULL;
    size_t len = 0, cap = 0;
    ot_status st;
    int rv;

    nng_mtx_lock(c->mtx);
    if (c->stopped) {
        nng_mtx_unlock(c->mtx);
        rv = nng_http_res_alloc_error(&res, NNG_HTTP_STATUS_SERVICE_UNAVAILABLE);
        goto done;
    }
    c->running++;
    nng_mtx_unlock(c->mtx);

    st = c->fn(c->arg, &data, &len, &cap);
    if (st == OT_OK) {
        if ((rv = nng_http_res_alloc(&res)) == 0 &&
            ((rv = nng_http_res_copy_data(res, data, len)) != 0 ||
             (rv = nng_http_res_set_header(res, "Content-Type", c->ctype)) != 0)) {
            nng_http_res_free(res);
            res = NULL;
        }
    } else {
        rv = nng_http_res_alloc_error(&res, NNG_HTTP_STATUS_INTERNAL_SERVER_ERROR);
    }
    if (data != NULL)
        oti_free(&c->alloc, data, cap);

    nng_mtx_lock(c->mtx);
    if (--c->running == 0 && c->stopped)
        nng_cv_wake(c->cv);
    nng_mtx_unlock(c->mtx);
done:
    if (rv != 0) {
        nng_aio_finish(aio, rv); /* nng closes the connection */
        return;
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

ot_status oti_http_serve(const oti_alloc *a, const char *url, const char *default_path,
                         const char *content_type, oti_http_fn fn, void *arg, oti_http **out,
                         int *port, char *err)
{
    oti_alloc dflt = {NULL, NULL};
    oti_http *x = NULL;
    http_ctx *c = NULL;
    nng_url *u = NULL;
    nng_http_handler *h = NULL;
    nng_http_server *srv = NULL;
    nng_sockaddr sa;
    const char *path;
    ot_status st;
    int rv, added = 0;

    if (a == NULL)
        a = &dflt;
    if (url == NULL || fn == NULL || out == NULL || content_type == NULL ||
        strlen(content_type) >= sizeof(c->ctype))
        return tp_err(err, OT_EINVAL, "NULL URL, handler or out-pointer, or bad content type");
    if ((rv = nng_url_parse(&u, url)) != 0)
        return tp_err(err, OT_EINVAL, "bad URL \"%s\": %s", url, nng_strerror(rv));
    if (strcmp(u->u_scheme, "http") != 0) {
        nng_url_free(u);
        return tp_err(err, OT_ENOTSUP, "%s: only http:// is served", url);
    }
    path = u->u_path;
    if (path[0] == '\0' || strcmp(path, "/") == 0)
        path = default_path != NULL ? default_path : "/";

    if ((x = oti_calloc(a, 1, sizeof(*x))) == NULL ||
        (c = nng_alloc(sizeof(*c))) == NULL) {
        st = tp_err(err, OT_ENOMEM, "out of memory");
        goto fail;
    }
    memset(c, 0, sizeof(*c));
    x->alloc = *a;
    c->fn = fn;
    c->arg = arg;
    c->alloc = *a;
    memcpy(c->ctype, content_type, strlen(content_type) + 1);
    if ((rv = nng_mtx_alloc(&c->mtx)) != 0 || (rv = nng_cv_alloc(&c->cv, c->mtx)) != 0 ||
        (rv = nng_http_handler_alloc(&h, path, http_cb)) != 0) {
        st = nng_fail(err, rv, "http handler", url);
        goto fail;
    }
    if ((rv = nng_http_handler_set_data(h, c, http_ctx_free)) != 0) {
        st = nng_fail(err, rv, "http handler", url);
        goto fail;
    }
    c = NULL; /* the handler owns it now */
    /* GET requests carry no body: refuse one rather than read it. */
    nng_http_handler_collect_body(h, true, 0);
    if ((rv = nng_http_server_hold(&srv, u)) != 0) {
        st = nng_fail(err, rv, "http server", url);
        goto fail;
    }
    if ((rv = nng_http_server_add_handler(srv, h)) != 0) {
        st = nng_fail(err, rv, "http path", url);
        goto fail;
    }
    added = 1;
    if ((rv = nng_http_server_start(srv)) != 0) {
        st = nng_fail(err, rv, "http listen", url);
        goto fail;
    }
    if (port != NULL) {
        *port = 0;
        if (nng_http_server_get_addr(srv, &sa) == 0) {
            if (sa.s_family == NNG_AF_INET)
                *port = (int)(((unsigned)((const uint8_t *)&sa.s_in.sa_port)[0] << 8) |
                              ((const uint8_t *)&sa.s_in.sa_port)[1]);
            else if (sa.s_family == NNG_AF_INET6)
                *port = (int)(((unsigned)((const uint8_t *)&sa.s_in6.sa_port)[0] << 8) |
                              ((const uint8_t *)&sa.s_in6.sa_port)[1]);
        }
    }
    nng_url_free(u);
    x->srv = srv;
    x->h = h;
    x->ctx = nng_http_handler_get_data(h);
    *out = x;
    return OT_OK;

fail:
    if (added)
        nng_http_server_del_handler(srv, h);
    if (srv != NULL)
        nng_http_server_release(srv);
    if (h != NULL)
        nng_http_handler_free(h); /* frees the ctx once set as its data */
    if (c != NULL)
        http_ctx_free(c);
    if (x != NULL)
        oti_free(a, x, sizeof(*x));
    nng_url_free(u);
    return st;
}

void oti_http_stop(oti_http *x)
{
    http_ctx *c;

    if (x == NULL)
        return;
    c = x->ctx;
    nng_mtx_lock(c->mtx);
    c->stopped = 1;
    while (c->running > 0)
        nng_cv_wait(c->cv);
    nng_mtx_unlock(c->mtx);
    /* From here on the callback touches only c (owned by the handler).
     * Unregister before stopping: nng takes its reference on the handler
     * and begins the dispatch under the server's lock, so once the handler
     * is gone no dispatch of it can be cut off by the stop, which in nng
     * 1.5.2 would leave the handler (and c) with a reference never dropped. */
    nng_http_server_del_handler(x->srv, x->h);
    nng_http_server_stop(x->srv);
    nng_http_server_release(x->srv);
    nng_http_handler_free(x->h);
    oti_free(&x->alloc, x, sizeof(*x));
}
