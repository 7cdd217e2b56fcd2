/*
 * check_metrics.c - the roles' stats in Prometheus' text format, scraped
 * over real TCP sockets with a plain socket client, and the transport's
 * small HTTP server underneath.  Tagged "net".
 *
 * The last test runs `ot ps`, `ot trainer` and `ot predictor` as processes
 * with --metrics and scrapes them from outside.
 *
 * Sockets and threads are made inside the tests (Check's forked children),
 * never in the runner.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "stats.h"
#include "tests.h"
#include "transport.h"

/* ---- a plain HTTP/1.1 client -------------------------------------------------------- */

typedef struct http_resp {
    int status;        /* 200, 404, ...; -1 when nothing parseable came back */
    char ctype[128];   /* the Content-Type header, "" if none */
    const char *body;  /* points into the caller's buffer */
    size_t body_len;
} http_resp;

/* A port that was free a moment ago (the kernel's pick for port 0). */
static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t n = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    ck_assert_int_ge(fd, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &n), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A TCP connection to 127.0.0.1:port; -errno on failure. */
static int connect_local(int port)
{
    struct sockaddr_in a;
    struct timeval tv = {10, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0), e;

    ck_assert_int_ge(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/*
 * Sends "METHOD path" and reads the whole response (the request asks the
 * server to close) into buf.  Returns 0, or -errno when the connection
 * failed; resp->status is -1 when no complete response came back.
 */
static int http_request(int port, const char *method, const char *path, char *buf, size_t cap,
                        http_resp *resp)
{
    char req[512];
    size_t len = 0, hlen;
    ssize_t got;
    const char *end, *h, *cl;
    int fd = connect_local(port), n;

    memset(resp, 0, sizeof(*resp));
    resp->status = -1;
    if (fd < 0)
        return fd;
    n = snprintf(req, sizeof(req),
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", method,
                 path, port);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return 0;
    }
    while (len + 1 < cap && (got = recv(fd, buf + len, cap - 1 - len, 0)) > 0)
        len += (size_t)got;
    close(fd);
    buf[len] = '\0';
    if (sscanf(buf, "HTTP/1.1 %d ", &resp->status) != 1) {
        resp->status = -1;
        return 0;
    }
    end = strstr(buf, "\r\n\r\n");
    if (end == NULL) {
        resp->status = -1;
        return 0;
    }
    hlen = (size_t)(end - buf) + 4;
    resp->body = buf + hlen;
    resp->body_len = len - hlen;
    for (h = strstr(buf, "\r\n"); h != NULL && h < end; h = strstr(h + 2, "\r\n")) {
        if (strncasecmp(h + 2, "Content-Type: ", 14) == 0) {
            size_t k = strcspn(h + 16, "\r");
            if (k >= sizeof(resp->ctype))
                k = sizeof(resp->ctype) - 1;
            memcpy(resp->ctype, h + 16, k);
            resp->ctype[k] = '\0';
        }
    }
    /* The body must be exactly as long as the server said (HEAD: none at all). */
    cl = strstr(buf, "Content-Length: ");
    if (cl == NULL || cl > end)
        resp->status = -1;
    else if (strcmp(method, "HEAD") == 0 ? resp->body_len != 0
                                         : strtoul(cl + 16, NULL, 10) != resp->body_len)
        resp->status = -1;
    return 0;
}

static int http_get(int port, const char *path, char *buf, size_t cap, http_resp *resp)
{
    return http_request(port, "GET", path, buf, cap, resp);
}

/* ---- the exposition format, line by line ----------------------------------------------- */

#define MAX_STATS 128

/* What a role's stats look like through its public calls. */
typedef struct role_view {
    const char *role;
    const char *names[MAX_STATS];
    size_t n;
} role_view;

static int valid_metric_name(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == ':'))
            return 0;
    }
    return 1;
}

/* A sample value: a float as Go's ParseFloat reads it, or NaN, +Inf, -Inf. */
static int parse_value(const char *s, double *v)
{
    char *end;

    if (strcmp(s, "NaN") == 0) {
        *v = NAN;
        return 1;
    }
    if (strcmp(s, "+Inf") == 0 || strcmp(s, "-Inf") == 0) {
        *v = s[0] == '+' ? INFINITY : -INFINITY;
        return 1;
    }
    if (*s == '\0' || strchr("0123456789+-.", *s) == NULL)
        return 0;
    *v = strtod(s, &end);
    return *end == '\0' && isfinite(*v);
}

/*
 * Checks a whole body: for each stat of the view, in order, exactly
 *   # HELP ot_<role>_<stat> <non-empty text>
 *   # TYPE ot_<role>_<stat> counter|gauge
 *   ot_<role>_<stat> <value>
 * and nothing else; counters are non-negative integers.  Values go to
 * `values`, types (1 counter, 0 gauge) to `is_counter` (both may be NULL).
 */
