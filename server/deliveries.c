/*
 * deliveries.c — moving one message of a consumer group (see deliveries.h).
 */
#include "deliveries.h"
#include "db.h"
#include "eventlog.h"
#include "log.h"
#include "mem.h"
#include "redis.h"
#include "streams.h"
#include "timeutil.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DELIVERIES_PG_TIMEOUT_MS 10000

/* ------------------------------------------------------------------ policy */

retry_strategy deliveries_strategy(const char *name)
{
    if (name && !strcmp(name, "linear")) return RETRY_LINEAR;
    if (name && !strcmp(name, "fixed")) return RETRY_FIXED;
    return RETRY_EXPONENTIAL;
}

const char *deliveries_strategy_name(retry_strategy s)
{
    return s == RETRY_LINEAR ? "linear" : s == RETRY_FIXED ? "fixed" : "exponential";
}

long long deliveries_backoff_ms(const group_policy *p, long long attempt, long long position)
{
    if (attempt < 1) attempt = 1;
    long long d = p->base_delay_ms;
    if (p->strategy == RETRY_LINEAR) {
        bool past = p->base_delay_ms && attempt > p->max_delay_ms / p->base_delay_ms + 1;
        d = past ? p->max_delay_ms : p->base_delay_ms * attempt;
    } else if (p->strategy == RETRY_EXPONENTIAL) {
        for (long long i = 1; i < attempt && d < p->max_delay_ms; i++) d *= 2;
    }
    if (d > p->max_delay_ms) d = p->max_delay_ms;
    if (p->jitter && d > 1) {
        /* Within ±50 %, fixed per entry and attempt so consecutive sweeps and every
         * instance agree on when a retry is due. */
        unsigned long long h = (unsigned long long)position * 2654435761ULL +
                               (unsigned long long)attempt * 40503ULL;
        h ^= h >> 17;
        h *= 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
        d = d / 2 + (long long)(h % (unsigned long long)(d + 1));
    }
    return d;
}

void group_ref_init(group_ref *g, const sluice_config *cfg, const char *tenant,
                    const char *stream, const char *group)
{
    g->tenant = tenant;
    g->stream = stream;
    g->group = group;
    g->key = streams_redis_name(cfg, tenant, stream);
    bool cluster = redis_url_is_cluster(cfg->redis_url);
    char *handback = xasprintf(":handback:%s", group), *due = xasprintf(":due:%s", group);
    g->handback = redis_side_key(cluster, g->key, handback);
    g->due = redis_side_key(cluster, g->key, due);
    free(handback);
    free(due);
}

void group_ref_dispose(group_ref *g)
{
    free(g->key);
    free(g->handback);
    free(g->due);
    g->key = g->handback = g->due = NULL;
}

/* ------------------------------------------------------------------ scripts */

/* A Lua script run by its SHA1 (EVALSHA), loaded on first use by each Redis (EVAL when
 * Redis answers NOSCRIPT). */
typedef struct lua_script {
    const char *src;
    char sha[41];
} lua_script;

static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

/* The move of one pending entry. KEYS: stream, handback hash, due hash. ARGV: group, entry
 * id, expected owner, expected count (-1: any), min idle, new owner, RETRYCOUNT (-1: keep),
 * "entry" (answer the entry) or "id", the handback value ("" = delete the field), the due
 * value ("" = delete). Answers 0 when the entry is not where expected. */
static lua_script move_lua = {
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)\n"
    "if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end\n"
    "if tonumber(ARGV[4]) >= 0 and tonumber(p[1][4]) ~= tonumber(ARGV[4]) then return 0 end\n"
    "if tonumber(p[1][3]) < tonumber(ARGV[5]) then return 0 end\n"
    "local a = {'XCLAIM', KEYS[1], ARGV[1], ARGV[6], 0, ARGV[2]}\n"
    "if tonumber(ARGV[7]) >= 0 then a[#a + 1] = 'RETRYCOUNT'; a[#a + 1] = ARGV[7] end\n"
    "if ARGV[8] ~= 'entry' then a[#a + 1] = 'JUSTID' end\n"
    "local r = redis.call(unpack(a))\n"
    "if ARGV[9] == '' then redis.call('HDEL', KEYS[2], ARGV[2])\n"
    "else redis.call('HSET', KEYS[2], ARGV[2], ARGV[9]) end\n"
    "if ARGV[10] == '' then redis.call('HDEL', KEYS[3], ARGV[2])\n"
    "else redis.call('HSET', KEYS[3], ARGV[2], ARGV[10]) end\n"
    "if ARGV[8] == 'entry' then return r end\n"
    "return 1\n",
    ""};

