/*
 * security.c - the roles' security settings: the tls_* and hmac_key options
 * mapped onto the transport's socket options (docs/security.md).
 *
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "durable.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int oti_hex_decode(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strlen(s), i;

    if (n % 2 != 0 || n / 2 > cap)
        return -1;
    for (i = 0; i < n; i += 2) {
        int hi = hex_value(s[i]), lo = hex_value(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    *len = n / 2;
    return 0;
}

void oti_wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;

    while (n-- > 0)
        *v++ = 0;
}

static const char *or_null(const char *s)
{
    return s != NULL && *s != '\0' ? s : NULL;
}

ot_status oti_role_security(const ot_config *cfg, oti_tp_opts *o, uint8_t *key, char *err)
{
    const char *hex;
    size_t n = 0;

    o->tls_cert_key_file = or_null(oti_cfg_str(cfg, OT_OPT_TLS_CERT_KEY_FILE));
    o->tls_ca_file = or_null(oti_cfg_str(cfg, OT_OPT_TLS_CA_FILE));
    o->tls_server_name = or_null(oti_cfg_str(cfg, OT_OPT_TLS_SERVER_NAME));
    switch (oti_cfg_choice(cfg, OT_OPT_TLS_AUTH)) {
    case 0: o->tls_auth_mode = OTI_TLS_AUTH_NONE; break;
    case 1: o->tls_auth_mode = OTI_TLS_AUTH_OPTIONAL; break;
    default: o->tls_auth_mode = OTI_TLS_AUTH_REQUIRED; break;
    }
    o->max_conns = (int)oti_cfg_i64(cfg, OT_OPT_MAX_CONNECTIONS);
    o->hmac_key = NULL;
    o->hmac_key_len = 0;
    hex = oti_cfg_str(cfg, OT_OPT_HMAC_KEY);
    if (hex == NULL || *hex == '\0')
        return OT_OK;
    if (oti_hex_decode(hex, key, OTI_HMAC_KEY_MAX, &n) != 0 || n == 0)
        return oti_err(err, OT_EINVAL, "hmac_key must be 2 to %d hex digits",
                       2 * OTI_HMAC_KEY_MAX);
    o->hmac_key = key;
    o->hmac_key_len = n;
    return OT_OK;
}
