/*
 * tenants.h — per-tenant caps on what a tenant may hold open at once on this instance
 * (API.md "Tenants": WebSocket connections, SSE/NDJSON streams, long polls, history
 * catch-ups; replays are capped in PostgreSQL, server/replays.c).
 *
 * Why: catch-ups, long polls, NDJSON streams and WebSocket slots are shared by every tenant
 * under the instance-wide bounds (SLUICE_MAX_STREAMS, SLUICE_SSE_MAX, …), so without a cap
 * per tenant one tenant could take them all and starve the rest. Each holder takes a slot
 * with tenants_acquire before it starts and gives it back with tenants_release exactly once
 * when it ends, on every exit path; a refused acquire is answered 429 `rate_limited` with
 * Retry-After. Counting is exact: one mutex, checked and counted in one step.
 */
#ifndef SLUICE_TENANTS_H
#define SLUICE_TENANTS_H

#include "config.h"

#include <stdbool.h>

typedef enum tenant_res {
    TENANT_WS = 0,     /* authenticated WebSocket connections (SLUICE_TENANT_WS_CONNECTIONS) */
    TENANT_STREAMS,    /* SSE and NDJSON streams together (SLUICE_TENANT_STREAMS) */
    TENANT_LONG_POLLS, /* GET /v1/events/wait in progress (SLUICE_TENANT_LONG_POLLS) */
    TENANT_CATCHUPS,   /* history catch-ups running (SLUICE_TENANT_CATCHUPS) */
    TENANT_N_RES,
} tenant_res;

/* Start-up: the caps from the configuration (before any acquire). */
void tenants_configure(const sluice_config *cfg);

/* Takes one slot of `res` for `tenant`; false (nothing taken) when the tenant holds its cap.
 * Any thread. */
bool tenants_acquire(const char *tenant, tenant_res res) __attribute__((warn_unused_result));
/* Gives back a slot taken by tenants_acquire. Any thread. */
void tenants_release(const char *tenant, tenant_res res);
/* True when `tenant` holds its cap of `res` now (a hint: an answer before the real acquire). */
bool tenants_full(const char *tenant, tenant_res res);
/* The cap of `res` (for messages). */
int tenants_cap(tenant_res res);

#endif
