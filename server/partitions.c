/*
 * partitions.c — creating and dropping the event log's partitions (see partitions.h).
 */
#include "partitions.h"
#include "db.h"
#include "locks.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "strmap.h"
#include "timeutil.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARTITIONS_MAX 4096
#define DETACH_TIMEOUT_MS 60000    /* DETACH … CONCURRENTLY waits for reads of the partition */

typedef struct {
    char name[64];
    long long lo, hi; /* [lo, hi); lo LLONG_MIN: MINVALUE */
    bool pending;     /* a DETACH CONCURRENTLY that was interrupted */
} partition;

static const char *const list_sql =
    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending "
    "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'events'::regclass";

/* One bound of "FOR VALUES FROM (x) TO (y)": a number, possibly quoted, or MINVALUE. */
static long long parse_bound(const char *s)
{
    while (*s == '(' || *s == '\'' || *s == ' ')
        s++;
    if (strncmp(s, "MINVALUE", 8) == 0) return LLONG_MIN;
    if (strncmp(s, "MAXVALUE", 8) == 0) return LLONG_MAX;
    return strtoll(s, NULL, 10);
}

static int by_lo(const void *a, const void *b)
{
    const partition *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* The partitions of `events`, oldest first. Returns how many, or -1. */
static int list(PGconn **conn, partition *out, int timeout_ms)
{
    PGresult *r = db_exec(conn, list_sql, 0, NULL, timeout_ms);
    if (!db_ok(r)) {
        if (r) db_log_error("partitions", "listing the partitions failed", r);
        PQclear(r);
        return -1;
    }
    int n = 0;
    for (int i = 0; i < PQntuples(r) && n < PARTITIONS_MAX; i++) {
        const char *bound = PQgetvalue(r, i, 1);
        const char *from = strstr(bound, "FROM ("), *to = strstr(bound, "TO (");
        if (!from || !to) continue;
        partition *p = &out[n++];
        snprintf(p->name, sizeof p->name, "%s", PQgetvalue(r, i, 0));
        p->lo = parse_bound(from + 5);
        p->hi = parse_bound(to + 3);
        p->pending = PQgetvalue(r, i, 2)[0] == 't';
    }
    PQclear(r);
    qsort(out, (size_t)n, sizeof *out, by_lo);
    return n;
}

/* One statement whose result is not needed. 0 or -1 (logged with `what`). */
static int run(PGconn **conn, const char *sql, const char *what, int timeout_ms)
{
    PGresult *r = db_exec(conn, sql, 0, NULL, timeout_ms);
    int rc = db_ok(r) ? 0 : -1;
    if (rc < 0 && r) db_log_error("partitions", what, r);
    PQclear(r);
    return rc;
}

int partitions_ensure(PGconn **conn, long long head, long long width, int timeout_ms)
{
    static partition parts[PARTITIONS_MAX];
    if (run(conn, "BEGIN", "BEGIN failed", timeout_ms) < 0) return -1;
    int created = 0;
    if (run(conn, "SELECT pg_advisory_xact_lock(" LOCK_PARTITIONS ")", "locking failed",
            timeout_ms) < 0)
        goto fail;
    int n = list(conn, parts, timeout_ms);
    if (n <= 0) {
        if (n == 0) log_error("partitions", "the event log has no partition", NULL);
        goto fail;
    }
    /* Another instance may have appended past what the caller knows. */
    PGresult *r = db_exec(conn, "SELECT coalesce(max(position), 0) FROM events", 0, NULL,
                          timeout_ms);
    if (!db_ok(r)) {
        PQclear(r);
        goto fail;
    }
    long long stored = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (stored > head) head = stored;
    long long hi = parts[n - 1].hi;
    while (hi <= head + width / 2) { /* the head has entered the last partition's second half */
        char sql[256];
        snprintf(sql, sizeof sql,
                 "CREATE TABLE events_p%lld (LIKE events INCLUDING DEFAULTS INCLUDING "
                 "CONSTRAINTS)",
                 hi);
        if (run(conn, sql, "creating a partition failed", timeout_ms) < 0) goto fail;
        snprintf(sql, sizeof sql,
                 "ALTER TABLE events ATTACH PARTITION events_p%lld FOR VALUES FROM (%lld) TO "
                 "(%lld)",
                 hi, hi, hi + width);
        if (run(conn, sql, "attaching a partition failed", timeout_ms) < 0) goto fail;
        hi += width;
        created++;
    }
    if (run(conn, "COMMIT", "COMMIT failed", timeout_ms) < 0) return -1;
    if (created) {
        metrics_partition_created(created);
        log_info("partitions", "partitions created ahead of need",
                 json_pack("{s:i,s:I,s:I}", "created", created, "up_to", (json_int_t)hi,
                           "head", (json_int_t)head));
    }
    return created;
fail:
    if (*conn) (void)run(conn, "ROLLBACK", "ROLLBACK failed", timeout_ms);
    return -1;
}

/* ------------------------------------------------------------------ dropping */

/* What the retention leader knows of the partitions wholly below the head: their
 * (tenant, stream)s with the time of each one's newest event. Such a partition takes no
 * more appends, so it is read once (one GROUP BY) and kept; row deletes only make it
 * older than the cache says, which delays a drop, never hastens one. */
typedef struct {
    char name[64];
    strmap newest; /* "tenant\x1fstream" → heap long long, ms since the epoch */
    bool listed;   /* still a partition at the last look */
} part_streams;

static part_streams *cache;
static int cache_len, cache_cap;

static void cache_free(part_streams *c)
{
    strmap_dispose(&c->newest, free);
}

/* The streams of partition `name`, read once. NULL: the read failed. */
static part_streams *streams_of(PGconn **conn, const char *name, int timeout_ms)
{
    for (int i = 0; i < cache_len; i++)
        if (strcmp(cache[i].name, name) == 0) return &cache[i];
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT tenant_id || chr(31) || stream, floor(extract(epoch FROM max(time)) * "
             "1000)::bigint FROM %s GROUP BY tenant_id, stream",
             name);
    PGresult *r = db_exec(conn, sql, 0, NULL, timeout_ms);
    if (!db_ok(r)) {
        if (r) db_log_error("partitions", "reading a partition's streams failed", r);
        PQclear(r);
        return NULL;
    }
    if (cache_len == cache_cap) {
        cache_cap = cache_cap ? cache_cap * 2 : 16;
        cache = xrealloc(cache, (size_t)cache_cap * sizeof *cache);
    }
    part_streams *c = &cache[cache_len++];
    snprintf(c->name, sizeof c->name, "%s", name);
    strmap_init(&c->newest);
    c->listed = true;
    for (int i = 0; i < PQntuples(r); i++) {
        long long *at = xmalloc(sizeof *at);
        *at = atoll(PQgetvalue(r, i, 1));
        strmap_put(&c->newest, PQgetvalue(r, i, 0), at);
    }
    PQclear(r);
    return c;
}

/* Forgets the partitions that are gone. */
static void cache_prune(const partition *parts, int n)
{
    for (int i = 0; i < cache_len; i++) {
        cache[i].listed = false;
        for (int k = 0; k < n && !cache[i].listed; k++)
            cache[i].listed = strcmp(cache[i].name, parts[k].name) == 0;
    }
    int kept = 0;
    for (int i = 0; i < cache_len; i++) {
        if (cache[i].listed)
            cache[kept++] = cache[i];
        else
            cache_free(&cache[i]);
    }
    cache_len = kept;
}

void partitions_dispose(void)
{
    for (int i = 0; i < cache_len; i++)
        cache_free(&cache[i]);
    free(cache);
    cache = NULL;
    cache_len = cache_cap = 0;
}

/* True when every stream of `c` has a max age and its newest event there is past it. */
static bool expired(const part_streams *c, const strmap *max_age, long long now_ms)
{
    strmap_foreach(&c->newest, i)
    {
        const long long *age = strmap_get(max_age, c->newest.slots[i].key);
        if (!age || *(const long long *)c->newest.slots[i].value + *age > now_ms) return false;
    }
    return true;
}

/* Keeps the partition's keys' versions, forgets its ids, then detaches and drops it. */
static int drop(PGconn **conn, const partition *p, int timeout_ms)
{
    char sql[640];
    if (!p->pending) {
        if (run(conn, "BEGIN", "BEGIN failed", timeout_ms) < 0) return -1;
        snprintf(sql, sizeof sql,
                 "INSERT INTO key_heads (tenant_id, stream, key, version) SELECT tenant_id, "
                 "stream, key, max(version) FROM %s WHERE key IS NOT NULL GROUP BY tenant_id, "
                 "stream, key ON CONFLICT (tenant_id, stream, key) DO UPDATE SET version = "
                 "GREATEST(key_heads.version, EXCLUDED.version)",
                 p->name);
        if (run(conn, sql, "keeping a partition's key versions failed", timeout_ms) < 0)
            goto fail;
        if (p->lo == LLONG_MIN)
            snprintf(sql, sizeof sql, "DELETE FROM event_ids WHERE position < %lld", p->hi);
        else
            snprintf(sql, sizeof sql,
                     "DELETE FROM event_ids WHERE position >= %lld AND position < %lld", p->lo,
                     p->hi);
        if (run(conn, sql, "forgetting a partition's ids failed", timeout_ms) < 0) goto fail;
        if (run(conn, "COMMIT", "COMMIT failed", timeout_ms) < 0) return -1;
        snprintf(sql, sizeof sql, "ALTER TABLE events DETACH PARTITION %s CONCURRENTLY",
                 p->name);
    } else { /* an earlier detach was interrupted: finish it */
        snprintf(sql, sizeof sql, "ALTER TABLE events DETACH PARTITION %s FINALIZE", p->name);
    }
    if (run(conn, sql, "detaching a partition failed", DETACH_TIMEOUT_MS) < 0) return -1;
    snprintf(sql, sizeof sql, "DROP TABLE %s", p->name);
    if (run(conn, sql, "dropping a partition failed", timeout_ms) < 0) return -1;
    metrics_partition_dropped();
    log_info("partitions", "expired partition dropped",
             json_pack("{s:s,s:I}", "partition", p->name, "below", (json_int_t)p->hi));
    return 1;
fail:
    if (*conn) (void)run(conn, "ROLLBACK", "ROLLBACK failed", timeout_ms);
    return -1;
}

int partitions_drop_expired(PGconn **conn, long long safe, int timeout_ms)
{
    static partition parts[PARTITIONS_MAX];
    int n = list(conn, parts, timeout_ms);
    if (n < 0) return -1;
    cache_prune(parts, n);
    for (int i = 0; i < n; i++) /* a detach cut short (say, by a crash) is finished first */
        if (parts[i].pending) return drop(conn, &parts[i], timeout_ms);
    /* Only streams with a max age ever expire: without any, there is nothing to look at. */
    PGresult *r = db_exec(conn,
                          "SELECT tenant_id || chr(31) || stream, max_age_ms FROM stream_settings "
                          "WHERE max_age_ms IS NOT NULL",
                          0, NULL, timeout_ms);
    if (!db_ok(r)) {
        PQclear(r);
        return -1;
    }
    strmap max_age;
    strmap_init(&max_age);
    for (int i = 0; i < PQntuples(r); i++) {
        long long *age = xmalloc(sizeof *age);
        *age = atoll(PQgetvalue(r, i, 1));
        free(strmap_put(&max_age, PQgetvalue(r, i, 0), age));
    }
    PQclear(r);
    long long head = -1;
    int rc = 0;
    if (max_age.len) {
        r = db_exec(conn, "SELECT coalesce(max(position), 0) FROM events", 0, NULL, timeout_ms);
        head = db_ok(r) ? atoll(PQgetvalue(r, 0, 0)) : -1;
        PQclear(r);
        if (head < 0) rc = -1;
    }
    /* Each partition wholly below the head (the head stays: positions come from it) and
     * below what the relay, projections and replays have, oldest first. */
    for (int i = 0; i < n && head >= 0 && rc == 0; i++) {
        const partition *p = &parts[i];
        if (p->hi > head || p->hi > safe) break;
        part_streams *c = streams_of(conn, p->name, timeout_ms);
        if (!c) {
            rc = -1;
        } else if (expired(c, &max_age, time_now_ms())) {
            rc = drop(conn, p, timeout_ms);
            break;
        }
    }
    strmap_dispose(&max_age, free);
    return rc;
}
