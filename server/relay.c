/*
 * relay.c — the Redis relay (see relay.h).
 *
 * DESIGN: the leader's relay holds a live feed (live_feed.h) of every tenant's events.
 * Caught up, it takes the events this instance's feed publishes (tail.c: from memory
 * after each local commit) and pipelines their XADDs; PostgreSQL is read (eventlog_read)
 * only to catch up: on becoming leader, when Redis comes back, or when the feed
 * overflowed. The seam between the two is the hub's catch-up seam: no gap, no
 * duplicate, and a duplicate would be refused by Redis anyway (entry ids <position>-0).
 */
#include "relay.h"
#include "consume.h"
#include "worker.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "redis.h"
#include "redis_cluster.h"
#include "eventlog.h"
#include "hub.h"
#include "live_feed.h"
#include "locks.h"
#include "timeutil.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RELAY_PAGE 500   /* events per catch-up read and per Redis pipeline */
#define RELAY_RING 16384 /* live events waiting for the relay thread */
#define RELAY_TIMEOUT_MS 10000
#define RELAY_REDIS_TIMEOUT_MS 2000
#define RELAY_ALIVE_MS 1000 /* how often a live relay checks its leadership connection */

static const sluice_config *cfg;
static atomic_bool leader;
static worker_thread runner; /* the relay thread */

bool relay_is_leader(void)
{
    return atomic_load(&leader);
}

char *relay_checkpoint_key(const sluice_config *c)
{
    return xasprintf("%srelay:position", c->redis_prefix);
}

/* Reads the checkpoint of `c`'s relay; 0 when absent, -1 when Redis failed. */
static long long checkpoint_of(redis_conn *r, const sluice_config *c)
{
    char *key = relay_checkpoint_key(c);
    redisReply *rep = redis_command(r, key, "GET %s", key);
    free(key);
    long long pos = -1;
    if (rep && rep->type == REDIS_REPLY_NIL)
        pos = 0;
    else if (rep && rep->type == REDIS_REPLY_STRING)
        pos = strtoll(rep->str, NULL, 10);
    freeReplyObject(rep);
    return pos;
}

long long relay_probe_checkpoint(const sluice_config *c, int timeout_ms)
{
    redis_conn *r = redis_connect(c->redis_url, timeout_ms, "relay");
    if (!r) return -1;
    long long pos = checkpoint_of(r, c);
    redis_free(r);
    return pos;
}

static void sleep_ms(int ms)
{
    for (int i = 0; i < ms / 50 && !worker_stopping(&runner); i++)
        usleep(50 * 1000);
}

/* Reads the checkpoint; 0 when absent, -1 when Redis failed. */
static long long read_checkpoint(redis_conn *r)
{
    return checkpoint_of(r, cfg);
}

/* ------------------------------------------------------------------ the live feed */

static live_feed feed; /* all tenants; subscribed while this instance leads */

/* ------------------------------------------------------------------ Redis */

/* What relay_events and relay_page report (besides relay_page's count of rows). */
enum {
    RELAY_GAP = 1,           /* relay_events: the events do not follow the checkpoint */
    RELAY_PG_FAILED = -1,    /* relay_page: PostgreSQL failed */
    RELAY_REDIS_FAILED = -2, /* the caller reconnects; nothing is lost: the events are read
                                again */
};

/* Adds events (position order) after *checkpoint to Redis in one pipeline with the new
 * checkpoint. Events at or below the checkpoint are skipped. `contiguous` (events from
 * memory): returns RELAY_GAP, sending nothing, when they do not follow the checkpoint
 * without a gap (the caller catches up from PostgreSQL, where a missing position means a
 * deleted event). Returns 0, or RELAY_REDIS_FAILED.
 * A cluster (issue 17): the XADDs go to every node at once, one pipeline per node
 * (redis_batch_run), and the checkpoint, whose key has a slot of its own, is written only
 * once every entry is in: a checkpoint never runs ahead of an entry Redis refused. */
