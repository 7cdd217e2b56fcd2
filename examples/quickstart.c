/* quickstart.c - the README's first example: learn from one example, predict. */
#include <stdio.h>
#include <string.h>

#include <onlinetrain.h>

int main(void)
{
    const char *line = "1 |user u42 |item i7 |ctx hour:13";
    ot_config *cfg;
    ot_model *model;
    ot_example *ex;
    float loss, p;

    if (ot_config_create(&cfg) != OT_OK)
        return 1;
    ot_config_set_i64(cfg, OT_OPT_BITS, 20);
    ot_config_set_str(cfg, OT_OPT_OPTIMIZER, "ftrl");
    if (ot_model_create(cfg, &model) != OT_OK || ot_example_create(cfg, &ex) != OT_OK)
        return 1;
    if (ot_example_parse(ex, "vw", line, strlen(line)) != OT_OK) {
        fprintf(stderr, "parse: %s\n", ot_example_errmsg(ex));
        return 1;
    }
    ot_model_learn(model, ex, &loss); /* the loss before the update */
    ot_model_predict(model, ex, &p);
    printf("loss %.4f, p(click) %.4f\n", loss, p);
    ot_example_destroy(ex);
    ot_model_destroy(model);
    ot_config_destroy(cfg);
    return 0;
}
