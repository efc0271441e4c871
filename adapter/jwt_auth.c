/*
 * jwt_auth.c — bearer token checks with libjwt.
 *
 * libjwt verifies the signature; we insist on HS256 ourselves (never "none"
 * or another algorithm named by the token), require "exp" in the future,
 * honour "nbf", refuse an "iat" in the future (both beyond CLOCK_LEEWAY_S of
 * clock skew), and require a "role" shaped like one of our database roles,
 * so a token can never make the adapter SET ROLE to anything else.  Whether
 * that role is one the caller may take is the database's answer: a SET ROLE
 * it refuses is a 401 too (db.c).
 */
#include "jwt_auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <pthread.h>

#include <jansson.h>
#include <jwt.h>

/*
 * Clients send the same token request after request: a verified token is
 * remembered (direct-mapped, by a hash of the whole token string), so the
 * next request with the identical string skips decoding and the HMAC.
 * "exp" is still checked every time, and the cache is bounded (CACHE_SLOTS).
 *
 * Only what the token itself proves is cached: its signature and claims.
 * Whether the caller still stands (active, still holding the role, the
 * session not ended, not logged out: booking.sessions, token_cutoffs) is
 * decided by the database in every request's transaction (caller.c, the
 * 1.1 script's "sessions that end" section), so a cached token stops
 * working at once when its user is deactivated, demoted or logs out.
 */
#define CACHE_SLOTS 256
typedef struct cached_token {
    char       *token;
    double      exp;
    char       *claims;
    char        role[64];
    char        sub[64];
} cached_token;

static cached_token cache[CACHE_SLOTS];

/* Clocks of the issuer and of this host may disagree by this much. */
#define CLOCK_LEEWAY_S 30
/*
 * Readers share the lock (every request with a known token only reads);
 * a store takes it alone.
 */
static pthread_rwlock_t cache_lock = PTHREAD_RWLOCK_INITIALIZER;

static unsigned
slot_of(const char *token)
{
    uint32_t    h = 2166136261u;

    for (const char *p = token; *p; p++)
        h = (h ^ (unsigned char) *p) * 16777619u;
    return h % CACHE_SLOTS;
}

static bool
cache_lookup(const char *token, auth_result *out)
{
    cached_token *c = &cache[slot_of(token)];
    bool        hit = false;

    pthread_rwlock_rdlock(&cache_lock);
    if (c->token && strcmp(c->token, token) == 0 && c->exp > (double) time(NULL))
    {
        out->claims = strdup(c->claims);
        memcpy(out->role, c->role, sizeof(out->role));
        memcpy(out->sub, c->sub, sizeof(out->sub));
        out->ok = out->claims != NULL;
        hit = true;
    }
    pthread_rwlock_unlock(&cache_lock);
    return hit;
}

static void
cache_store(const char *token, double exp, const auth_result *r)
{
    cached_token *c = &cache[slot_of(token)];

    pthread_rwlock_wrlock(&cache_lock);
    free(c->token);
    free(c->claims);
    c->token = strdup(token);
    c->claims = strdup(r->claims);
    c->exp = exp;
    memcpy(c->role, r->role, sizeof(c->role));
    memcpy(c->sub, r->sub, sizeof(c->sub));
    pthread_rwlock_unlock(&cache_lock);
}

void
auth_cache_free(void)
{
    pthread_rwlock_wrlock(&cache_lock);
    for (int i = 0; i < CACHE_SLOTS; i++)
    {
        free(cache[i].token);
        free(cache[i].claims);
        cache[i].token = cache[i].claims = NULL;
    }
    pthread_rwlock_unlock(&cache_lock);
}

/*
 * Only the shape of a role name: which roles a token may name is the
 * database's list (booking.http_token_roles, checked in http.c).
 */
static bool
role_is_ours(const char *r)
{
    return r[0] != '\0' && strlen(r) < 64;
}

/*
 * "nbf" (not before) and "iat" (issued at), when present, must be numbers
 * and not in the future.  A cached token passed this check once; it cannot
 * fail it later, since both only move into the past.
 */
static bool
time_claims_acceptable(json_t *claims, char *why, size_t whylen)
{
    double      now = (double) time(NULL);
    json_t     *nbf = json_object_get(claims, "nbf");
    json_t     *iat = json_object_get(claims, "iat");

    if ((nbf && !json_is_number(nbf)) || (iat && !json_is_number(iat)))
    {
        snprintf(why, whylen, "the token's \"nbf\" or \"iat\" claim is not a number");
        return false;
    }
    if (nbf && json_number_value(nbf) > now + CLOCK_LEEWAY_S)
    {
        snprintf(why, whylen, "the token is not valid yet (\"nbf\" is in the future)");
        return false;
    }
    if (iat && json_number_value(iat) > now + CLOCK_LEEWAY_S)
    {
        snprintf(why, whylen, "the token was issued in the future (\"iat\")");
        return false;
    }
    return true;
}

void
auth_verify(const char *header, const char *secret, auth_result *out)
{
    jwt_t      *jwt = NULL;
    const char *token;
    json_t     *claims = NULL;
    json_t     *v;

    memset(out, 0, sizeof(*out));
    if (strncasecmp(header, "Bearer ", 7) != 0)
    {
        snprintf(out->why, sizeof(out->why), "the Authorization header is not a bearer token");
        return;
    }
    token = header + 7;
    while (*token == ' ')
        token++;
    if (cache_lookup(token, out))
        return;
    if (jwt_decode(&jwt, token, (const unsigned char *) secret, (int) strlen(secret)) != 0 || !jwt)
    {
        snprintf(out->why, sizeof(out->why), "the token is malformed or its signature is invalid");
        goto done;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_HS256)
    {
        snprintf(out->why, sizeof(out->why), "the token is not signed with HS256");
        goto done;
    }
    {
        char       *grants = jwt_get_grants_json(jwt, NULL);

        claims = grants ? json_loads(grants, 0, NULL) : NULL;
        free(grants);
    }
    if (!json_is_object(claims))
    {
        snprintf(out->why, sizeof(out->why), "the token's claims are not a JSON object");
        goto done;
    }
    v = json_object_get(claims, "exp");
    if (!json_is_number(v))
    {
        snprintf(out->why, sizeof(out->why), "the token has no \"exp\" claim");
        goto done;
    }
    if (json_number_value(v) <= (double) time(NULL))
    {
        snprintf(out->why, sizeof(out->why), "the token has expired");
        goto done;
    }
    if (!time_claims_acceptable(claims, out->why, sizeof(out->why)))
        goto done;
    v = json_object_get(claims, "role");
    if (!json_is_string(v) || !role_is_ours(json_string_value(v)))
    {
        snprintf(out->why, sizeof(out->why), "the token's role claim is missing or unknown");
        goto done;
    }
    snprintf(out->role, sizeof(out->role), "%s", json_string_value(v));
    v = json_object_get(claims, "sub");
    if (json_is_string(v))
        snprintf(out->sub, sizeof(out->sub), "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out->sub, sizeof(out->sub), "%lld", (long long) json_integer_value(v));
    out->claims = json_dumps(claims, JSON_COMPACT);
    out->ok = out->claims != NULL;
    if (out->ok)
        cache_store(token, json_number_value(json_object_get(claims, "exp")), out);
done:
    json_decref(claims);
    if (jwt)
        jwt_free(jwt);
}

void
auth_result_free(auth_result *r)
{
    free(r->claims);
    r->claims = NULL;
}