/* Receipt-checked acks and extensions of one owner's deliveries. KEYS: stream, handback,
 * due. ARGV: group, "ack" or "extend", the extend deadline ("" = none), the lowest and
 * highest id, the owner, then (id, count) pairs. Answers one 1/0 per pair. One XPENDING over
 * the owner's entries in the id range checks them all (at most 10,000 of the owner's
 * pending entries in that range are seen); the acknowledged ids go in one XACK and one HDEL
 * per hash that exists. */
static lua_script apply_lua = {
    "local out, ok = {}, {}\n"
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[4], ARGV[5], 10000, ARGV[6])\n"
    "local count = {}\n"
    "for _, e in ipairs(p) do count[e[1]] = tonumber(e[4]) end\n"
    "for i = 7, #ARGV, 2 do\n"
    "  if count[ARGV[i]] == tonumber(ARGV[i + 1]) then\n"
    "    out[#out + 1] = 1\n"
    "    ok[#ok + 1] = i\n"
    "    count[ARGV[i]] = nil\n"
    "  else\n"
    "    out[#out + 1] = 0\n"
    "  end\n"
    "end\n"
    "if #ok > 0 then\n"
    "  local ids = {}\n"
    "  for k, i in ipairs(ok) do ids[k] = ARGV[i] end\n"
    "  if ARGV[2] == 'ack' then\n"
    "    redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))\n"
    "    if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HDEL', KEYS[2], unpack(ids)) end\n"
    "    if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HDEL', KEYS[3], unpack(ids)) end\n"
    "  else\n"
    "    for _, i in ipairs(ok) do\n"
    "      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[6], 0, ARGV[i], 'RETRYCOUNT', "
    "ARGV[i + 1], 'JUSTID')\n"
    "      if ARGV[3] == '' then redis.call('HDEL', KEYS[3], ARGV[i])\n"
    "      else redis.call('HSET', KEYS[3], ARGV[i], ARGV[3]) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n",
    ""};

/* A fetch's first look, in one round trip. KEYS: stream. ARGV: group, consumer, count, how
 * many parked entries to list. Answers {1, parked entries} when retries are parked (the
 * caller decides which are due), else {0, XREADGROUP's answer for new entries}. */
static lua_script look_lua = {
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[4], 'sluice-retry')\n"
    "if #p > 0 then return {1, p} end\n"
    "return {0, redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], "
    "'STREAMS', KEYS[1], '>')}\n",
    ""};

/* One HSCAN step over a hash beside the stream, forgetting fields of entries that are no
 * longer pending. KEYS: stream, hash. ARGV: group, cursor, count. Answers the next cursor. */
static lua_script forget_lua = {
    "local s = redis.call('HSCAN', KEYS[2], ARGV[2], 'COUNT', ARGV[3])\n"
    "local f = s[2]\n"
    "for i = 1, #f, 2 do\n"
    "  local ok, p = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], f[i], f[i], 1)\n"
    "  if not ok or #p == 0 then redis.call('HDEL', KEYS[2], f[i]) end\n"
    "end\n"
    "return s[1]\n",
    ""};

static void sha1_hex(lua_script *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(s->src, strlen(s->src), md, &n, EVP_sha1(), NULL);
    for (unsigned i = 0; i < n && i < 20; i++) snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
}

static void shas_init(void)
{
    sha1_hex(&move_lua);
    sha1_hex(&apply_lua);
    sha1_hex(&forget_lua);
    sha1_hex(&look_lua);
}

/* EVALSHA, then EVAL if Redis does not have the script yet. argv[0..1] are filled here
 * (argc counts them). */
static redisReply *run_script(redis_conn *r, lua_script *s, int argc, const char **argv,
                              size_t *lens)
{
    pthread_once(&sha_once, shas_init);
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = s->sha;
    lens[1] = 40;
    /* argv[3] is KEYS[1], the stream: every key of a script shares its slot. */
    redisReply *rep = redis_command_argv(r, argv[3], argc, argv, lens);
    if (rep && rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "NOSCRIPT", 8)) {
        freeReplyObject(rep);
        argv[0] = "EVAL";
        lens[0] = 4;
        argv[1] = s->src;
        lens[1] = strlen(s->src);
        rep = redis_command_argv(r, argv[3], argc, argv, lens);
    }
    return rep;
}

/* Fills lens[] for argv[from..argc) with strlen. */
static void lens_of(const char **argv, size_t *lens, int from, int argc)
{
    for (int i = from; i < argc; i++) lens[i] = strlen(argv[i]);
}