static void check_exposition(const char *body, size_t len, const role_view *v, double *values,
                             int *is_counter)
{
    char want[160], line[1024], type[16];
    const char *p = body, *end = body + len;
    size_t i, k;

    ck_assert_msg(len > 0 && body[len - 1] == '\n', "body does not end with a newline");
    for (i = 0; i < v->n; i++) {
        snprintf(want, sizeof(want), "ot_%s_%s", v->role, v->names[i]);
        ck_assert_msg(valid_metric_name(want, strlen(want)), "bad metric name %s", want);
        for (k = 0; k < 3; k++) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n;

            ck_assert_msg(nl != NULL, "body ends before %s (line %zu of its group)", want, k);
            n = (size_t)(nl - p);
            ck_assert_msg(n < sizeof(line), "line too long");
            memcpy(line, p, n);
            line[n] = '\0';
            p = nl + 1;
            ck_assert_msg(memchr(line, '\r', n) == NULL, "carriage return in \"%s\"", line);
            if (k == 0) {
                size_t w = strlen(want);
                ck_assert_msg(strncmp(line, "# HELP ", 7) == 0 && strncmp(line + 7, want, w) == 0 &&
                                  line[7 + w] == ' ' && line[8 + w] != '\0',
                              "expected \"# HELP %s <text>\", got \"%s\"", want, line);
            } else if (k == 1) {
                size_t w = strlen(want);
                ck_assert_msg(strncmp(line, "# TYPE ", 7) == 0 && strncmp(line + 7, want, w) == 0 &&
                                  line[7 + w] == ' ',
                              "expected \"# TYPE %s ...\", got \"%s\"", want, line);
                snprintf(type, sizeof(type), "%s", line + 8 + w);
                ck_assert_msg(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0,
                              "type \"%s\" in \"%s\"", type, line);
                if (is_counter != NULL)
                    is_counter[i] = strcmp(type, "counter") == 0;
            } else {
                size_t w = strlen(want);
                double val;
                ck_assert_msg(strncmp(line, want, w) == 0 && line[w] == ' ',
                              "expected \"%s <value>\", got \"%s\"", want, line);
                ck_assert_msg(parse_value(line + w + 1, &val), "bad value in \"%s\"", line);
                if (strcmp(type, "counter") == 0) {
                    ck_assert_msg(strspn(line + w + 1, "0123456789") == strlen(line + w + 1),
                                  "counter not a whole number: \"%s\"", line);
                }
                if (values != NULL)
                    values[i] = val;
            }
        }
    }
    ck_assert_msg(p == end, "unexpected lines after the last stat: \"%.80s\"", p);
}

static void view_param_server(role_view *v, const ot_param_server *ps)
{
    v->role = "param_server";
    for (v->n = 0; v->n < MAX_STATS && (v->names[v->n] = ot_param_server_stat_name(ps, v->n));
         v->n++)
        ;
    ck_assert_uint_gt(v->n, 5);
}

static void view_trainer(role_view *v, const ot_trainer *tr)
{
    v->role = "trainer";
    for (v->n = 0; v->n < MAX_STATS && (v->names[v->n] = ot_trainer_stat_name(tr, v->n)); v->n++)
        ;
    ck_assert_uint_gt(v->n, 5);
}

static void view_predictor(role_view *v, const ot_predictor *p)
{
    v->role = "predictor";
    for (v->n = 0; v->n < MAX_STATS && (v->names[v->n] = ot_predictor_stat_name(p, v->n)); v->n++)
        ;
    ck_assert_uint_gt(v->n, 5);
}

static size_t index_of(const role_view *v, const char *name)
{
    size_t i;

    for (i = 0; i < v->n; i++)
        if (strcmp(v->names[i], name) == 0)
            return i;
    ck_abort_msg("no stat %s", name);
    return 0;
}

/* ---- helpers to build roles ----------------------------------------------------------- */

typedef ot_status (*serve_fn)(void *role, const char *url);

static ot_status serve_ps(void *r, const char *url)
{
    return ot_param_server_serve_metrics(r, url);
}

static ot_status serve_tr(void *r, const char *url)
{
    return ot_trainer_serve_metrics(r, url);
}

static ot_status serve_pred(void *r, const char *url)
{
    return ot_predictor_serve_metrics(r, url);
}

/* Serves on a free port (retrying when another program took it first); returns the port. */
static int serve_free(serve_fn fn, void *role, const char *path)
{
    char url[128];
    ot_status st = OT_EADDRINUSE;
    int tries, port = 0;

    for (tries = 0; tries < 20 && st == OT_EADDRINUSE; tries++) {
        port = free_port();
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
        st = fn(role, url);
    }
    ck_assert_msg(st == OT_OK, "serve %s: %s", url, ot_status_name(st));
    return port;
}

static ot_config *small_config(void)
{
    ot_config *cfg = NULL;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_BITS, 12), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_SYNC_EVERY_EXAMPLES, 50), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_SYNC_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_RT_INTERVAL_MS, 10), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_FULL_INTERVAL_MS, 1000), OT_OK);
    return cfg;
}

static void make_example(ot_example *ex, int i)
{
    char name[32];

    ot_example_clear(ex);
    snprintf(name, sizeof(name), "item%d", i % 10);
    ck_assert_int_eq(ot_example_add_feature(ex, "i", name, 1.0f), OT_OK);
    ck_assert_int_eq(ot_example_set_label(ex, (i % 10) % 2 == 0 ? 1.0f : -1.0f), OT_OK);
}

static char buf[1 << 17];

/* ---- rendering ---------------------------------------------------------------------- */

