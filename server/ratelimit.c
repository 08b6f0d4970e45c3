/*
 * ratelimit.c — token buckets per API key (see ratelimit.h). The table holds
 * one small entry per key that has made a request (keys are few and admin-made).
 */
#include "ratelimit.h"
#include "mem.h"
#include "strmap.h"
#include "timeutil.h"

#include <math.h>
#include <pthread.h>

typedef struct bucket {
    double tokens;
    int64_t last_ms;
} bucket;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static strmap buckets;          /* {lock} key id → bucket */
static bool ready;              /* {lock} */
static double rate, capacity;   /* set at start-up */

void ratelimit_configure(double per_second, double burst)
{
    rate = per_second;
    capacity = burst > 0 ? burst : per_second * 2;
}

bool ratelimit_take(const char *key, int *retry_after_s)
{
    if (rate <= 0) return true;
    int64_t now = time_mono_ms();
    bool ok;
    pthread_mutex_lock(&lock);
    if (!ready) {
        strmap_init(&buckets);
        ready = true;
    }
    bucket *b = strmap_get(&buckets, key);
    if (!b) {
        b = xcalloc(1, sizeof *b);
        b->tokens = capacity;
        b->last_ms = now;
        strmap_put(&buckets, key, b);
    }
    b->tokens += (double)(now - b->last_ms) * rate / 1000.0;
    if (b->tokens > capacity) b->tokens = capacity;
    b->last_ms = now;
    ok = b->tokens >= 1.0;
    if (ok) b->tokens -= 1.0;
    else *retry_after_s = (int)ceil((1.0 - b->tokens) / rate);
    pthread_mutex_unlock(&lock);
    if (!ok && *retry_after_s < 1) *retry_after_s = 1;
    return ok;
}