/* ------------------------------------------------------------------ moves */

typedef struct move {
    const char *to;
    long long retrycount; /* -1: keep */
    bool entry;           /* answer the entry (a delivery), not just its id */
    const char *handback; /* "" = clear */
    const char *due;      /* "" = clear */
} move;

static int move_entry(redis_conn *r, const group_ref *g, long long position, entry_seen seen,
                      const move *m, redisReply **entry)
{
    char id[32], count[24], idle[24], rc[24];
    snprintf(id, sizeof id, "%lld-0", position);
    snprintf(count, sizeof count, "%lld", seen.deliveries);
    snprintf(idle, sizeof idle, "%lld", seen.min_idle_ms);
    snprintf(rc, sizeof rc, "%lld", m->retrycount);
    const char *argv[] = {NULL, NULL, "3", g->key, g->handback, g->due, g->group, id,
                          seen.owner, count, idle, m->to, rc, m->entry ? "entry" : "id",
                          m->handback, m->due};
    size_t lens[16];
    lens_of(argv, lens, 2, 16);
    redisReply *rep = run_script(r, &move_lua, 16, argv, lens);
    int out = MOVE_REDIS_ERROR;
    if (!rep) {
        out = MOVE_REDIS_ERROR;
    } else if (rep->type == REDIS_REPLY_INTEGER) {
        out = rep->integer == 1 ? MOVE_DONE : MOVE_NOT_THERE;
    } else if (rep->type == REDIS_REPLY_ARRAY) {
        out = MOVE_DONE;
        if (entry) {
            *entry = rep;
            return out;
        }
    } else if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "NOGROUP")) {
        out = MOVE_NO_GROUP;
    } else if (rep->type == REDIS_REPLY_ERROR) {
        log_warn("deliveries", "moving a pending entry failed", json_pack("{s:s}", "error", rep->str));
    }
    freeReplyObject(rep);
    return out;
}

int deliveries_park(redis_conn *r, const group_ref *g, long long position, entry_seen seen,
                    long long attempts, long long due_ms)
{
    char due[24] = "";
    if (due_ms > 0) snprintf(due, sizeof due, "%lld", due_ms);
    move m = {DELIVERIES_RETRY_CONSUMER, attempts, false, "", due};
    return move_entry(r, g, position, seen, &m, NULL);
}

int deliveries_hand_back(redis_conn *r, const group_ref *g, long long position, entry_seen seen,
                         const char *worker)
{
    char hb[24];
    snprintf(hb, sizeof hb, "%lld", seen.deliveries);
    move m = {worker, seen.deliveries, false, hb, ""};
    return move_entry(r, g, position, seen, &m, NULL);
}

int deliveries_take(redis_conn *r, const group_ref *g, long long position, entry_seen seen,
                    const char *consumer, long long attempt, redisReply **entry)
{
    *entry = NULL;
    move m = {consumer, attempt, true, "", ""};
    return move_entry(r, g, position, seen, &m, entry);
}

int deliveries_revive(redis_conn *r, const group_ref *g, long long position)
{
    char due[24];
    snprintf(due, sizeof due, "%lld", (long long)time_now_ms());
    entry_seen dead = {DELIVERIES_DEAD_CONSUMER, -1, 0};
    move m = {DELIVERIES_RETRY_CONSUMER, 0, false, "", due};
    return move_entry(r, g, position, dead, &m, NULL);
}

bool deliveries_entry_view(const redisReply *entry, entry_view *out)
{
    memset(out, 0, sizeof *out);
    if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        !entry->element[0]->str)
        return false;
    out->position = strtoll(entry->element[0]->str, NULL, 10);
    const redisReply *f = entry->element[1];
    for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (!k->str || !v->str) continue;
        if (!strcmp(k->str, "id")) out->id = v->str;
        else if (!strcmp(k->str, "type")) out->type = v->str;
        else if (!strcmp(k->str, "event")) {
            out->json = v->str;
            out->json_len = v->len;
        }
    }
    return out->json && out->id && out->type && out->position > 0;
}