START_TEST(test_metrics_render_exact_text)
{
    static const oti_stat_def defs[] = {
        {"frames", OTI_COUNTER, "frames seen"},
        {"ratio", OTI_GAUGE, "a back\\slash and a\nnewline"},
        {"odd-name.x", OTI_GAUGE, "not a valid name as it is"},
        {"big", OTI_COUNTER, "a large count"},
        {"nan", OTI_GAUGE, "not a number"},
        {"neg_inf", OTI_GAUGE, "minus infinity"},
    };
    const char *want =
        "# HELP ot_test_frames frames seen\n"
        "# TYPE ot_test_frames counter\n"
        "ot_test_frames 7\n"
        "# HELP ot_test_ratio a back\\\\slash and a\\nnewline\n"
        "# TYPE ot_test_ratio gauge\n"
        "ot_test_ratio 0.1\n"
        "# HELP ot_test_odd_name_x not a valid name as it is\n"
        "# TYPE ot_test_odd_name_x gauge\n"
        "ot_test_odd_name_x -2.5e-07\n"
        "# HELP ot_test_big a large count\n"
        "# TYPE ot_test_big counter\n"
        "ot_test_big 18446744073709551615\n"
        "# HELP ot_test_nan not a number\n"
        "# TYPE ot_test_nan gauge\n"
        "ot_test_nan NaN\n"
        "# HELP ot_test_neg_inf minus infinity\n"
        "# TYPE ot_test_neg_inf gauge\n"
        "ot_test_neg_inf -Inf\n";
    oti_alloc a = {NULL, NULL};
    oti_stats st;
    uint8_t *data = NULL;
    size_t len = 0, cap = 0;

    ck_assert_int_eq(oti_stats_init(&st, &a, defs, sizeof(defs) / sizeof(defs[0])), OT_OK);
    oti_stats_add(&st, 0, 7);
    oti_stats_set(&st, 1, 0.1);
    oti_stats_set(&st, 2, -2.5e-7);
    oti_stats_add(&st, 3, UINT64_MAX);
    oti_stats_set(&st, 4, NAN);
    oti_stats_set(&st, 5, -INFINITY);
    ck_assert_int_eq(oti_metrics_render(&st, "test", &a, &data, &len, &cap), OT_OK);
    ck_assert_uint_le(len, cap);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_int_eq(memcmp(data, want, len), 0);
    oti_free(&a, data, cap);
    ck_assert_int_eq(oti_metrics_render(&st, "test", &a, NULL, &len, &cap), OT_EINVAL);
    oti_stats_fini(&st, &a);
}
END_TEST

/* Gauges print the fewest digits that read back as the same double. */
START_TEST(test_metrics_render_gauges_round_trip)
{
    static const oti_stat_def defs[] = {{"g", OTI_GAUGE, "g"}};
    const double vals[] = {0.0, 1.0, -3.0, 1.0 / 3.0, 1e300, 5e-324, 123456789.125, 0.1 + 0.2};
    oti_alloc a = {NULL, NULL};
    oti_stats st;
    size_t i;

    ck_assert_int_eq(oti_stats_init(&st, &a, defs, 1), OT_OK);
    for (i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        uint8_t *data = NULL;
        size_t len = 0, cap = 0;
        const char *v;
        oti_stats_set(&st, 0, vals[i]);
        ck_assert_int_eq(oti_metrics_render(&st, "r", &a, &data, &len, &cap), OT_OK);
        ck_assert_int_eq(data[len - 1], '\n');
        data[len - 1] = '\0';
        v = strrchr((char *)data, ' ') + 1;
        ck_assert_msg(strtod(v, NULL) == vals[i], "%s does not read back as %.17g", v, vals[i]);
        ck_assert_uint_le(strlen(v), 24);
        oti_free(&a, data, cap);
    }
    oti_stats_fini(&st, &a);
}
END_TEST

/* ---- the transport's HTTP server ------------------------------------------------------- */

typedef struct hello {
    int calls;
    ot_status answer;
} hello;

static ot_status hello_cb(void *arg, uint8_t **data, size_t *len, size_t *cap)
{
    static const char text[] = "hello\n";
    hello *h = arg;
    oti_alloc a = {NULL, NULL};

    __atomic_fetch_add(&h->calls, 1, __ATOMIC_RELAXED);
    if (h->answer != OT_OK)
        return h->answer;
    *data = oti_malloc(&a, 16);
    ck_assert_ptr_nonnull(*data);
    memcpy(*data, text, sizeof(text) - 1);
    *len = sizeof(text) - 1;
    *cap = 16;
    return OT_OK;
}

