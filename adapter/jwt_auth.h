/*
 * jwt_auth.h — verification of bearer tokens (HS256 only, exp required).
 */
#ifndef ADAPTER_JWT_AUTH_H
#define ADAPTER_JWT_AUTH_H

#include <stdbool.h>

typedef struct auth_result {
    bool        ok;
    char        why[128];       /* when not ok */
    char       *claims;         /* all claims as JSON (malloc'd) */
    char        role[64];
    char        sub[64];
} auth_result;

/* header: the Authorization header's value (not NULL). */
void        auth_verify(const char *header, const char *secret, auth_result *out);
void        auth_result_free(auth_result *r);
void        auth_cache_free(void);

#endif