void deliveries_record_failure(PGconn **conn, const group_ref *g, long long position,
                               const char *consumer, const char *error, long long delivery)
{
    char pos[24], del[24];
    snprintf(pos, sizeof pos, "%lld", position);
    snprintf(del, sizeof del, "%lld", delivery);
    const char *p[] = {g->tenant, g->stream, g->group, pos, consumer, error, del};
    PGresult *r = db_exec(conn,
                          "INSERT INTO delivery_failures (tenant_id, stream, group_name, position, "
                          "consumer, errors) VALUES ($1, $2, $3, $4::bigint, $5, "
                          "jsonb_build_array(jsonb_build_object('time', now(), 'consumer', $5::text, "
                          "'delivery', $7::int, 'error', $6::text))) ON CONFLICT (tenant_id, "
                          "stream, group_name, position) DO UPDATE SET consumer = "
                          "EXCLUDED.consumer, errors = delivery_failures.errors || EXCLUDED.errors, "
                          "updated_at = now()",
                          7, p, DELIVERIES_PG_TIMEOUT_MS);
    PQclear(r);
}

int deliveries_dead_letter(PGconn **conn, redis_conn *r, const group_ref *g, long long position,
                           const char *consumer, long long attempts, entry_seen seen,
                           const char *error)
{
    move m = {DELIVERIES_DEAD_CONSUMER, attempts, false, "", ""};
    int moved = move_entry(r, g, position, seen, &m, NULL);
    if (moved != MOVE_DONE) return moved;
    char pos[24], del[24];
    snprintf(pos, sizeof pos, "%lld", position);
    snprintf(del, sizeof del, "%lld", attempts);
    const char *p[] = {g->tenant, g->stream, g->group, pos, consumer, del, error};
    PGresult *res = db_exec(
        conn,
        "WITH f AS (DELETE FROM delivery_failures WHERE tenant_id = $1 AND stream = $2 AND "
        "group_name = $3 AND position = $4::bigint RETURNING errors), "
        "e AS (SELECT id, type, row_to_json(x)::jsonb AS event FROM (SELECT " EVENTLOG_COLUMNS
        " FROM events WHERE tenant_id = $1 AND "
        "position = $4::bigint) x) "
        "INSERT INTO dead_letters (tenant_id, source, stream, group_name, consumer, event_id, "
        "event_position, delivery_count, errors, type, event, history) SELECT $1, 'group', $2, "
        "$3, $5, coalesce((SELECT id FROM e), ''), $4::bigint, $6::int, coalesce((SELECT errors "
        "FROM f), '[]') || CASE WHEN $7::text IS NULL THEN '[]'::jsonb ELSE jsonb_build_array("
        "jsonb_build_object('time', now(), 'consumer', $5::text, 'delivery', $6::int, 'error', "
        "$7::text)) END, (SELECT type FROM e), (SELECT event FROM e), jsonb_build_array("
        "jsonb_build_object('time', now(), 'status', 'open', 'note', 'dead-lettered after ' || "
        "$6 || ' deliveries')) "
        "ON CONFLICT (tenant_id, stream, group_name, event_position) WHERE source = 'group' DO "
        "UPDATE SET status = 'open', consumer = EXCLUDED.consumer, delivery_count = "
        "dead_letters.delivery_count + EXCLUDED.delivery_count, errors = dead_letters.errors || "
        "EXCLUDED.errors, last_failed_at = now(), history = dead_letters.history || "
        "EXCLUDED.history",
        7, p, DELIVERIES_PG_TIMEOUT_MS);
    bool ok = db_ok(res);
    if (!ok && res) db_log_error("deliveries", "writing a dead letter failed", res);
    PQclear(res);
    return ok ? MOVE_DONE : -3;
}

/* One script call for the refs of one owner: refs[idx[0..n)], whose owners are equal. */
static int apply_owner(redis_conn *r, const group_ref *g, deliveries_action action,
                       const delivery_ref *refs, const int *idx, int n, const char *deadline,
                       int *out)
{
    enum { HEAD = 12 }; /* EVALSHA sha 3 keys×3 group action deadline lo hi owner */
    int argc = HEAD + 2 * n;
    const char **argv = xcalloc((size_t)argc, sizeof *argv);
    size_t *lens = xcalloc((size_t)argc, sizeof *lens);
    char (*nums)[2][32] = xcalloc((size_t)n + 1, sizeof *nums);
    char lo[32], hi[32];
    long long min = refs[idx[0]].position, max = min;
    for (int k = 0; k < n; k++) {
        long long p = refs[idx[k]].position;
        if (p < min) min = p;
        if (p > max) max = p;
        snprintf(nums[k][0], sizeof nums[k][0], "%lld-0", p);
        snprintf(nums[k][1], sizeof nums[k][1], "%lld", refs[idx[k]].count);
        argv[HEAD + 2 * k] = nums[k][0];
        argv[HEAD + 2 * k + 1] = nums[k][1];
    }
    snprintf(lo, sizeof lo, "%lld-0", min);
    snprintf(hi, sizeof hi, "%lld-0", max);
    const char *head[HEAD] = {NULL, NULL, "3", g->key, g->handback, g->due, g->group,
                              action == DELIVERIES_ACK ? "ack" : "extend", deadline, lo, hi,
                              refs[idx[0]].owner};
    memcpy(argv, head, sizeof head);
    lens_of(argv, lens, 2, argc);
    redisReply *rep = run_script(r, &apply_lua, argc, argv, lens);
    int rc = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == (size_t)n) {
        for (int k = 0; k < n; k++)
            out[idx[k]] = rep->element[k]->type == REDIS_REPLY_INTEGER && rep->element[k]->integer == 1;
        rc = 0;
    } else if (rep && rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "NOGROUP")) {
        for (int k = 0; k < n; k++) out[idx[k]] = 0; /* nothing is pending in a group Redis lost */
        rc = 0;
    } else if (rep && rep->type == REDIS_REPLY_ERROR) {
        log_warn("deliveries", "acknowledging failed", json_pack("{s:s}", "error", rep->str));
    }
    freeReplyObject(rep);
    free(nums);
    free(lens);
    free(argv);
    return rc;
}

