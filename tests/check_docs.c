/*
 * check_docs.c - what users read and run outside the C API: the man page
 * against `ot`'s own help, the header's comments, the Python binding's tests
 * (tag "python"), the C++ example (tag "examples"), an installed copy
 * used through pkg-config (tag "install"), and the option names
 * docs/tuning.md uses.
 *
 * These tests run programs (ot, python3, the compiler, make) from the source
 * tree's root, as `make check` does; the build directory is
 * test_build_dir().  No nng socket or thread is made in the test process.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests.h"

/* Sanitizer builds need their runtime in programs that load our library. */
#if defined(__SANITIZE_ADDRESS__)
#define DOCS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DOCS_ASAN 1
#endif
#endif
#ifndef DOCS_ASAN
#define DOCS_ASAN 0
#endif

#define MAN_PAGE "docs/ot.1"

/* Given by the Makefile; defaults for a build that does not. */
#ifndef OT_CFLAGS
#define OT_CFLAGS "-O2 -g"
#endif
#ifndef OT_SAN_FLAGS
#define OT_SAN_FLAGS ""
#endif

/* ---- helpers -------------------------------------------------------------------------- */

/* Runs a shell command, its output (stdout and stderr) into a new string. */
static char *run_capture(const char *cmd, int *status)
{
    char *full, *out;
    size_t len = 0, cap = 1 << 16, got;
    FILE *p;
    int st;

    full = malloc(strlen(cmd) + 16);
    ck_assert_ptr_nonnull(full);
    sprintf(full, "(%s) 2>&1", cmd);
    fflush(NULL);
    p = popen(full, "r");
    free(full);
    ck_assert_msg(p != NULL, "cannot run %s", cmd);
    out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    while ((got = fread(out + len, 1, cap - 1 - len, p)) > 0) {
        len += got;
        if (cap - 1 - len == 0) {
            cap *= 2;
            out = realloc(out, cap);
            ck_assert_ptr_nonnull(out);
        }
    }
    out[len] = '\0';
    st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return out;
}

