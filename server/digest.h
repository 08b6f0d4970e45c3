/*
 * digest.h — SHA-256 as lowercase hex, for API-key lookups (auth.c) and the idempotency
 * hash of client-identified envelopes (envelope.c).
 *
 * Why one module: both run once per request on the hot path. OpenSSL 3's EVP_sha256()
 * looks the algorithm up in its provider table at every digest, and snprintf("%02x") per
 * byte profiled as a visible share of a publish; here the algorithm is fetched once and
 * the hex is written from a table.
 */
#ifndef SLUICE_DIGEST_H
#define SLUICE_DIGEST_H

#include <stddef.h>

/* out gets 64 hex digits and a NUL. Any thread. */
void digest_sha256_hex(const void *data, size_t len, char out[65]);

#endif