int deliveries_apply(redis_conn *r, const group_ref *g, deliveries_action action,
                     const delivery_ref *refs, int n, long long deadline_ms, int *out)
{
    char deadline[24] = "";
    if (deadline_ms > 0) snprintf(deadline, sizeof deadline, "%lld", deadline_ms);
    int *idx = xcalloc((size_t)n + 1, sizeof *idx);
    bool *done = xcalloc((size_t)n + 1, sizeof *done);
    int rc = 0;
    /* One call per owner, in the order owners first appear. */
    for (int i = 0; i < n && rc == 0; i++) {
        if (done[i]) continue;
        int m = 0;
        for (int k = i; k < n; k++)
            if (!done[k] && !strcmp(refs[k].owner, refs[i].owner)) {
                idx[m++] = k;
                done[k] = true;
            }
        rc = apply_owner(r, g, action, refs, idx, m, deadline, out);
    }
    free(done);
    free(idx);
    return rc;
}

int deliveries_marks(redis_conn *r, const char *hash, const long long *positions, int n,
                     long long *out)
{
    int argc = 2 + n;
    const char **argv = xcalloc((size_t)argc, sizeof *argv);
    size_t *lens = xcalloc((size_t)argc, sizeof *lens);
    char (*ids)[32] = xcalloc((size_t)n + 1, sizeof *ids);
    argv[0] = "HMGET";
    argv[1] = hash;
    for (int i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "%lld-0", positions[i]);
        argv[2 + i] = ids[i];
    }
    lens_of(argv, lens, 0, argc);
    redisReply *rep = redis_command_argv(r, hash, argc, argv, lens);
    int rc = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == (size_t)n) {
        for (int i = 0; i < n; i++)
            out[i] = rep->element[i]->str ? strtoll(rep->element[i]->str, NULL, 10) : -1;
        rc = 0;
    }
    freeReplyObject(rep);
    free(ids);
    free(lens);
    free(argv);
    return rc;
}

int deliveries_look(redis_conn *r, const group_ref *g, const char *consumer, int count, int scan,
                    redisReply **out)
{
    *out = NULL;
    char c[16], sc[16];
    snprintf(c, sizeof c, "%d", count);
    snprintf(sc, sizeof sc, "%d", scan);
    const char *argv[] = {NULL, NULL, "1", g->key, g->group, consumer, c, sc};
    size_t lens[8];
    lens_of(argv, lens, 2, 8);
    redisReply *rep = run_script(r, &look_lua, 8, argv, lens);
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER) {
        *out = rep;
        return (int)rep->element[0]->integer;
    }
    int rc = rep && rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "NOGROUP") ? MOVE_NO_GROUP
                                                                                    : MOVE_REDIS_ERROR;
    freeReplyObject(rep);
    return rc;
}

void deliveries_forget_settled(redis_conn *r, const group_ref *g, const char *hash,
                               long long *cursor, int budget)
{
    char cur[24], count[16];
    snprintf(cur, sizeof cur, "%lld", *cursor);
    snprintf(count, sizeof count, "%d", budget);
    const char *argv[] = {NULL, NULL, "2", g->key, hash, g->group, cur, count};
    size_t lens[8];
    lens_of(argv, lens, 2, 8);
    redisReply *rep = run_script(r, &forget_lua, 8, argv, lens);
    *cursor = rep && rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10) : 0;
    freeReplyObject(rep);
}