/* The last `n` bytes of a text, for failure messages. */
static const char *tail(const char *s, size_t n)
{
    size_t len = strlen(s);
    return len > n ? s + len - n : s;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    ck_assert_msg(f != NULL, "cannot open %s (run the tests from the source root)", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void ot_path(char *buf, size_t n)
{
    snprintf(buf, n, "%s/ot", test_build_dir());
    ck_assert_msg(access(buf, X_OK) == 0, "%s is not built", buf);
}

/* The absolute path of the build directory. */
static void build_dir_abs(char *buf, size_t n)
{
    char cwd[PATH_MAX];
    const char *b = test_build_dir();

    ck_assert_msg(access(b, R_OK) == 0, "no build directory %s", b);
    if (b[0] == '/') {
        snprintf(buf, n, "%s", b);
        return;
    }
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    ck_assert_int_lt(snprintf(buf, n, "%s/%s", cwd, b), (int)n);
}

/* ---- the man page ---------------------------------------------------------------------- */

/* The man page's text with "\-" read as "-" and font changes removed. */
static char *man_plain(void)
{
    char *src = read_text(MAN_PAGE), *dst = src, *p = src;

    while (*p != '\0') {
        if (p[0] == '\\' && p[1] == '-') {
            *dst++ = '-';
            p += 2;
        } else if (p[0] == '\\' && p[1] == 'f' && p[2] != '\0') {
            p += 3; /* \fB, \fI, \fR, \fP */
        } else {
            *dst++ = *p++;
        }
    }
    *dst = '\0';
    return src;
}

static int flag_char(char c);

/*
 * The text of every subsection whose heading (a ".SS" line) names "ot cmd"
 * as whole words: the command's own subsection, and any that several
 * commands share (".SS \"ot ps, ot trainer: common flags\"").  A new
 * string; NULL if there is none.
 */
static char *man_sections(const char *man, const char *cmd)
{
    char name[128], *out;
    const char *line = man;
    size_t nl = (size_t)snprintf(name, sizeof(name), "ot %.100s", cmd), len = 0;
    int in = 0, found = 0;

    out = malloc(strlen(man) + 1);
    ck_assert_ptr_nonnull(out);
    while (*line != '\0') {
        const char *eol = strchr(line, '\n');
        size_t n = eol != NULL ? (size_t)(eol - line + 1) : strlen(line);
        if (strncmp(line, ".SS", 3) == 0 || strncmp(line, ".SH", 3) == 0) {
            const char *h = line;
            in = 0;
            if (line[2] == 'S') {
                while ((h = strstr(h, name)) != NULL && h < line + n) {
                    if (!flag_char(h[-1]) && !flag_char(h[nl])) {
                        in = found = 1;
                        break;
                    }
                    h += nl;
                }
            }
        }
        if (in) {
            memcpy(out + len, line, n);
            len += n;
        }
        line += n;
    }
    out[len] = '\0';
    if (!found) {
        free(out);
        return NULL;
    }
    return out;
}

static int flag_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_';
}

/* Whether `flag` appears as a whole word in s[0..len). */
static int has_word(const char *s, size_t len, const char *flag)
{
    size_t fl = strlen(flag), i;

    for (i = 0; i + fl <= len; i++) {
        if (memcmp(s + i, flag, fl) == 0 && (i == 0 || !flag_char(s[i - 1])) &&
            (i + fl == len || !flag_char(s[i + fl])))
            return 1;
    }
    return 0;
}

/*
 * The flags a help text names: every word that starts with '-' or "--" and
 * a letter, at the start of a line or after a space, '(', '[', ',', '|' or
 * '"' (so "-1", "non-finite" and "+-2" are not flags, "[-d FILE]" and
 * "(\"--passes=3\")" are).  Duplicates are kept; the caller checks each.
 */
static size_t help_flags(const char *help, char flags[][64], size_t max)
{
    const char *p;
    size_t n = 0;

    for (p = help; *p != '\0'; p++) {
        const char *q = p;
        size_t k = 0;
        if (*p != '-' || (p > help && strchr(" \t\n([,|\"", p[-1]) == NULL))
            continue;
        q = p[1] == '-' ? p + 2 : p + 1;
        if (!isalpha((unsigned char)*q))
            continue;
        while (flag_char(p[k]) && k < 63)
            k++;
        while (k > 0 && p[k - 1] == '-') /* a trailing '-' is punctuation */
            k--;
        if (n < max) {
            memcpy(flags[n], p, k);
            flags[n][k] = '\0';
            n++;
        }
        p += k - 1;
    }
    return n;
}

/* The commands `ot --help` lists: the first word of each line under "commands:". */
static size_t ot_commands(const char *help, char cmds[][32], size_t max)
{
    const char *p = strstr(help, "commands:\n");
    size_t n = 0;

    ck_assert_msg(p != NULL, "no \"commands:\" in ot --help:\n%s", help);
    p += strlen("commands:\n");
    while (*p == ' ' && n < max) {
        size_t k;
        while (*p == ' ')
            p++;
        k = strcspn(p, " \n");
        ck_assert_uint_lt(k, 32);
        memcpy(cmds[n], p, k);
        cmds[n][k] = '\0';
        n++;
        p = strchr(p, '\n');
        if (p == NULL)
            break;
        p++;
    }
    return n;
}

START_TEST(test_docs_manpage_lists_every_command_and_flag)
{
    char ot[512], cmd[1024], cmds[64][32], flags[256][64];
    char *help, *man = man_plain(), *sub, *sec;
    size_t ncmd, c, nflags, f, total = 0, len;
    int st;

    ot_path(ot, sizeof(ot));
    snprintf(cmd, sizeof(cmd), "%s --help", ot);
    help = run_capture(cmd, &st);
    ck_assert_msg(st == 0, "ot --help exited with %d", st);
    ncmd = ot_commands(help, cmds, 64);
    ck_assert_uint_ge(ncmd, 5);
    for (c = 0; c < ncmd; c++) {
        sec = man_sections(man, cmds[c]);
        ck_assert_msg(sec != NULL,
                      MAN_PAGE " has no subsection .SS \"ot %s\" for a command of ot --help",
                      cmds[c]);
        len = strlen(sec);
        snprintf(cmd, sizeof(cmd), "%s %.31s --help", ot, cmds[c]);
        sub = run_capture(cmd, &st);
        ck_assert_msg(st == 0, "%s exited with %d:\n%s", cmd, st, tail(sub, 1000));
        nflags = help_flags(sub, flags, 256);
        for (f = 0; f < nflags; f++) {
            ck_assert_msg(has_word(sec, len, flags[f]),
                          "ot %s --help prints flag %s, which " MAN_PAGE
                          " does not mention under \"ot %s\"",
                          cmds[c], flags[f], cmds[c]);
        }
        total += nflags;
        free(sub);
        free(sec);
    }
    ck_assert_uint_ge(total, 40); /* the parsing found the flags at all */
    free(help);
    free(man);
}
END_TEST

/* The flag parser itself, on a made-up help text. */
START_TEST(test_docs_help_flag_parsing)
{
    char flags[16][64];
    const char *help = "usage: x [-d FILE|-] --shard I/N\n"
                       "Some text non-finite, +-2S, (\"--passes=3\").\n"
                       "  -n, --examples N         count (default -1; see -q)\n"
                       "  --url-base URL           NAME + -trainers\n";
    size_t n = help_flags(help, flags, 16);

    ck_assert_uint_eq(n, 8);
    ck_assert_str_eq(flags[0], "-d");
    ck_assert_str_eq(flags[1], "--shard");
    ck_assert_str_eq(flags[2], "--passes");
    ck_assert_str_eq(flags[3], "-n");
    ck_assert_str_eq(flags[4], "--examples");
    ck_assert_str_eq(flags[5], "-q");
    ck_assert_str_eq(flags[6], "--url-base");
    ck_assert_str_eq(flags[7], "-trainers");
    ck_assert(has_word("a --url-base b", 14, "--url-base"));
    ck_assert(!has_word("a --url-base-x b", 16, "--url-base"));
    ck_assert(!has_word("--seeds", 7, "--seed"));
}
END_TEST

START_TEST(test_docs_manpage_renders_without_warnings)
{
    char *out;
    int st;

    if (system("command -v groff >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_docs_manpage_renders_without_warnings: no groff, checked nothing\n");
        return;
    }
    out = run_capture("groff -t -man -ww -z " MAN_PAGE, &st);
    ck_assert_msg(st == 0 && out[0] == '\0', "groff warns about " MAN_PAGE ":\n%s", out);
    free(out);
}
END_TEST

/* Every OT_API declaration follows a comment: its documentation. */
START_TEST(test_docs_header_comments_every_public_declaration)
{
    char *h = read_text("include/onlinetrain.h");
    const char *line = h, *prev_end = NULL;
    int decls = 0;

    while (*line != '\0') {
        const char *eol = strchr(line, '\n');
        size_t n = eol != NULL ? (size_t)(eol - line) : strlen(line);
        const char *p = line;
        while (p < line + n && (*p == ' ' || *p == '\t'))
            p++;
        if (strncmp(p, "OT_API ", 7) == 0) {
            decls++;
            ck_assert_msg(prev_end != NULL && prev_end[-1] == '/' && prev_end[-2] == '*',
                          "no comment before: %.*s", (int)n, line);
        }
        if (p < line + n) /* not blank: remember where it ends */
            prev_end = line + n;
        if (eol == NULL)
            break;
        line = eol + 1;
    }
    ck_assert_int_gt(decls, 100);
    free(h);
}
END_TEST

/* ---- docs/tuning.md ----------------------------------------------------------------------- */

/*
 * The option names a Markdown text uses: each `code span` word that is an
 * identifier with an underscore (`rt_threshold`), and the NAME of each
 * NAME=VALUE inside a code span (`-O sync_every_examples=500`); words in
 * paths and flags (`docs/img/a_b.png`, `--rt-ms`) are not names.  Each is
 * looked up with ot_option_by_name(): the first that is not an option goes
 * to `bad` ("" when all are), and seen[i] is set for each required[i] met.
 * Returns the number of names checked.
 */
static size_t doc_option_names(const char *doc, char *bad, size_t badn,
                               const char *const *required, size_t nreq, int *seen)
{
    const char *p = doc;
    size_t i, checked = 0;

    bad[0] = '\0';
    while ((p = strchr(p, '`')) != NULL) {
        const char *end = strchr(p + 1, '`'), *w;
        if (end == NULL)
            break;
        for (w = p + 1; w < end;) {
            char name[128];
            size_t k = 0;
            int under = 0, id;
            const char *start = w;
            while (w < end && (islower((unsigned char)*w) || isdigit((unsigned char)*w) ||
                               *w == '_')) {
                under |= *w == '_';
                if (k + 1 < sizeof(name))
                    name[k++] = *w;
                w++;
            }
            name[k] = '\0';
            if (k > 0 && under && islower((unsigned char)name[0]) &&
                (start == p + 1 || strchr(" =", start[-1]) != NULL) &&
                (w == end || strchr(" =", *w) != NULL)) {
                if (ot_option_by_name(name, &id) != OT_OK && bad[0] == '\0')
                    snprintf(bad, badn, "%s", name);
                for (i = 0; i < nreq; i++)
                    if (strcmp(name, required[i]) == 0)
                        seen[i] = 1;
                checked++;
            }
            if (w == start)
                w++;
        }
        p = end + 1;
    }
    return checked;
}

/* Every option docs/tuning.md names exists; it explains the ones it is for; its images exist. */
START_TEST(test_docs_tuning_names_only_real_options)
{
    static const char *const required[] = {"rt_threshold", "rt_interval_ms", "full_interval_ms",
                                           "sync_every_examples", "sync_interval_ms"};
    enum { NREQ = sizeof(required) / sizeof(required[0]) };
    char *doc = read_text("docs/tuning.md"), bad[128];
    const char *img;
    int seen[NREQ] = {0};
    size_t i, checked, images = 0;

    checked = doc_option_names(doc, bad, sizeof(bad), required, NREQ, seen);
    ck_assert_msg(bad[0] == '\0', "docs/tuning.md names `%s`, which is not an option (ot options)",
                  bad);
    for (i = 0; i < NREQ; i++)
        ck_assert_msg(seen[i], "docs/tuning.md does not explain `%s`", required[i]);
    ck_assert_uint_ge(checked, 10);

    /* ![...](img/NAME.png): each image is there. */
    for (img = strstr(doc, "](img/"); img != NULL; img = strstr(img + 1, "](img/")) {
        char path[256];
        size_t k = strcspn(img + 2, ")");
        ck_assert_uint_lt(k, 200);
        snprintf(path, sizeof(path), "docs/%.*s", (int)k, img + 2);
        ck_assert_msg(access(path, R_OK) == 0, "docs/tuning.md shows %s, which is missing", path);
        images++;
    }
    ck_assert_uint_ge(images, 4);
    free(doc);
}
END_TEST

/* The name finder on a made-up text: a misspelt option is caught, paths and flags are not names. */
START_TEST(test_docs_tuning_checker_catches_unknown_names)
{
    static const char *const required[] = {"rt_threshold", "full_interval_ms"};
    const char *text = "Set `rt_threshold` and `-O sync_every_examples=9`; `rt_intervall_ms`\n"
                       "is wrong. `docs/img/x_y.png`, `--rt-ms 50`, `ot cluster`, plain_word, `a`.\n"
                       "`rt_interval_ms=200 full_interval_ms=2000` `unclosed_name";
    int seen[2] = {0, 0};
    char bad[128];

    ck_assert_uint_eq(doc_option_names(text, bad, sizeof(bad), required, 2, seen), 5);
    ck_assert_str_eq(bad, "rt_intervall_ms");
    ck_assert_int_eq(seen[0], 1);
    ck_assert_int_eq(seen[1], 1);
    ck_assert_uint_eq(doc_option_names("`rt_threshold`", bad, sizeof(bad), required, 2, seen), 1);
    ck_assert_str_eq(bad, "");
}
END_TEST

/* ---- the Python binding ---------------------------------------------------------------- */

/* LD_PRELOAD and ASAN_OPTIONS for a program that loads a sanitized library. */
static void sanitizer_env(char *buf, size_t n)
{
    buf[0] = '\0';
    if (DOCS_ASAN) {
        char cmd[512], *rt;
        int st;
        const char *name = strstr(OT_CC, "clang") != NULL ? "libclang_rt.asan-x86_64.so"
                                                          : "libasan.so";
        snprintf(cmd, sizeof(cmd), "%s -print-file-name=%s", OT_CC, name);
        rt = run_capture(cmd, &st);
        rt[strcspn(rt, "\n")] = '\0';
        ck_assert_msg(st == 0 && rt[0] == '/', "no sanitizer runtime: %s", rt);
        snprintf(buf, n, "LD_PRELOAD='%s' ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0 ", rt);
        free(rt);
    }
}

START_TEST(test_docs_python_binding_tests_pass)
{
    char build[PATH_MAX], san[PATH_MAX + 64], cmd[3 * PATH_MAX];
    char *out;
    int st;

    build_dir_abs(build, sizeof(build));
    ck_assert_msg(access("bindings/python/tests", R_OK) == 0,
                  "no bindings/python/tests (run from the source root)");
    if (system("command -v python3 >/dev/null 2>&1") != 0)
        ck_abort_msg("python3 is not installed");
    sanitizer_env(san, sizeof(san));
    snprintf(cmd, sizeof(cmd),
             "%sONLINETRAIN_LIB='%s/libonlinetrain.so' PYTHONDONTWRITEBYTECODE=1 "
             "python3 -m unittest discover -s bindings/python/tests -t bindings/python/tests",
             san, build);
    out = run_capture(cmd, &st);
    ck_assert_msg(st == 0, "python tests failed (%d):\n%s", st, tail(out, 2500));
    /* unittest's summary: "Ran N tests" then "OK" */
    ck_assert_msg(strstr(out, "\nOK") != NULL && strstr(out, "Ran ") != NULL, "%s",
                  tail(out, 1000));
    /* Say so when no interpreter with NumPy ran the NumPy tests. */
    {
        const char *why = strstr(out, "NumPy tests not run");
        if (why != NULL)
            fprintf(stderr, "test_docs_python_binding_tests_pass: %.*s\n",
                    (int)strcspn(why, "\n"), why);
    }
    free(out);
}
END_TEST

/* ---- the C++ example ----------------------------------------------------------------- */

START_TEST(test_docs_cpp_service_serves_predictions)
{
    char prog[PATH_MAX], cmd[2 * PATH_MAX];
    char *out;
    const char *l;
    unsigned long long served = 0, v0 = 9, v1 = 0, ready = 0, v = 0, count = 0;
    double p_even = -1, p_odd = -1;
    int st;

    snprintf(prog, sizeof(prog), "%s/examples/cpp_service", test_build_dir());
    ck_assert_msg(access(prog, X_OK) == 0, "%s is not built (make examples)", prog);
    snprintf(cmd, sizeof(cmd),
             "printf '|user u3 |item i4\\n|user u3 |item i7\\n1 |a x:1.2.3\\n' | %s", prog);
    out = run_capture(cmd, &st);
    ck_assert_msg(st == 0, "cpp_service exited with %d:\n%s", st, tail(out, 1500));
    ck_assert_msg(sscanf(out, "served %llu predictions on 4 threads while the model went from "
                              "version %llu to %llu",
                         &served, &v0, &v1) == 3,
                  "unexpected output:\n%s", out);
    ck_assert_uint_ge(served, 4); /* each worker served at least once */
    ck_assert_uint_eq(v0, 0);
    ck_assert_uint_ge(v1, 40); /* 20000 examples, a sync every 500 */
    l = strstr(out, "ready at version ");
    ck_assert_msg(l != NULL && sscanf(l, "ready at version %llu", &ready) == 1, "%s", out);
    ck_assert_uint_eq(ready, v1);
    l = strchr(l, '\n') + 1;
    ck_assert_msg(sscanf(l, "%lf version %llu", &p_even, &v) == 2, "%s", out);
    ck_assert_uint_eq(v, ready);
    l = strchr(l, '\n') + 1;
    ck_assert_msg(sscanf(l, "%lf version %llu", &p_odd, &v) == 2, "%s", out);
    ck_assert_double_gt(p_even, 0.9);
    ck_assert_double_lt(p_odd, 0.1);
    l = strchr(l, '\n') + 1;
    ck_assert_msg(strncmp(l, "error parse: OT_EFORMAT: column ", 32) == 0, "%s", out);
    l = strchr(l, '\n') + 1;
    ck_assert_msg(sscanf(l, "%llu predictions served", &count) == 1, "%s", out);
    ck_assert_uint_eq(count, served + 2);
    free(out);

    /* Bad usage. */
    snprintf(cmd, sizeof(cmd), "%s one-argument </dev/null", prog);
    out = run_capture(cmd, &st);
    ck_assert_int_eq(st, 2);
    ck_assert_ptr_nonnull(strstr(out, "usage: cpp_service"));
    free(out);
    /* A server that is not there: an error, not a hang or a crash. */
    snprintf(cmd, sizeof(cmd), "%s ipc:///nonexistent/p ipc:///nonexistent/t </dev/null", prog);
    out = run_capture(cmd, &st);
    ck_assert_msg(st == 1, "exit %d:\n%s", st, out);
    ck_assert_ptr_nonnull(strstr(out, "cpp_service: subscribe: OT_"));
    free(out);
}
END_TEST

/* ---- installed use ------------------------------------------------------------------------ */

START_TEST(test_docs_install_and_build_against_it)
{
    char build[PATH_MAX], cmd[2 * PATH_MAX + 256];
    char *out;
    int st;

    build_dir_abs(build, sizeof(build));
    ck_assert_msg(access("scripts/install-test.sh", R_OK) == 0, "no scripts/install-test.sh");
    /* The script's `make install` gets this build's compiler and flags
     * (through the environment, where make's own command line does not
     * already give them), so it never rebuilds with others. */
    snprintf(cmd, sizeof(cmd),
             "BUILD='%s' CC='%s' CXX='%s' CFLAGS='%s' SAN_FLAGS='%s' %s sh scripts/install-test.sh",
             test_build_dir(), OT_CC, OT_CXX, OT_CFLAGS, OT_SAN_FLAGS,
             DOCS_ASAN ? "NO_UNDEFINED= INSTALL_TEST_CFLAGS='-fsanitize=address,undefined' "
                         "ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0"
                       : "");
    out = run_capture(cmd, &st);
    ck_assert_msg(st == 0, "install test failed (%d):\n%s", st, tail(out, 2500));
    ck_assert_msg(strstr(out, "install-test: ok") != NULL, "%s", tail(out, 1000));
    free(out);
}
END_TEST

Suite *suite_docs(void)
{
    Suite *s = suite_create("docs");
    TCase *man = tcase_create("manpage");
    TCase *py = tcase_create("python");
    TCase *ex = tcase_create("examples");
    TCase *inst = tcase_create("install");

    tcase_set_timeout(man, 60);
    tcase_add_test(man, test_docs_manpage_lists_every_command_and_flag);
    tcase_add_test(man, test_docs_help_flag_parsing);
    tcase_add_test(man, test_docs_manpage_renders_without_warnings);
    tcase_add_test(man, test_docs_header_comments_every_public_declaration);
    tcase_add_test(man, test_docs_tuning_names_only_real_options);
    tcase_add_test(man, test_docs_tuning_checker_catches_unknown_names);
    suite_add_tcase(s, man);

    tcase_set_tags(py, "python");
    tcase_set_timeout(py, 300);
    tcase_add_test(py, test_docs_python_binding_tests_pass);
    suite_add_tcase(s, py);

    tcase_set_tags(ex, "examples");
    tcase_set_timeout(ex, 120);
    tcase_add_test(ex, test_docs_cpp_service_serves_predictions);
    suite_add_tcase(s, ex);

    tcase_set_tags(inst, "install");
    tcase_set_timeout(inst, 300);
    tcase_add_test(inst, test_docs_install_and_build_against_it);
    suite_add_tcase(s, inst);
    return s;
}