START_TEST(test_metrics_http_port_zero_paths_and_stop)
{
    oti_alloc a = {NULL, NULL};
    oti_http *h1 = NULL, *h2 = NULL;
    hello one = {0, OT_OK}, two = {0, OT_EIO};
    char err[OTI_ERRMSG_LEN] = "";
    http_resp r;
    int port = -1, port2 = -1;

    ck_assert_int_eq(oti_http_serve(&a, "http://127.0.0.1:0", "/hello", "text/plain", hello_cb,
                                    &one, &h1, &port, err),
                     OT_OK);
    ck_assert_int_gt(port, 0);

    /* Another path on the same port shares nng's server. */
    {
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/broken", port);
        ck_assert_int_eq(oti_http_serve(&a, url, NULL, "text/plain", hello_cb, &two, &h2, &port2,
                                        err),
                         OT_OK);
        ck_assert_int_eq(port2, port);
        /* The same path twice is refused. */
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/hello", port);
        {
            oti_http *h3 = NULL;
            ck_assert_int_eq(oti_http_serve(&a, url, NULL, "text/plain", hello_cb, &one, &h3,
                                            NULL, err),
                             OT_EADDRINUSE);
            ck_assert_ptr_null(h3);
            ck_assert_ptr_nonnull(strstr(err, "/hello"));
        }
    }

    ck_assert_int_eq(http_get(port, "/hello", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.ctype, "text/plain");
    ck_assert_uint_eq(r.body_len, 6);
    ck_assert_int_eq(memcmp(r.body, "hello\n", 6), 0);
    ck_assert_int_eq(http_request(port, "HEAD", "/hello", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 200); /* HEAD: the headers, no body */
    ck_assert_int_eq(http_get(port, "/broken", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 500);
    ck_assert_int_eq(http_get(port, "/nothing", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(http_request(port, "POST", "/hello", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 405);
    ck_assert_int_eq(__atomic_load_n(&one.calls, __ATOMIC_RELAXED), 2);
    ck_assert_int_eq(__atomic_load_n(&two.calls, __ATOMIC_RELAXED), 1);

    /* Stopping one path leaves the other served. */
    oti_http_stop(h2);
    ck_assert_int_eq(http_get(port, "/broken", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(http_get(port, "/hello", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 200);
    /* Stopping the last one closes the port. */
    oti_http_stop(h1);
    ck_assert_int_eq(http_get(port, "/hello", buf, sizeof(buf), &r), -ECONNREFUSED);
    oti_http_stop(NULL);
}
END_TEST

START_TEST(test_metrics_http_refuses_bad_urls)
{
    oti_alloc a = {NULL, NULL};
    oti_http *h = NULL;
    hello one = {0, OT_OK};
    char err[OTI_ERRMSG_LEN] = "";

    ck_assert_int_eq(oti_http_serve(&a, "not a url", NULL, "text/plain", hello_cb, &one, &h, NULL,
                                    err),
                     OT_EINVAL);
    ck_assert_int_eq(oti_http_serve(&a, "https://127.0.0.1:0/", NULL, "text/plain", hello_cb, &one,
                                    &h, NULL, err),
                     OT_ENOTSUP);
    ck_assert_int_eq(oti_http_serve(&a, "tcp://127.0.0.1:0", NULL, "text/plain", hello_cb, &one,
                                    &h, NULL, err),
                     OT_ENOTSUP);
    ck_assert_int_eq(oti_http_serve(&a, NULL, NULL, "text/plain", hello_cb, &one, &h, NULL, err),
                     OT_EINVAL);
    ck_assert_int_eq(oti_http_serve(&a, "http://127.0.0.1:0/", NULL, "text/plain", NULL, &one, &h,
                                    NULL, err),
                     OT_EINVAL);
    ck_assert_ptr_null(h);
}
END_TEST

/* ---- the three roles ---------------------------------------------------------------------- */

START_TEST(test_metrics_param_server_exposes_every_stat)
{
    ot_config *cfg = small_config();
    ot_param_server *ps = NULL;
    role_view v;
    double values[MAX_STATS], got;
    int is_counter[MAX_STATS], port;
    http_resp r;
    size_t i;

    ck_assert_int_eq(ot_param_server_create(cfg, &ps), OT_OK);
    /* Before it even listens: the stats exist from create on. */
    port = serve_free(serve_ps, ps, "");
    view_param_server(&v, ps);
    ck_assert_int_eq(http_get(port, "/metrics", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    check_exposition(r.body, r.body_len, &v, values, is_counter);
    for (i = 0; i < v.n; i++) {
        ck_assert_int_eq(ot_param_server_stat(ps, v.names[i], &got), OT_OK);
        ck_assert_msg(values[i] == got, "%s: served %g, stat %g", v.names[i], values[i], got);
    }
    ck_assert_int_eq(is_counter[index_of(&v, "deltas_in")], 1);
    ck_assert_int_eq(is_counter[index_of(&v, "version")], 0);
    /* Only the configured path is served. */
    ck_assert_int_eq(http_get(port, "/", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 404);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_metrics_cluster_roles_share_a_port)
{
    ot_config *cfg = small_config();
    ot_param_server *ps = NULL;
    ot_trainer *tr = NULL;
    ot_predictor *pred = NULL;
    ot_example *ex = NULL;
    role_view vps, vtr, vpr;
    double values[MAX_STATS], got;
    char url[128];
    http_resp r;
    int port, i;
    float p;

    ck_assert_int_eq(ot_param_server_create(cfg, &ps), OT_OK);
    ck_assert_int_eq(ot_param_server_listen(ps, "inproc://metrics-t", "inproc://metrics-p"), OT_OK);
    ck_assert_int_eq(ot_param_server_start(ps), OT_OK);
    ck_assert_int_eq(ot_trainer_create(cfg, &tr), OT_OK);
    ck_assert_int_eq(ot_trainer_connect(tr, "inproc://metrics-t"), OT_OK);
    ck_assert_int_eq(ot_predictor_create(cfg, &pred), OT_OK);
    ck_assert_int_eq(ot_predictor_subscribe(pred, "inproc://metrics-p", "inproc://metrics-t"),
                     OT_OK);

    /* One port, three paths. */
    port = serve_free(serve_ps, ps, "/ps");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/trainer", port);
    ck_assert_int_eq(ot_trainer_serve_metrics(tr, url), OT_OK);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/predictor", port);
    ck_assert_int_eq(ot_predictor_serve_metrics(pred, url), OT_OK);
    /* A path already served on the port, by another role. */
    ck_assert_int_eq(ot_trainer_serve_metrics(tr, url), OT_ESTATE); /* this one already serves */
    {
        ot_trainer *tr2 = NULL;
        ck_assert_int_eq(ot_trainer_create(cfg, &tr2), OT_OK);
        ck_assert_int_eq(ot_trainer_serve_metrics(tr2, url), OT_EADDRINUSE);
        ck_assert_ptr_nonnull(strstr(ot_trainer_errmsg(tr2), "/predictor"));
        ot_trainer_destroy(tr2); /* leaves the others served */
    }

    ck_assert_int_eq(ot_example_create(NULL, &ex), OT_OK);
    for (i = 0; i < 500; i++) {
        make_example(ex, i);
        ck_assert_int_eq(ot_trainer_learn(tr, ex, NULL), OT_OK);
    }
    ck_assert_int_eq(ot_trainer_sync(tr), OT_OK);
    ck_assert_int_eq(ot_predictor_wait_version(pred, ot_trainer_version(tr), 10000), OT_OK);
    for (i = 0; i < 7; i++)
        ck_assert_int_eq(ot_predictor_predict(pred, ex, &p), OT_OK);

    /* The trainer's stats do not move unless the trainer is called: compare all. */
    view_trainer(&vtr, tr);
    ck_assert_int_eq(http_get(port, "/trainer", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 200);
    check_exposition(r.body, r.body_len, &vtr, values, NULL);
    for (i = 0; i < (int)vtr.n; i++) {
        ck_assert_int_eq(ot_trainer_stat(tr, vtr.names[i], &got), OT_OK);
        ck_assert_msg(values[i] == got, "%s: served %g, stat %g", vtr.names[i], values[i], got);
    }
    ck_assert_double_eq(values[index_of(&vtr, "examples")], 500.0);
    ck_assert_double_ge(values[index_of(&vtr, "deltas_out")], 10.0);

    /* The server: what the trainer sent is in; the publisher keeps counting. */
    view_param_server(&vps, ps);
    ck_assert_int_eq(http_get(port, "/ps", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 200);
    check_exposition(r.body, r.body_len, &vps, values, NULL);
    ck_assert_int_eq(ot_param_server_stat(ps, "deltas_in", &got), OT_OK);
    ck_assert_double_eq(values[index_of(&vps, "deltas_in")], got);
    ck_assert_double_eq(values[index_of(&vps, "version")], (double)ot_trainer_version(tr));

    /* The predictor: its predictions and the version it serves. */
    view_predictor(&vpr, pred);
    ck_assert_int_eq(http_get(port, "/predictor", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 200);
    check_exposition(r.body, r.body_len, &vpr, values, NULL);
    ck_assert_double_eq(values[index_of(&vpr, "predictions")], 7.0);
    ck_assert_double_ge(values[index_of(&vpr, "version")], (double)ot_trainer_version(tr));

    /* A stopped predictor keeps serving its stats until destroyed. */
    ck_assert_int_eq(ot_predictor_stop(pred), OT_OK);
    ck_assert_int_eq(http_get(port, "/predictor", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 200);
    ot_predictor_destroy(pred);
    ck_assert_int_eq(http_get(port, "/predictor", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 404);
    ot_trainer_destroy(tr);
    ck_assert_int_eq(http_get(port, "/ps", buf, sizeof(buf), &r), 0);
    ck_assert_int_eq(r.status, 200);
    ot_param_server_destroy(ps);
    ck_assert_int_eq(http_get(port, "/ps", buf, sizeof(buf), &r), -ECONNREFUSED);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_metrics_serve_errors)
{
    ot_config *cfg = small_config();
    ot_trainer *tr = NULL;
    ot_predictor *pred = NULL;
    struct sockaddr_in a;
    socklen_t n = sizeof(a);
    char url[128];
    int fd, port;

    ck_assert_int_eq(ot_param_server_serve_metrics(NULL, "http://127.0.0.1:1/"), OT_EINVAL);
    ck_assert_int_eq(ot_trainer_serve_metrics(NULL, "http://127.0.0.1:1/"), OT_EINVAL);
    ck_assert_int_eq(ot_predictor_serve_metrics(NULL, "http://127.0.0.1:1/"), OT_EINVAL);
    ck_assert_int_eq(ot_trainer_create(cfg, &tr), OT_OK);
    ck_assert_int_eq(ot_predictor_create(cfg, &pred), OT_OK);
    ck_assert_int_eq(ot_trainer_serve_metrics(tr, NULL), OT_EINVAL);
    ck_assert_int_eq(ot_trainer_serve_metrics(tr, "http://[bad"), OT_EINVAL);
    ck_assert_int_eq(ot_predictor_serve_metrics(pred, "https://127.0.0.1:9/metrics"), OT_ENOTSUP);
    ck_assert_ptr_nonnull(strstr(ot_predictor_errmsg(pred), "https://127.0.0.1:9/metrics"));

    /* A port another program listens on. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &n), 0);
    port = ntohs(a.sin_port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    ck_assert_int_eq(ot_trainer_serve_metrics(tr, url), OT_EADDRINUSE);
    ck_assert_str_ne(ot_trainer_errmsg(tr), "");
    close(fd);
    /* The failures left nothing behind: serving works afterwards. */
    serve_free(serve_tr, tr, "");
    ck_assert_int_eq(ot_trainer_serve_metrics(tr, "http://127.0.0.1:1/"), OT_ESTATE);
    serve_free(serve_pred, pred, "/p");
    ot_predictor_destroy(pred);
    ot_trainer_destroy(tr);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- scraping while the trainer learns, and while it is destroyed ----------------------- */

typedef struct scraper {
    int port;
    role_view view;
    size_t examples_idx;
    int ok, refused, unavailable; /* responses seen */
    double last_examples;
    int done; /* set by the main thread */
    char failure[256];
    char buf[1 << 16];
} scraper;

static void *scrape_loop(void *arg)
{
    scraper *s = arg;
    http_resp r;
    double values[MAX_STATS];

    while (s->failure[0] == '\0') {
        int rc = http_get(s->port, "/metrics", s->buf, sizeof(s->buf), &r);
        if (rc == -ECONNREFUSED) {
            s->refused++;
            if (__atomic_load_n(&s->done, __ATOMIC_ACQUIRE))
                break;
            continue;
        }
        if (rc < 0 || r.status == -1) {
            /* A connection reset while the server closes: only at the end. */
            if (__atomic_load_n(&s->done, __ATOMIC_ACQUIRE))
                continue;
            snprintf(s->failure, sizeof(s->failure), "scrape failed (%d) while the trainer ran", rc);
            break;
        }
        /* While the trainer is destroyed: 503 (stopping), or 404 once its
         * path is removed and before the port closes (docs/metrics.md). */
        if (r.status == 503 ||
            (r.status == 404 && __atomic_load_n(&s->done, __ATOMIC_ACQUIRE))) {
            s->unavailable++;
            continue;
        }
        if (r.status != 200) {
            snprintf(s->failure, sizeof(s->failure), "status %d", r.status);
            break;
        }
        /* check_exposition() asserts; a failed assertion in this thread ends
         * the test process, which Check reports as a failure too. */
        check_exposition(r.body, r.body_len, &s->view, values, NULL);
        if (values[s->examples_idx] < s->last_examples) {
            snprintf(s->failure, sizeof(s->failure), "examples went back from %g to %g",
                     s->last_examples, values[s->examples_idx]);
            break;
        }
        s->last_examples = values[s->examples_idx];
        s->ok++;
    }
    return NULL;
}

START_TEST(test_metrics_trainer_scraped_while_learning_and_destroyed)
{
    ot_config *cfg = small_config();
    ot_param_server *ps = NULL;
    ot_trainer *tr = NULL;
    ot_example *ex = NULL;
    static scraper s;
    pthread_t th;
    int i, ok_before;

    ck_assert_int_eq(ot_param_server_create(cfg, &ps), OT_OK);
    ck_assert_int_eq(ot_param_server_listen(ps, "inproc://metrics-scrape", NULL), OT_OK);
    ck_assert_int_eq(ot_param_server_start(ps), OT_OK);
    ck_assert_int_eq(ot_trainer_create(cfg, &tr), OT_OK);
    ck_assert_int_eq(ot_trainer_connect(tr, "inproc://metrics-scrape"), OT_OK);
    memset(&s, 0, sizeof(s));
    s.port = serve_free(serve_tr, tr, "");
    view_trainer(&s.view, tr);
    s.examples_idx = index_of(&s.view, "examples");
    ck_assert_int_eq(pthread_create(&th, NULL, scrape_loop, &s), 0);

    ck_assert_int_eq(ot_example_create(NULL, &ex), OT_OK);
    for (i = 0; i < 20000 && s.failure[0] == '\0'; i++) {
        make_example(ex, i);
        ck_assert_int_eq(ot_trainer_learn(tr, ex, NULL), OT_OK);
        if (i == 10000) {
            /* make sure some scrapes landed while learning */
            int waited = 0;
            struct timespec ms = {0, 1000000};
            while (__atomic_load_n(&s.ok, __ATOMIC_RELAXED) < 3 && waited++ < 5000)
                nanosleep(&ms, NULL);
        }
    }
    ok_before = __atomic_load_n(&s.ok, __ATOMIC_RELAXED);
    __atomic_store_n(&s.done, 1, __ATOMIC_RELEASE);
    ot_trainer_destroy(tr); /* while the scraper keeps asking */
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(s.failure[0] == '\0', "%s", s.failure);
    ck_assert_int_ge(ok_before, 3);
    ck_assert_int_ge(s.refused, 1); /* the port closed with the trainer */
    ck_assert_double_le(s.last_examples, 20000.0);
    ot_example_destroy(ex);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- ot ps|trainer|predictor --metrics: role processes scraped from outside ----------- */

typedef struct role_proc {
    pid_t pid;
    int in_fd;       /* the write end of its standard input, or -1 (it reads /dev/null) */
    int port;        /* where --metrics serves */
    char log[512];   /* its standard output and error */
} role_proc;

/* The names a body's "# HELP ot_<role>_<name> ..." lines give, as a view. */
static void view_from_body(role_view *v, const char *role, const char *body, size_t len,
                           char names[][64])
{
    char prefix[64];
    const char *p = body, *end = body + len;
    size_t pl = (size_t)snprintf(prefix, sizeof(prefix), "# HELP ot_%s_", role);

    v->role = role;
    v->n = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break;
        if ((size_t)(nl - p) > pl && strncmp(p, prefix, pl) == 0) {
            size_t k = strcspn(p + pl, " \n");
            ck_assert_uint_lt(k, 64);
            ck_assert_uint_lt(v->n, MAX_STATS);
            memcpy(names[v->n], p + pl, k);
            names[v->n][k] = '\0';
            v->names[v->n] = names[v->n];
            v->n++;
        }
        p = nl + 1;
    }
}

/* The whole text of a role's log, for failure messages (a static buffer). */
static const char *proc_log(const role_proc *rp)
{
    static char text[4096];
    FILE *f = fopen(rp->log, "r");
    size_t n = 0;

    text[0] = '\0';
    if (f != NULL) {
        n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
    }
    text[n] = '\0';
    return text;
}

/*
 * Starts `ot ARGS... --metrics http://127.0.0.1:PORT/metrics` on a free port
 * and waits until the port answers; retries with another port when the
 * process could not bind it.  with_stdin: give it a pipe as standard input.
 */
static void start_role(role_proc *rp, const char *logpath, int with_stdin, const char *const *args)
{
    char ot[512], url[128];
    const char *argv[32];
    int tries, n = 0, k, fds[2] = {-1, -1};

    snprintf(ot, sizeof(ot), "%s/ot", test_build_dir());
    ck_assert_msg(access(ot, X_OK) == 0, "%s is not built", ot);
    snprintf(rp->log, sizeof(rp->log), "%s", logpath);
    for (tries = 0; tries < 5; tries++) {
        int status, waited;
        pid_t pid;

        rp->port = free_port();
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", rp->port);
        n = 0;
        argv[n++] = ot;
        for (k = 0; args[k] != NULL && n < 28; k++)
            argv[n++] = args[k];
        argv[n++] = "--metrics";
        argv[n++] = url;
        argv[n] = NULL;
        if (with_stdin) {
            ck_assert_int_eq(pipe(fds), 0);
            /* Only this process may hold the write end: the roles started
             * later must not keep the trainer's input open. */
            ck_assert_int_eq(fcntl(fds[1], F_SETFD, FD_CLOEXEC), 0);
        }
        fflush(NULL);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            int in = with_stdin ? fds[0] : open("/dev/null", O_RDONLY);
            int out = open(rp->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
                _exit(126);
            if (with_stdin)
                close(fds[1]);
            execv(ot, (char *const *)argv);
            _exit(127);
        }
        if (with_stdin)
            close(fds[0]);
        rp->pid = pid;
        rp->in_fd = with_stdin ? fds[1] : -1;
        /* Until the port answers, or the process ends (for up to 30 s). */
        for (waited = 0; waited < 600; waited++) {
            int fd = connect_local(rp->port);
            struct timespec ms50 = {0, 50000000};
            if (fd >= 0) {
                close(fd);
                return;
            }
            if (waitpid(pid, &status, WNOHANG) == pid) {
                rp->pid = -1;
                break;
            }
            nanosleep(&ms50, NULL);
        }
        if (rp->pid > 0) {
            kill(rp->pid, SIGKILL);
            waitpid(rp->pid, &status, 0);
            ck_abort_msg("%s: port %d never answered:\n%s", argv[1], rp->port, proc_log(rp));
        }
        if (rp->in_fd >= 0)
            close(rp->in_fd);
        ck_assert_msg(strstr(proc_log(rp), "OT_EADDRINUSE") != NULL, "ot %s exited:\n%s",
                      argv[1], proc_log(rp));
    }
    ck_abort_msg("no free port for %s after 5 tries", argv[1]);
}

/* Scrapes a role's /metrics, checks the whole format, returns the value of stat `name`. */
static double scrape_role(const role_proc *rp, const char *role, const char *name,
                          int want_counter)
{
    static char names[MAX_STATS][64];
    double values[MAX_STATS];
    int is_counter[MAX_STATS];
    role_view v;
    http_resp r;
    size_t i;

    ck_assert_int_eq(http_get(rp->port, "/metrics", buf, sizeof(buf), &r), 0);
    ck_assert_msg(r.status == 200, "ot %s: status %d:\n%s", role, r.status, proc_log(rp));
    ck_assert_str_eq(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    view_from_body(&v, role, r.body, r.body_len, names);
    ck_assert_uint_gt(v.n, 5);
    /* Exactly HELP, TYPE, sample for each name, and nothing else. */
    check_exposition(r.body, r.body_len, &v, values, is_counter);
    i = index_of(&v, name);
    ck_assert_int_eq(is_counter[i], want_counter);
    return values[i];
}

/* Polls stat `name` until it reaches at least `want` (for up to 30 s); returns the last value. */
static double scrape_until(const role_proc *rp, const char *role, const char *name,
                           int want_counter, double want)
{
    struct timespec ms50 = {0, 50000000};
    double v = 0.0;
    int i;

    for (i = 0; i < 600; i++) {
        v = scrape_role(rp, role, name, want_counter);
        if (v >= want)
            break;
        nanosleep(&ms50, NULL);
    }
    return v;
}

/* Waits for the process to end on its own or after `sig` (0: none); returns its exit status. */
static int stop_role(role_proc *rp, int sig)
{
    int status = 0;

    if (sig != 0)
        ck_assert_int_eq(kill(rp->pid, sig), 0);
    if (rp->in_fd >= 0) {
        close(rp->in_fd);
        rp->in_fd = -1;
    }
    ck_assert_int_eq(waitpid(rp->pid, &status, 0), rp->pid);
    rp->pid = -1;
    ck_assert_msg(WIFEXITED(status), "killed by signal %d:\n%s",
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0, proc_log(rp));
    return WEXITSTATUS(status);
}

START_TEST(test_metrics_cli_roles_serve_metrics_until_stopped)
{
    char dir[256], tu[320], pu[320], lps[320], ltr[320], lpr[320], line[64];
    const char *tmp = getenv("TMPDIR");
    role_proc ps, tr, pr;
    double v;
    int i;

    snprintf(dir, sizeof(dir), "%s/ot-metrics-cli.XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(tu, sizeof(tu), "ipc://%s/t", dir);
    snprintf(pu, sizeof(pu), "ipc://%s/p", dir);
    snprintf(lps, sizeof(lps), "%s/ps.log", dir);
    snprintf(ltr, sizeof(ltr), "%s/trainer.log", dir);
    snprintf(lpr, sizeof(lpr), "%s/predictor.log", dir);

    {
        const char *args[] = {"ps", "--trainers", tu, "--predictors", pu, "-b", "12", NULL};
        start_role(&ps, lps, 0, args);
    }
    ck_assert_double_eq(scrape_role(&ps, "param_server", "deltas_in", 1), 0.0);
    ck_assert_double_eq(scrape_role(&ps, "param_server", "version", 0), 0.0);
    {
        const char *args[] = {"trainer", "--ps", tu, "-b", "12", "-O", "sync_every_examples=10",
                              "-O", "sync_interval_ms=0", NULL};
        start_role(&tr, ltr, 1, args);
    }
    {
        const char *args[] = {"predictor", "--ps", tu, "--sub", pu, "-b", "12", "-O",
                              "rt_interval_ms=10", NULL};
        start_role(&pr, lpr, 0, args);
    }
    /* 100 examples through the trainer's standard input. */
    for (i = 0; i < 100; i++) {
        int n = snprintf(line, sizeof(line), "%d |user u%d |item i%d\n", i % 2 ? 1 : -1, i % 7,
                         i % 10);
        ck_assert_int_eq(write(tr.in_fd, line, (size_t)n), n);
    }
    v = scrape_until(&tr, "trainer", "examples", 1, 100.0);
    ck_assert_msg(v == 100.0, "trainer examples %g:\n%s", v, proc_log(&tr));
    /* ten syncs of ten examples: the server counts them */
    v = scrape_until(&ps, "param_server", "deltas_in", 1, 10.0);
    ck_assert_msg(v >= 10.0, "server deltas_in %g:\n%s", v, proc_log(&ps));
    v = scrape_until(&pr, "predictor", "version", 0, 1.0);
    ck_assert_msg(v >= 1.0, "predictor version %g:\n%s", v, proc_log(&pr));

    /* The trainer ends with its input; the others with SIGTERM. All cleanly. */
    ck_assert_int_eq(stop_role(&tr, 0), 0);
    ck_assert_ptr_nonnull(strstr(proc_log(&tr), "lines=100 bad=0"));
    ck_assert_int_eq(stop_role(&pr, SIGTERM), 0);
    ck_assert_int_eq(stop_role(&ps, SIGTERM), 0);
    ck_assert_ptr_nonnull(strstr(proc_log(&ps), "stopped"));
    ck_assert_ptr_nonnull(strstr(proc_log(&pr), "stopped"));
    /* Their ports closed with them. */
    ck_assert_int_eq(http_get(ps.port, "/metrics", buf, sizeof(buf), &(http_resp){0}),
                     -ECONNREFUSED);
    ck_assert_int_eq(http_get(tr.port, "/metrics", buf, sizeof(buf), &(http_resp){0}),
                     -ECONNREFUSED);
    unlink(lps);
    unlink(ltr);
    unlink(lpr);
    rmdir(dir);
}
END_TEST

Suite *suite_metrics(void)
{
    Suite *s = suite_create("metrics");
    TCase *render = tcase_create("render");
    TCase *tc = tcase_create("http");
    TCase *cli = tcase_create("cli");

    tcase_add_test(render, test_metrics_render_exact_text);
    tcase_add_test(render, test_metrics_render_gauges_round_trip);
    suite_add_tcase(s, render);

    tcase_set_tags(tc, "net");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_metrics_http_port_zero_paths_and_stop);
    tcase_add_test(tc, test_metrics_http_refuses_bad_urls);
    tcase_add_test(tc, test_metrics_param_server_exposes_every_stat);
    tcase_add_test(tc, test_metrics_cluster_roles_share_a_port);
    tcase_add_test(tc, test_metrics_serve_errors);
    tcase_add_test(tc, test_metrics_trainer_scraped_while_learning_and_destroyed);
    suite_add_tcase(s, tc);

    /* The ot program's --metrics flag, with the roles as processes. */
    tcase_set_tags(cli, "net");
    tcase_set_timeout(cli, 180);
    tcase_add_test(cli, test_metrics_cli_roles_serve_metrics_until_stopped);
    suite_add_tcase(s, cli);
    return s;
}
