/*
 * ratelimit.h — a token bucket per API key: SLUICE_RATE_LIMIT requests per
 * second with bursts of SLUICE_RATE_BURST; past it, 429 rate_limited with
 * Retry-After. Off (0) by default: one deployment's right number is another's
 * outage, so the operator chooses it.
 */
#ifndef SLUICE_RATELIMIT_H
#define SLUICE_RATELIMIT_H

#include <stdbool.h>

void ratelimit_configure(double per_second, double burst);
/* Takes a token for `key`. false: refused, *retry_after_s says when to try again. */
bool ratelimit_take(const char *key, int *retry_after_s);

#endif
