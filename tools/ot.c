/*
 * ot.c - the command-line program's entry: dispatch to subcommands.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ot.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"options", ot_cmd_options, "list every library option with its type, default and bounds"},
    {"gen", ot_cmd_gen, "write a synthetic click stream (VW text) with optional drift"},
    {"train", ot_cmd_train, "learn from examples (like vw): progressive validation, save a model"},
    {"cluster", ot_cmd_cluster, "a server, trainers and predictors in one process: served vs trained loss"},
    {"inspect", ot_cmd_inspect, "describe a delta file (header, sections, bytes per entry) or a model file"},
    {"ps", ot_cmd_ps, "one parameter-server shard as a process (docs/deployment.md)"},
    {"trainer", ot_cmd_trainer, "a training worker over one or more shards, reading examples"},
    {"predictor", ot_cmd_predictor, "a prediction worker that serves predictions over request/reply"},
    {"predict", ot_cmd_predict, "send examples to `ot predictor --serve`, print the scores"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    size_t i;

    fprintf(f, "usage: ot COMMAND [ARGS...]\n\ncommands:\n");
    for (i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-10s %s\n", "version", "print the library version and build");
    fprintf(f, "\n`ot COMMAND --help` describes a command's flags.\n");
}

int ot_tool_fail(const char *what, ot_status st, const char *detail)
{
    fprintf(stderr, "ot: %s: %s", what, ot_status_name(st));
    if (detail != NULL && *detail)
        fprintf(stderr, ": %s", detail);
    else
        fprintf(stderr, ": %s", ot_strerror(st));
    fputc('\n', stderr);
    return 1;
}

int ot_tool_wide_only(const ot_model *m)
{
    size_t i, nb = ot_model_num_blocks(m);

    for (i = 0; i < nb; i++) {
        int kind = 0;
        if (ot_model_block_info(m, i, NULL, &kind, NULL, NULL, NULL, NULL) != OT_OK ||
            (kind != OT_BLOCK_WIDE && kind != OT_BLOCK_BIAS))
            return 0;
    }
    return 1;
}

int ot_tool_parse_double(const char *cmd, const char *flag, const char *s, double lo, double hi,
                         double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) {
        fprintf(stderr, "ot: %s: %s wants a number in [%g, %g], got \"%s\"\n", cmd, flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int ot_tool_set_option(ot_config *cfg, const char *assignment)
{
    const char *eq = strchr(assignment, '=');
    char name[128];
    int id;
    ot_status st;

    if (eq == NULL || (size_t)(eq - assignment) >= sizeof(name)) {
        fprintf(stderr, "ot: --option wants name=value, got \"%s\"\n", assignment);
        return 2;
    }
    memcpy(name, assignment, (size_t)(eq - assignment));
    name[eq - assignment] = '\0';
    if (ot_option_by_name(name, &id) != OT_OK) {
        fprintf(stderr, "ot: unknown option \"%s\" (see `ot options`)\n", name);
        return 2;
    }
    st = ot_config_set_text(cfg, id, eq + 1);
    if (st != OT_OK)
        return ot_tool_fail(name, st, ot_config_errmsg(cfg)) + 1;
    return 0;
}

int ot_cmd_options(int argc, char **argv)
{
    ot_config *cfg;
    int id;

    (void)argc;
    (void)argv;
    if (ot_config_create(&cfg) != OT_OK)
        return 1;
    for (id = ot_option_next(0); id != 0; id = ot_option_next(id)) {
        const char *s;
        int64_t i, lo, hi;
        double f, flo, fhi;
        printf("%-22s ", ot_option_name(id));
        switch (ot_option_type(id)) {
        case OT_TYPE_I64:
            ot_config_get_i64(cfg, id, &i);
            ot_option_bounds_i64(id, &lo, &hi);
            printf("int    default %lld, [%lld, %lld]", (long long)i, (long long)lo, (long long)hi);
            break;
        case OT_TYPE_F64:
            ot_config_get_f64(cfg, id, &f);
            ot_option_bounds_f64(id, &flo, &fhi);
            printf("float  default %g, [%g, %g]", f, flo, fhi);
            break;
        default:
            ot_config_get_str(cfg, id, &s);
            printf("string default \"%s\"", s);
            if (ot_option_choices(id) != NULL)
                printf(", one of %s", ot_option_choices(id));
            break;
        }
        printf("\n    %s\n", ot_option_doc(id));
    }
    ot_config_destroy(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    size_t i;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("%s\n", ot_build_info());
        return 0;
    }
    for (i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "ot: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
