/*
 * webhook_sign.h — Standard Webhooks signatures and secrets.
 *
 * A webhook's secret is "whsec_" + base64 of 24 random bytes; the HMAC key is
 * those bytes. A delivery is signed over "<webhook-id>.<webhook-timestamp>.<body>"
 * with HMAC-SHA256, and the header is "v1,<base64 signature>" — several
 * space-separated when a secret is being rotated, so a receiver that knows
 * either secret verifies it (the Standard Webhooks specification).
 */
#ifndef SLUICE_WEBHOOK_SIGN_H
#define SLUICE_WEBHOOK_SIGN_H

#include <stdbool.h>
#include <stddef.h>

#define WEBHOOK_SECRET_PREFIX "whsec_"
#define WEBHOOK_SECRET_MAX 128
#define WEBHOOK_SIGNATURE_MAX 64 /* "v1," + 44 base64 characters, with room */

/* A new secret (whsec_…) into out. False when no random bytes could be had. */
bool webhook_secret_new(char out[WEBHOOK_SECRET_MAX]);

/* "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" into out, the key being the base64 part of
 * `secret` after whsec_. False when the secret is not one. */
bool webhook_sign(const char *secret, const char *id, long long timestamp, const char *body,
                  size_t body_len, char out[WEBHOOK_SIGNATURE_MAX]);

#endif
