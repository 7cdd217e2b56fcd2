/*
 * ot.h - the `ot` command-line program: one function per subcommand.
 * Subcommands use only the public header.
 */
#ifndef OT_TOOL_H
#define OT_TOOL_H

#include <stdio.h>

#include "onlinetrain.h"

/* Each returns the process exit status: 0 success, 1 failure, 2 usage error. */
int ot_cmd_options(int argc, char **argv);
int ot_cmd_gen(int argc, char **argv);   /* tools/cmd_gen.c */
int ot_cmd_train(int argc, char **argv); /* tools/cmd_train.c */
int ot_cmd_cluster(int argc, char **argv); /* tools/cmd_cluster.c */
int ot_cmd_inspect(int argc, char **argv); /* tools/cmd_inspect.c */
int ot_cmd_ps(int argc, char **argv);        /* tools/cmd_roles.c */
int ot_cmd_trainer(int argc, char **argv);   /* tools/cmd_roles.c */
int ot_cmd_predictor(int argc, char **argv); /* tools/cmd_roles.c */
int ot_cmd_predict(int argc, char **argv);   /* tools/cmd_roles.c */

/*
 * Applies `--option name=value` (or `-O name=value`) to cfg; prints the error
 * and returns nonzero if the name is unknown or the value is refused.
 */
int ot_tool_set_option(ot_config *cfg, const char *assignment);

/*
 * Parses a flag's value as a number in [lo, hi] into *out; on failure prints
 * "ot: <cmd>: <flag> wants a number in [lo, hi], got ..." and returns -1.
 */
int ot_tool_parse_double(const char *cmd, const char *flag, const char *s, double lo, double hi,
                         double *out);

/* Prints "ot: <what>: <status name>: <detail>" to stderr; returns 1. */
int ot_tool_fail(const char *what, ot_status st, const char *detail);

/*
 * Whether the model has only the bias and the wide weights (no embeddings,
 * no layers): then ot_model_learn_batch() gives exactly the results of
 * ot_model_learn() on each example in order, so a tool may batch freely.
 */
int ot_tool_wide_only(const ot_model *m);

#endif
