/*
 * transport.h - the library's messaging layer; transport.c is the only file
 * that includes nng.  Nothing here names an nng type: sockets and requests
 * are opaque, and every option is a plain field of oti_tp_opts.
 *
 * Four socket kinds, each opened by oti_sock_create() and then attached to
 * any number of URLs with oti_sock_listen() / oti_sock_dial():
 *
 *   REP  the server side of request/reply: oti_server_start() runs N nng
 *        contexts, each calling the handler on nng's threads.
 *   REQ  the client side: oti_sock_call() (synchronous) or oti_request_*
 *        (asynchronous; several in flight on one socket, each on its own
 *        context; wait for one or for all).
 *   PUB  oti_sock_publish() sends to every connected subscriber.
 *   SUB  subscribes to everything; a receive callback (oti_sub_start) or
 *        a blocking receive with a timeout (oti_sock_recv).  Dial several
 *        URLs to hear several publishers (one per shard).
 *
 * URLs: inproc://name, ipc:///path, tcp://host:port, tls+tcp://host:port
 * (tcp4/tcp6 and tls+tcp4/tls+tcp6 too).  docs/transport.md has the limits,
 * the error mapping, TLS and the authentication trailer byte by byte.
 *
 * Errors: functions return an ot_status; those taking `char *err` write a
 * detail message there (OTI_ERRMSG_LEN bytes, may be NULL), keeping nng's
 * own text ("dial tcp://127.0.0.1:9: Connection refused").
 *
 * Threads: create, listen, dial, server_start and sub_start are setup
 * calls, made by one thread before the socket is shared.  publish, call,
 * recv, request_create, peers, stats and set_test_hook are thread-safe.  An
 * oti_request is used by one thread at a time (oti_request_cancel may come
 * from another).  Callbacks (handler, receive callback) run on nng's threads
 * with no transport lock held; they must not block for long (they occupy
 * one of nng's few worker threads), and must not call oti_sock_stop/destroy
 * on their own socket.  oti_sock_stop() may be called from any other thread
 * and returns only when no callback of the socket is running.  destroy must
 * not race with other calls on the same socket.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_TRANSPORT_H
#define OT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* The version string of the nng library in use. */
const char *oti_transport_version(void);

/* ---- options ------------------------------------------------------------ */

enum oti_sock_kind {
    OTI_SOCK_REP = 1, /* request/reply server */
    OTI_SOCK_REQ = 2, /* request/reply client */
    OTI_SOCK_PUB = 3, /* publisher */
    OTI_SOCK_SUB = 4  /* subscriber (to everything) */
};

/* TLS peer verification (same meaning on listeners and dialers). */
enum oti_tls_auth {
    OTI_TLS_AUTH_DEFAULT = -1, /* nng's default: listeners NONE, dialers REQUIRED */
    OTI_TLS_AUTH_NONE = 0,     /* do not verify the peer */
    OTI_TLS_AUTH_OPTIONAL = 1, /* verify a certificate if the peer sends one */
    OTI_TLS_AUTH_REQUIRED = 2  /* the peer must send a certificate that verifies */
};

#define OTI_TP_INFINITE (-1) /* a timeout that never expires */
#define OTI_TP_DEFAULT (-2)  /* a timeout argument meaning "the socket's option" */

#define OTI_HMAC_KEY_MAX 256      /* longest HMAC key accepted, bytes */
#define OTI_HMAC_TRAILER 48       /* bytes the authentication trailer adds */
#define OTI_REPLY_HEADER 4        /* bytes of status before a reply's payload */
#define OTI_REPLAY_WINDOW 1024    /* sequence numbers remembered below the highest */

/*
 * Options of a socket, read by oti_sock_create() (strings and the key are
 * copied or used during the call; nothing is kept pointing at the caller's
 * memory).  Start from oti_tp_opts_init(), which sets the defaults below.
 */