static int relay_events(redis_conn *r, stored_event **evs, int n, long long *checkpoint,
                        bool contiguous)
{
    char maxlen[24];
    snprintf(maxlen, sizeof maxlen, "%lld", cfg->redis_maxlen);
    int sent = 0;
    long long last = *checkpoint;
    for (int i = 0; contiguous && i < n; i++) {
        if (evs[i]->position <= last) continue;
        if (evs[i]->position != last + 1) return RELAY_GAP;
        last = evs[i]->position;
    }
    /* Each XADD is written as RESP by hand: hiredis's argv formatting allocated per
     * argument. */
    redis_batch batch;
    redis_batch_init(&batch);
    buf name;
    buf_init(&name);
    buf *cmd = &batch.text; /* each XADD is written straight into the batch */
    size_t maxlen_len = strlen(maxlen);
    last = *checkpoint;
    for (int i = 0; i < n; i++) {
        stored_event *e = evs[i];
        if (e->position <= last) continue;
        char entry[32], pos[24];
        size_t pos_len = fmt_lld(pos, e->position);
        memcpy(entry, pos, pos_len);
        memcpy(entry + pos_len, "-0", 3);
        name.len = 0;
        buf_puts(&name, cfg->redis_prefix);
        if (strcmp(e->tenant, "default") != 0) {
            buf_puts(&name, e->tenant);
            buf_puts(&name, ":");
        }
        buf_puts(&name, e->stream);
        size_t start = cmd->len;
        static const char xadd[] = "*14\r\n$4\r\nXADD\r\n$";
        buf_append(cmd, xadd, sizeof xadd - 1);
        buf_lld(cmd, (long long)name.len);
        buf_append(cmd, "\r\n", 2);
        buf_append(cmd, name.data, name.len);
        buf_append(cmd, "\r\n", 2);
        const char *args[] = {"MAXLEN", "~",     maxlen,     entry, "id",    e->id,
                              "type",   e->type, "position", pos,   "event", e->json};
        size_t lens[] = {6, 1,       maxlen_len, pos_len + 2, 2, strlen(e->id), 4, strlen(e->type),
                         8, pos_len, 5,          e->json_len};
        for (int k = 0; k < 12; k++) {
            buf_append(cmd, "$", 1);
            buf_lld(cmd, (long long)lens[k]);
            buf_append(cmd, "\r\n", 2);
            buf_append(cmd, args[k], lens[k]);
            buf_append(cmd, "\r\n", 2);
        }
        redis_batch_added(&batch, name.data, name.len, start);
        last = e->position;
        sent++;
    }
    buf_dispose(&name);
    int rc = 0;
    char *key = relay_checkpoint_key(cfg);
    char last_text[24];
    size_t last_len = fmt_lld(last_text, last);
    const char *set[] = {"SET", key, last_text};
    size_t set_lens[] = {3, strlen(key), last_len};
    bool cluster = redis_is_cluster(r);
    if (sent && !cluster) redis_batch_add_argv(&batch, key, 3, set, set_lens);
    /* Entries with explicit ids are harmless twice: a cluster sends again what a failed
     * node may not have taken. */
    if (sent && redis_batch_run(r, &batch, true) > 0) rc = RELAY_REDIS_FAILED;
    for (int i = 0; sent && i < batch.n; i++) {
        redisReply *rep = batch.replies[i];
        if (rep && rep->type == REDIS_REPLY_ERROR && !strstr(rep->str, "equal or smaller")) {
            log_warn("relay", "redis refused an entry", json_pack("{s:s}", "error", rep->str));
            rc = RELAY_REDIS_FAILED;
        }
    }
    redis_batch_dispose(&batch);
    if (sent && cluster && rc == 0) {
        redisReply *rep = redis_command_argv(r, key, 3, set, set_lens);
        if (!rep || rep->type == REDIS_REPLY_ERROR) rc = RELAY_REDIS_FAILED;
        freeReplyObject(rep);
    }
    free(key);
    if (!sent) return 0;
    if (rc == 0) *checkpoint = last;
    if (rc == 0) consume_wake(); /* consumers waiting on a group may have new messages */
    return rc;
}

/* Relays one page read from PostgreSQL after *checkpoint. Returns rows read,
 * RELAY_PG_FAILED or RELAY_REDIS_FAILED. */
