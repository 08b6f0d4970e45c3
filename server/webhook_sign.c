/*
 * webhook_sign.c — Standard Webhooks signatures and secrets (see webhook_sign.h).
 */
#include "webhook_sign.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define SECRET_BYTES 24

/* Fetched once: EVP_MAC_fetch looks the algorithm up in the providers at every call. */
static EVP_MAC *hmac;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_fetch(void)
{
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

bool webhook_secret_new(char out[WEBHOOK_SECRET_MAX])
{
    unsigned char key[SECRET_BYTES];
    if (RAND_bytes(key, sizeof key) != 1) return false;
    memcpy(out, WEBHOOK_SECRET_PREFIX, strlen(WEBHOOK_SECRET_PREFIX));
    EVP_EncodeBlock((unsigned char *)out + strlen(WEBHOOK_SECRET_PREFIX), key, sizeof key);
    return true;
}

/* The HMAC key of a secret: the base64 after whsec_ (a secret without the prefix is taken
 * whole, as the specification's libraries do). Returns its length, or -1. */
static int secret_key(const char *secret, unsigned char *key, size_t cap)
{
    size_t pl = strlen(WEBHOOK_SECRET_PREFIX);
    const char *b64 = strncmp(secret, WEBHOOK_SECRET_PREFIX, pl) == 0 ? secret + pl : secret;
    size_t len = strlen(b64);
    if (!len || len % 4 || len / 4 * 3 > cap) return -1;
    int n = EVP_DecodeBlock(key, (const unsigned char *)b64, (int)len);
    if (n < 0) return -1;
    /* EVP_DecodeBlock counts the padding's zero bytes too */
    if (len >= 1 && b64[len - 1] == '=') n--;
    if (len >= 2 && b64[len - 2] == '=') n--;
    return n;
}

bool webhook_sign(const char *secret, const char *id, long long timestamp, const char *body,
                  size_t body_len, char out[WEBHOOK_SIGNATURE_MAX])
{
    unsigned char key[WEBHOOK_SECRET_MAX];
    int klen = secret_key(secret, key, sizeof key);
    if (klen <= 0) return false;
    char head[160];
    int hl = snprintf(head, sizeof head, "%s.%lld.", id, timestamp);
    if (hl < 0 || (size_t)hl >= sizeof head) return false;
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    pthread_once(&hmac_once, hmac_fetch);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    bool ok = ctx && EVP_MAC_init(ctx, key, (size_t)klen, params) == 1 &&
              EVP_MAC_update(ctx, (const unsigned char *)head, (size_t)hl) == 1 &&
              EVP_MAC_update(ctx, (const unsigned char *)body, body_len) == 1 &&
              EVP_MAC_final(ctx, mac, &mac_len, sizeof mac) == 1;
    EVP_MAC_CTX_free(ctx);
    if (!ok) return false;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)mac_len);
    return true;
}
