/*
 * tenants.c — per-tenant slot counts (see tenants.h).
 *
 * DESIGN: a map tenant → counters under one mutex. Tenants are few (an admin makes their
 * keys), so an entry is kept once made (strmap has no removal; an idle tenant costs a few
 * bytes) and stays reachable from the map until exit.
 */
#include "tenants.h"
#include "mem.h"
#include "strmap.h"

#include <pthread.h>

typedef struct tenant_counts {
    int held[TENANT_N_RES];
} tenant_counts;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static strmap counts; /* {lock} tenant → tenant_counts */
static bool ready;    /* {lock} */
static int caps[TENANT_N_RES] = {10000, 1000, 1000, 64};

void tenants_configure(const sluice_config *cfg)
{
    caps[TENANT_WS] = cfg->tenant_ws_connections;
    caps[TENANT_STREAMS] = cfg->tenant_streams;
    caps[TENANT_LONG_POLLS] = cfg->tenant_long_polls;
    caps[TENANT_CATCHUPS] = cfg->tenant_catchups;
}

int tenants_cap(tenant_res res)
{
    return caps[res];
}

/* Lock held. */
static tenant_counts *counts_of(const char *tenant, bool make)
{
    if (!ready) {
        strmap_init(&counts);
        ready = true;
    }
    tenant_counts *c = strmap_get(&counts, tenant);
    if (!c && make) {
        c = xcalloc(1, sizeof *c);
        strmap_put(&counts, tenant, c);
    }
    return c;
}

bool tenants_acquire(const char *tenant, tenant_res res)
{
    pthread_mutex_lock(&lock);
    tenant_counts *c = counts_of(tenant, true);
    bool ok = c->held[res] < caps[res];
    if (ok) c->held[res]++;
    pthread_mutex_unlock(&lock);
    return ok;
}

void tenants_release(const char *tenant, tenant_res res)
{
    pthread_mutex_lock(&lock);
    tenant_counts *c = counts_of(tenant, false);
    if (c && c->held[res] > 0) c->held[res]--;
    pthread_mutex_unlock(&lock);
}

bool tenants_full(const char *tenant, tenant_res res)
{
    pthread_mutex_lock(&lock);
    tenant_counts *c = counts_of(tenant, false);
    bool full = c ? c->held[res] >= caps[res] : caps[res] <= 0;
    pthread_mutex_unlock(&lock);
    return full;
}