static int relay_page(PGconn **pg, redis_conn *r, long long *checkpoint)
{
    stored_event **evs;
    int n = eventlog_read(pg, *checkpoint, RELAY_PAGE, RELAY_TIMEOUT_MS, &evs);
    if (n < 0) return RELAY_PG_FAILED;
    int rc = n ? relay_events(r, evs, n, checkpoint, false) : 0;
    for (int i = 0; i < n; i++)
        stored_event_unref(evs[i]);
    free(evs);
    return rc < 0 ? rc : n;
}

/* ------------------------------------------------------------------ the rewind */

/* Redis replicates asynchronously: a cluster master that dies can take with it the last
 * entries it acknowledged, while the checkpoint, on another node, says they are in. So
 * the relay remembers where each of its recent pipelines started, and after a cluster
 * node failed it starts again from where it stood RELAY_REWIND_MS before its last
 * pipeline: what Redis still has is refused as a duplicate (entry ids are positions), what
 * the dead master lost is added again, in order, since a replica's copy is a prefix of
 * its master's writes. One Redis keeps the checkpoint beside the streams, so it loses
 * both or neither: no rewind. Owned by the relay thread. */

#define RELAY_REWIND_MS 1000
#define RELAY_HISTORY 1024

static struct {
    int64_t at_ms;
    long long from; /* the checkpoint a pipeline started from */
} history[RELAY_HISTORY];
static int history_n, history_next;
static long long rewind_to = -1; /* where to start again after a failure, or -1 */

/* A pipeline starting at checkpoint `from` succeeded (with the checkpoint written after
 * it, so a rewind in progress is now in Redis's checkpoint too). */
static void history_note(long long from)
{
    history[history_next].at_ms = time_mono_ms();
    history[history_next].from = from;
    history_next = (history_next + 1) % RELAY_HISTORY;
    if (history_n < RELAY_HISTORY) history_n++;
    rewind_to = -1;
}

/* `r` failed: the earliest start of a pipeline within RELAY_REWIND_MS of the last one
 * becomes the place to start again (one Redis: none). */
static void history_failed(const redis_conn *r)
{
    if (r && redis_is_cluster(r) && history_n > 0) {
        int newest = (history_next + RELAY_HISTORY - 1) % RELAY_HISTORY;
        int64_t since = history[newest].at_ms - RELAY_REWIND_MS;
        for (int k = 0; k < history_n; k++) {
            int i = (history_next + RELAY_HISTORY - 1 - k) % RELAY_HISTORY;
            if (history[i].at_ms < since) break;
            if (rewind_to < 0 || history[i].from < rewind_to) rewind_to = history[i].from;
        }
    }
    history_n = history_next = 0;
}

/* The checkpoint to relay from after reading `checkpoint` from Redis. */
static long long history_rewound(long long checkpoint)
{
    if (rewind_to < 0 || rewind_to >= checkpoint) return checkpoint;
    log_info("relay", "a redis node failed; sending the last entries again",
             json_pack("{s:I,s:I}", "from", (json_int_t)rewind_to, "checkpoint",
                       (json_int_t)checkpoint));
    return rewind_to;
}

/* ------------------------------------------------------------------ the thread */

typedef enum { NOT_LEADER, CATCHING_UP, LIVE } relay_mode;

static void lead(bool yes)
{
    if (yes == atomic_load(&leader)) return;
    if (yes) {
        live_feed_start(&feed);
        log_info("relay", "this instance is the relay leader", NULL);
    } else {
        live_feed_stop(&feed);
    }
    atomic_store(&leader, yes);
}

/* Leaves live mode: the hub stops delivering after `checkpoint`; the ring is emptied. */
static void fall_behind(long long checkpoint)
{
    live_feed_fall_behind(&feed, checkpoint);
}