typedef struct oti_tp_opts {
    oti_alloc alloc;          /* allocator for the socket and its buffers (default malloc) */
    size_t recv_max;          /* largest message accepted, bytes, trailer included
                                 (default 16 MiB; 0: no limit) */
    int32_t send_timeout_ms;  /* replies and blocking sends (default 5000) */
    int32_t recv_timeout_ms;  /* for OTI_TP_DEFAULT timeouts: requests, blocking
                                 receives (default 10000) */
    int32_t reconnect_min_ms; /* first redial delay (default 100) */
    int32_t reconnect_max_ms; /* redial backoff cap; 0: no backoff (default 5000);
                                 raised to reconnect_min_ms if below it */
    int32_t resend_ms;        /* REQ: resend an unanswered request after this;
                                 0 never (default 5000) */
    int contexts;             /* REP: requests served at once (default 4, max 1024) */
    int recv_buffer;          /* SUB: receive queue in messages, 0 nng's (default 1024) */
    int send_buffer;          /* PUB: queue per subscriber in messages, 0 nng's
                                 (default 1024; nng's own is 16) */
    /* TLS, used by tls+tcp:// listeners and dialers. */
    const char *tls_cert_key_file; /* PEM: this end's certificate and private key, or NULL */
    const char *tls_ca_file;       /* PEM: certificates trusted to sign the peer's, or NULL */
    const char *tls_server_name;   /* dialers: name expected in the server's certificate
                                      (NULL: the URL's host) */
    int tls_auth_mode;             /* enum oti_tls_auth (default OTI_TLS_AUTH_DEFAULT) */
    /* Message authentication (HMAC-SHA256 trailer); both ends need the same key. */
    const uint8_t *hmac_key;  /* NULL: no authentication */
    size_t hmac_key_len;      /* 1..OTI_HMAC_KEY_MAX */
    uint32_t sender_id;       /* this socket's id in trailers; 0: random (default) */
    uint32_t replay_senders;  /* senders remembered for replay checks (default 256) */
    /* Connection limit: pipes the socket holds at once (0: no limit, the
     * default; at most OTI_TP_MAX_CONNS).  A connection over it is closed
     * as soon as nng has negotiated it (NNG_PIPE_EV_ADD_PRE), before the
     * socket uses it, and counted in refused_conns. */
    int max_conns;
} oti_tp_opts;

#define OTI_TP_MAX_CONNS 65536 /* largest max_conns accepted */

/* Sets every field to its default. */
void oti_tp_opts_init(oti_tp_opts *o);

/* Counters of one socket, read with oti_sock_stats(); they only grow. */
typedef struct oti_tp_stats {
    uint64_t sent;            /* messages handed to nng (requests, replies, publishes) */
    uint64_t received;        /* messages accepted and delivered */
    uint64_t bytes_sent;      /* payload bytes of `sent` */
    uint64_t bytes_received;  /* payload bytes of `received` */
    uint64_t send_errors;     /* sends nng refused (replies, publishes) */
    uint64_t drop_short;      /* authenticated socket: shorter than the trailer */
    uint64_t drop_auth;       /* authenticated socket: bad MAC or trailer fields */
    uint64_t drop_replay;     /* authenticated socket: sequence already seen or too old */
    uint64_t drop_oversize;   /* longer than recv_max (only inproc gets this far) */
    uint64_t drop_hook;       /* dropped by the test hook */
    uint64_t handler_errors;  /* REP: handler returned an error (sent as an error reply) */
    uint64_t resends;         /* REQ, authenticated: requests resent with a new sequence */
    uint64_t senders_evicted; /* replay table full: least recently heard sender forgotten */
    uint64_t refused_conns;   /* connections closed because max_conns were open */
} oti_tp_stats;

/* ---- sockets ------------------------------------------------------------ */

typedef struct oti_sock oti_sock;

/*
 * Opens a socket of kind `kind` (enum oti_sock_kind) with options `o`
 * (NULL: defaults).  A SUB socket subscribes to everything.
 * OT_EINVAL bad kind or option, OT_ENOMEM, OT_ENOTSUP protocol not built.
 */
ot_status oti_sock_create(int kind, const oti_tp_opts *o, oti_sock **out, char *err);

/*
 * Listens on `url` (started at once; the socket may listen on several).
 * `port` (may be NULL) receives the bound TCP port, which is how a caller
 * learns the port picked for "tcp://127.0.0.1:0"; 0 for other transports.
 * OT_EADDRINUSE, OT_EINVAL (bad URL; tls+tcp without a certificate),
 * OT_ENOTSUP (scheme), OT_ENOENT (missing TLS file or ipc directory),
 * OT_EAUTH (a TLS file that does not load), OT_ECLOSED.
 */
ot_status oti_sock_listen(oti_sock *s, const char *url, int *port, char *err);

#define OTI_DIAL_WAIT 1 /* oti_sock_dial: wait for the first attempt and report it */

/*
 * Dials `url`.  By default the dial does not block: the socket connects in
 * the background and redials (reconnect_min_ms doubling to
 * reconnect_max_ms) until the peer is up, so a client may start before its
 * server.  With OTI_DIAL_WAIT the first attempt's failure is returned
 * (OT_ECONNREFUSED, OT_EAUTH, ...) and nothing is left dialing.  TLS
 * settings are checked here too (OT_ENOENT, OT_EAUTH, as for listen).
 */
ot_status oti_sock_dial(oti_sock *s, const char *url, int flags, char *err);