static void *relay_main(void *unused)
{
    (void)unused;
    PGconn *pg = NULL;
    redis_conn *r = NULL;
    long long checkpoint = -1;
    bool redis_down_logged = false, live = false;
    int64_t alive_checked = 0;
    stored_event *batch[RELAY_PAGE];
    while (!worker_stopping(&runner)) {
        if (!pg) {
            lead(false);
            live = false;
            checkpoint = -1;
            pg = db_connect(cfg->database_url, "relay");
            if (!pg) {
                sleep_ms(1000);
                continue;
            }
        }
        if (!atomic_load(&leader)) {
            PGresult *res = db_exec(&pg, "SELECT pg_try_advisory_lock(" LOCK_RELAY ")", 0, NULL,
                                    RELAY_TIMEOUT_MS);
            bool got = db_ok(res) && PQgetvalue(res, 0, 0)[0] == 't';
            PQclear(res);
            if (!got) {
                sleep_ms(1000);
                continue;
            }
            lead(true);
        }
        if (!r) {
            if (live) fall_behind(checkpoint);
            live = false;
            r = redis_connect(cfg->redis_url, RELAY_REDIS_TIMEOUT_MS, "relay");
            if (!r) {
                if (!redis_down_logged)
                    log_warn("relay", "redis unreachable; events wait in PostgreSQL", NULL);
                redis_down_logged = true;
                sleep_ms(500);
                continue;
            }
            if (redis_down_logged)
                log_info("relay", "redis reachable again; relaying the backlog", NULL);
            redis_down_logged = false;
            checkpoint = -1;
        }
        if (checkpoint < 0 && (checkpoint = read_checkpoint(r)) < 0) {
            redis_free(r);
            r = NULL;
            continue;
        }
        checkpoint = history_rewound(checkpoint);
        if (!live) {
            long long before = checkpoint;
            int n = relay_page(&pg, r, &checkpoint);
            if (checkpoint != before) history_note(before);
            if (n == RELAY_REDIS_FAILED) {
                history_failed(r);
                redis_free(r);
                r = NULL;
            } else if (n < 0) {
                PQfinish(pg); /* leadership goes with the session */
                pg = NULL;
            } else if (n < RELAY_PAGE) {
                live = live_feed_try_go_live(&feed, checkpoint);
            }
            continue;
        }
        int n = live_feed_take(&feed, batch, RELAY_PAGE, 100);
        long long before = checkpoint;
        int rc = n < 0 ? RELAY_GAP : relay_events(r, batch, n, &checkpoint, true);
        if (checkpoint != before) history_note(before);
        for (int i = 0; i < n; i++)
            stored_event_unref(batch[i]);
        if (rc != 0) {
            live = false;
            fall_behind(checkpoint);
        }
        if (rc == RELAY_REDIS_FAILED) {
            history_failed(r);
            redis_free(r);
            r = NULL;
            checkpoint = -1;
        }
        if (time_mono_ms() - alive_checked >= RELAY_ALIVE_MS) { /* still the leader? */
            alive_checked = time_mono_ms();
            if (!db_alive(pg)) {
                PQfinish(pg);
                pg = NULL;
            }
        }
    }
    /* Shutdown: flush what was committed before the appender stopped (bounded). */
    if (pg && r && atomic_load(&leader) && checkpoint >= 0) {
        if (live) {
            int n;
            while ((n = live_feed_take(&feed, batch, RELAY_PAGE, 100)) > 0) {
                int rc = relay_events(r, batch, n, &checkpoint, true);
                for (int i = 0; i < n; i++)
                    stored_event_unref(batch[i]);
                if (rc != 0) break;
            }
        }
        for (int i = 0; i < 20; i++)
            if (relay_page(&pg, r, &checkpoint) < RELAY_PAGE) break;
    }
    lead(false);
    redis_free(r);
    PQfinish(pg);
    return NULL;
}

int relay_start(const sluice_config *c)
{
    cfg = c;
    char *probe = xasprintf("%sx", c->redis_prefix), *side = NULL;
    if (redis_url_is_cluster(c->redis_url) && !(side = redis_cluster_side_key(probe, ":due")))
        log_fatal("relay",
                  "with a Redis Cluster, SLUICE_REDIS_PREFIX may hold a '}' only "
                  "in a {hash tag}: the keys beside a stream must share its slot",
                  json_pack("{s:s}", "prefix", c->redis_prefix));
    free(side);
    free(probe);
    live_feed_init(&feed, RELAY_RING, NULL, NULL);
    return worker_start(&runner, relay_main);
}

void relay_stop(void)
{
    worker_stop(&runner);
    live_feed_dispose(&feed);
}