/*
 * Stops the socket's callbacks: no handler or receive callback runs after
 * this returns, and none is running.  Requests in flight on a REQ socket
 * are failed with OT_ECLOSED.  Idempotent; NULL is ignored.
 */
void oti_sock_stop(oti_sock *s);

/*
 * Stops (as above) and closes the socket.  NULL is ignored.  oti_request
 * objects of a REQ socket may be destroyed before or after; after, they
 * report OT_ECLOSED.
 */
void oti_sock_destroy(oti_sock *s);

/* Number of connected peers (pipes) right now. */
int oti_sock_peers(const oti_sock *s);

/* A snapshot of the counters. */
void oti_sock_stats(const oti_sock *s, oti_tp_stats *out);

/*
 * Test hook (a documented knob for tests of gaps and slow links): of the
 * messages a REP or SUB socket receives, drop every `drop_every`-th (0:
 * none) and count it in drop_hook, and wait `delay_ms` before handling each
 * of the others (0: none; the wait holds up the messages behind it too).
 * The hook acts before the size and authentication checks, as loss on the
 * wire would: a dropped message leaves no trace in the replay table.
 * Counting starts at the call.  Thread-safe.
 */
void oti_sock_set_test_hook(oti_sock *s, uint32_t drop_every, uint32_t delay_ms);

/* ---- request/reply: server ---------------------------------------------- */

/* The reply a handler builds: a growable byte buffer (the payload). */
typedef struct oti_reply oti_reply;

/*
 * A request handler.  Called on nng's threads, up to `contexts` at once,
 * with the request's payload (valid during the call).  It appends the reply
 * payload to `reply` and returns OT_OK; any other status is sent back to the
 * client, with the text the handler wrote into oti_reply_errbuf(), instead
 * of the payload.
 */
typedef ot_status (*oti_handler_fn)(void *arg, const uint8_t *req, size_t len, oti_reply *reply);

/*
 * Starts serving on a REP socket.  OT_ESTATE if already started or stopped,
 * OT_EINVAL wrong kind.
 */
ot_status oti_server_start(oti_sock *s, oti_handler_fn fn, void *arg, char *err);

/* Appends `len` bytes to the reply.  OT_ENOMEM. */
ot_status oti_reply_append(oti_reply *r, const void *data, size_t len);

/*
 * Grows the reply by `len` bytes and gives their address in `*out`, for an
 * encoder to write in place; valid until the next append, reserve or
 * truncate.  OT_ENOMEM.
 */
ot_status oti_reply_reserve(oti_reply *r, size_t len, uint8_t **out);

/* Shortens the payload to `len` bytes (after reserving a bound).  OT_ERANGE if longer. */
ot_status oti_reply_truncate(oti_reply *r, size_t len);

/* The payload's current length. */
size_t oti_reply_size(const oti_reply *r);

/* An OTI_ERRMSG_LEN buffer for the handler's error text (use with oti_err()). */
char *oti_reply_errbuf(oti_reply *r);

/* A request kept past its handler (oti_reply_keep_request). */
typedef struct oti_kept oti_kept;

/*
 * Called by a handler: keeps the request it is answering, so its bytes (the
 * `req`, `len` the handler was given) stay valid after the handler returns,
 * until oti_kept_free(); the transport then does not free them.  Saves a
 * copy of a large request the handler wants to hold on to.  NULL if already
 * kept (or r is NULL).
 */
oti_kept *oti_reply_keep_request(oti_reply *r);

/* Frees a kept request.  NULL is ignored.  Thread-safe. */
void oti_kept_free(oti_kept *k);

/* ---- request/reply: client ---------------------------------------------- */

/*
 * Sends one request on a REQ socket and waits for the reply, at most
 * `timeout_ms` in all (OTI_TP_DEFAULT: recv_timeout_ms; OTI_TP_INFINITE).
 * On OT_OK `*reply` receives the payload, allocated with the socket's
 * allocator (release with ot_buf_release).  Errors: OT_ETIMEDOUT, OT_ECLOSED,
 * OT_ETOOBIG (reply over recv_max), OT_EAUTH (reply failed authentication),
 * OT_EFORMAT (not a reply), or the status the server's handler returned
 * (its text in `err`, prefixed "remote: ").
 */
ot_status oti_sock_call(oti_sock *s, const void *req, size_t len, int32_t timeout_ms,
                        ot_buf **reply, char *err);

/* An asynchronous request: its own nng context on a REQ socket, reusable. */
typedef struct oti_request oti_request;

/* Creates a request object on REQ socket `s`.  OT_EINVAL, OT_ENOMEM, OT_ECLOSED. */
ot_status oti_request_create(oti_sock *s, oti_request **out, char *err);

/*
 * Starts sending `len` bytes (copied) and returns at once; the reply is
 * awaited in the background, `timeout_ms` in all.  Requests on different
 * objects proceed concurrently, on one socket or on many.  OT_ESTATE if
 * this one is still in flight.
 */
ot_status oti_request_start(oti_request *r, const void *req, size_t len, int32_t timeout_ms);

/* Waits until the request is done; returns its status (errors as oti_sock_call). */
ot_status oti_request_wait(oti_request *r);

/* Waits for all `n` requests; returns OT_OK or the first one's error in array order. */
ot_status oti_request_wait_all(oti_request *const *rs, size_t n);

/* Asks a request in flight to finish now with OT_ECLOSED ("cancelled"). */
void oti_request_cancel(oti_request *r);

/*
 * The reply payload of a request that finished OT_OK: a view valid until
 * the next start or destroy.  OT_ESTATE otherwise.
 */
ot_status oti_request_reply(const oti_request *r, const uint8_t **data, size_t *len);

/* Detail text of the last failure; "" if none.  Never NULL. */
const char *oti_request_errmsg(const oti_request *r);

/* Cancels if in flight, waits, and frees.  NULL is ignored. */
void oti_request_destroy(oti_request *r);

/* ---- publish/subscribe ------------------------------------------------- */

/*
 * Publishes `len` bytes to every connected subscriber (PUB socket).  Never
 * blocks: a subscriber whose queue is full misses the message.
 */
ot_status oti_sock_publish(oti_sock *s, const void *data, size_t len, char *err);

/* A receive callback: called on an nng thread, one message at a time, in order. */
typedef void (*oti_recv_fn)(void *arg, const uint8_t *data, size_t len);

/*
 * Delivers every accepted message of a SUB socket to `fn` until the socket
 * is stopped.  OT_ESTATE if already started, OT_EINVAL wrong kind.
 */
ot_status oti_sub_start(oti_sock *s, oti_recv_fn fn, void *arg, char *err);

/*
 * Blocking receive on a SUB socket (not started with oti_sub_start): waits
 * up to `timeout_ms` for an accepted message and gives a copy in `*out`
 * (socket's allocator; ot_buf_release).  Dropped messages (authentication,
 * size, test hook) are counted and skipped.  OT_ETIMEDOUT, OT_ECLOSED,
 * OT_ESTATE.
 */
ot_status oti_sock_recv(oti_sock *s, int32_t timeout_ms, ot_buf **out, char *err);

/* ---- HTTP: serve one handler at one URL (nng's HTTP server) ------------- */

/*
 * Renders the body of a response to GET (or HEAD).  Called on nng's
 * threads, possibly several at once (one per client connection).  On OT_OK
 * `*data` holds `*len` bytes in a buffer of `*cap` bytes allocated with the
 * allocator given to oti_http_serve(), which the transport copies and then
 * frees with oti_free(a, *data, *cap); on any other status the client gets
 * "500 Internal Server Error" (and *data, if set, is freed the same way).
 */
typedef ot_status (*oti_http_fn)(void *arg, uint8_t **data, size_t *len, size_t *cap);

typedef struct oti_http oti_http;

/*
 * Serves `fn` at `url`, "http://HOST:PORT/PATH" (a missing or "/" path means
 * `default_path`), with header Content-Type `content_type`.  Servers are
 * shared by host and port, as nng shares them: several oti_http may serve
 * different paths of one port; the same path twice gives OT_EADDRINUSE.
 * PORT 0 picks a free port; `port` (may be NULL) receives the bound port.
 * Other methods than GET and HEAD get "405 Method Not Allowed", other
 * paths "404 Not Found".
 * OT_EINVAL (bad URL), OT_ENOTSUP (a scheme other than http), OT_EADDRINUSE,
 * OT_ENOMEM, other transport errors; the detail in `err`.
 */
ot_status oti_http_serve(const oti_alloc *a, const char *url, const char *default_path,
                         const char *content_type, oti_http_fn fn, void *arg, oti_http **out,
                         int *port, char *err);

/*
 * Stops serving and frees `h` (NULL is ignored): returns when no call of
 * `fn` is running, and none starts afterwards (a request arriving meanwhile
 * gets "503 Service Unavailable").  Must not be called from `fn`.
 */
void oti_http_stop(oti_http *h);

/* ---- helpers exposed for tests ------------------------------------------- */

/* HMAC-SHA256 of the concatenation of up to 3 parts (p[i], n[i]); NULL parts skipped. */
ot_status oti_hmac_sha256(const uint8_t *key, size_t keylen, const void *const p[3],
                          const size_t n[3], uint8_t mac[32]);

#endif /* OT_TRANSPORT_H */
