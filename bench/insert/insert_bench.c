/*
 * bench/insert/insert_bench.c — one measured run of the event-store insert benchmark
 * (bench/insert/run.sh drives it; see there for the questions it answers).
 *
 *   insert_bench --url URL --method insert|copy|copybin [--clients 1] [--batches 2000]
 *                [--rows 100] [--seed 1]
 *   insert_bench --url URL --interleave SCHEMA[:METHOD],... [--batches 300] [--rows 100] ...
 *
 * Every batch is one transaction that takes the event-log advisory lock and reads the head
 * first, as server/appender.c does, so positions stay gap-free in commit order. Every event
 * is written twice, as the appender writes it: its row in `events` (partitioned by position)
 * and its (tenant_id, id, position) in event_ids, whose primary key events_tenant_id is the
 * idempotency key across the partitions:
 *
 *   insert   one libpq pipeline (one round trip), exactly the appender's fast path:
 *              BEGIN; SELECT pg_advisory_xact_lock(7341263002);
 *              SELECT set_config('sluice.head', coalesce(max(position), 0)::text, true)
 *                FROM events WHERE position >= <the head it last knew>;
 *              EXECUTE the prepared multi-row statement of 64 rows, then of the rest (36),
 *                each `WITH e AS (INSERT INTO events (...) SELECT
 *                current_setting('sluice.head')::bigint + v.p, ..., $1025::timestamptz, v.h,
 *                v.oc FROM (VALUES ($1::bigint, $2::text, ...), ...) AS v(...) RETURNING
 *                tenant_id, id, position, stream, key, version), i AS (INSERT INTO event_ids
 *                ... FROM e) INSERT INTO key_heads ... FROM e WHERE key IS NOT NULL ...`, 16
 *                text parameters a row (v.p: 1… within the batch) and the batch time last
 *                (server/appender.c insert_sql, row_params);
 *              NOTIFY sluice_events, '...'; COMMIT.
 *   copy     BEGIN; lock; head (one round trip, one simple-protocol string), then COPY events
 *            (...) FROM STDIN in text format with the absolute positions head+1.. (COPY cannot
 *            compute them, and libpq cannot pipeline a COPY: two round trips), then COPY
 *            event_ids (tenant_id, id, position) the same way (two more), then NOTIFY; COMMIT
 *            (one round trip).
 *   copybin  the same with COPY ... (FORMAT binary) (jsonb sent as version byte 1 + its text,
 *            which PostgreSQL parses with the same jsonb input function).
 *
 * Without --interleave, --batches is the total, shared evenly by --clients threads with a
 * connection each. With --interleave, one connection per SCHEMA (its search_path, so the
 * unqualified `events` and `event_ids` of the statements are SCHEMA's; the same schema may be named more
 * than once), each writing --batches batches with its METHOD (default --method); one thread
 * runs batch k of every connection in turn, so the machine's other load falls on all of them
 * alike, and each connection's backend CPU is its own.
 *
 * The rows are what a careful producer publishes to POST /v1/events: its own id (a UUID v4),
 * tenant 'default', stream 'contextual.events', type 'file.uploaded' (schema_version 1), a
 * correlation_id (one per 10 events), a user_id (one of 1,000), no causation_id, source NULL,
 * no key/version, no occurred_at, a ~330-byte `data` object, a small `metadata` object, the 64-hex
 * content_hash. Each connection builds its rows' text once; per batch only the ids,
 * correlation ids and hashes are rewritten in place, so the client CPU measured is the
 * method's own (parameters or the COPY buffer, libpq).
 *
 * CPU accounting, read after every connection is open and prepared, and again after the
 * last batch committed, before any connection closes. For each process: utime+stime, in ns
 * from /proc/<pid>/schedstat (the task's sum_exec_runtime, which /proc/<pid>/stat splits
 * into utime and stime and rounds to clock ticks), or in ticks from /proc/<pid>/stat when
 * schedstat is missing; the stat figures are printed too (stat_...).
 *   backends  the backends of this run's connections (SELECT pg_backend_pid()), read while
 *             they are alive: PostgreSQL's work for these inserts done in the backends;
 *   other     the postmaster itself and its auxiliary children (checkpointer, background
 *             writer, walwriter, autovacuum launcher, logical replication launcher): WAL
 *             writing and page flushing done outside the backends. On a cluster shared with
 *             other sessions this also carries their share, so it is an upper bound.
 *             Other client backends, autovacuum workers and exited children (the postmaster's
 *             cutime) are NOT counted: on a shared cluster they belong to other sessions
 *             (run.sh turns autovacuum off for the bench tables, so none works on them).
 *   client    this process (getrusage RUSAGE_SELF, all threads) over the same window; with
 *             --interleave, per connection, the thread's CPU time during its batches.
 *
 * Prints key=value lines (Exit 1 on any PostgreSQL error):
 *   RESULT method=M clients=N rows=R secs=S rows_per_s=… pg_backend_us_row=…
 *          pg_other_us_row=… client_us_row=… stat_backend_us_row=… stat_other_us_row=…
 *          cpu_source=schedstat|stat
 * or, with --interleave, one line per connection and a total:
 *   RESULT method=M schema=S rows=R secs=… rows_per_s=… pg_backend_us_row=… client_us_row=…
 *          stat_backend_us_row=… cpu_source=…
 *   TOTAL connections=N rows=R secs=S pg_backend_us_row=… pg_other_us_row=… client_us_row=…
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 64 /* rows per prepared INSERT, as server/appender.c INSERT_CHUNK */
#define COLS 16  /* parameters per row; one more, the batch time, ends the list */
#define MAX_ROWS 5000
#define LOCK_SQL "SELECT pg_advisory_xact_lock(7341263002)"
#define HEAD_SQL "SELECT coalesce(max(position), 0) FROM events"
/* The appender's fast-path head: from the head it last knew on, kept in sluice.head. */
#define HEAD_REL_SQL                                                                               \
    "SELECT set_config('sluice.head', coalesce(max(position), 0)::text, true) FROM events "    \
    "WHERE position >= $1::bigint"
#define NOTIFY_SQL "NOTIFY sluice_events, 'bench-insert'"
#define COPY_COLS                                                                                \
    "(position, id, tenant_id, stream, key, version, type, schema_version, correlation_id, " \
    "causation_id, user_id, source, data, metadata, time, content_hash, occurred_at)"
#define IDS_COLS "(tenant_id, id, position)"

enum method { M_INSERT, M_COPY, M_COPYBIN };

static const char *url;
static enum method method = M_INSERT;
static int n_clients = 1, n_batches = 2000, n_rows = 100;
static unsigned seed = 1;
static pthread_barrier_t barrier;

static void die(const char *what, PGconn *c)
{
    fprintf(stderr, "insert_bench: %s%s%s\n", what, c ? ": " : "", c ? PQerrorMessage(c) : "");
    exit(1);
}

static void die_res(const char *what, PGresult *r)
{
    fprintf(stderr, "insert_bench: %s: %s", what, r ? PQresultErrorMessage(r) : "no result\n");
    exit(1);
}

/* ------------------------------------------------------------------ rows */

typedef struct row {
    char id[37];    /* UUID v4 text, rewritten per batch */
    char corr[37];  /* correlation_id: one per 10 rows, as a request of 10 events */
    char user[32];  /* user_id */
    char hash[65];  /* content_hash, 64 hex */
    char *data;     /* ~300-byte JSON object */
    char *metadata; /* small JSON object */
    size_t data_len, metadata_len;
} row;

static const char *const tenant = "default", *const stream = "contextual.events",
                         *const type = "file.uploaded", *const schema_version = "1";

static uint64_t rnd(uint64_t *s)
{ /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static void hex(char *out, uint64_t v, int n)
{
    static const char d[] = "0123456789abcdef";
    for (int i = n - 1; i >= 0; i--, v >>= 4)
        out[i] = d[v & 15];
}

static void uuid4(char out[37], uint64_t *s)
{
    uint64_t a = rnd(s), b = rnd(s);
    hex(out, a >> 32, 8);
    out[8] = '-';
    hex(out + 9, a >> 16, 4);
    out[13] = '-';
    hex(out + 14, 0x4000 | (a & 0x0fff), 4);
    out[18] = '-';
    hex(out + 19, 0x8000 | (b >> 48 & 0x3fff), 4);
    out[23] = '-';
    hex(out + 24, b, 12);
    out[36] = 0;
}

static void build_rows(row *rows, int n, uint64_t *s)
{
    for (int i = 0; i < n; i++) {
        row *r = &rows[i];
        uuid4(r->id, s);
        uuid4(r->corr, s);
        snprintf(r->user, sizeof r->user, "user_%06d", (int)(rnd(s) % 1000));
        for (int k = 0; k < 4; k++)
            hex(r->hash + 16 * k, rnd(s), 16);
        r->hash[64] = 0;
        char fid[13];
        hex(fid, rnd(s), 12);
        fid[12] = 0;
        r->data_len = (size_t)asprintf(
            &r->data,
            "{\"file_id\": \"f_%s\", \"user_id\": \"%s\", \"contextual_core_id\": "
            "\"core_01HZX3K7QA7F2D9G4J8L1P6S3E\", \"filename\": "
            "\"uploads/2024/q3/quarterly-business-review-%s.pdf\", \"file_size\": %d, "
            "\"mime_type\": \"application/pdf\", \"is_browser_viewable\": true, "
            "\"storage_key\": \"s3://contextual-uploads/default/%s\"}",
            fid, r->user, fid, (int)(rnd(s) % 50000000), fid);
        r->metadata_len = (size_t)asprintf(
            &r->metadata, "{\"client\": \"web-app/4.2.1\", \"ip\": \"203.0.113.%d\"}",
            (int)(rnd(s) % 250) + 1);
    }
}

/* New ids, correlation ids and hashes for the next batch (in place: same lengths). */
static void next_batch(row *rows, int n, uint64_t *s)
{
    for (int i = 0; i < n; i++) {
        uuid4(rows[i].id, s);
        if (i % 10 == 0) uuid4(rows[i].corr, s);
        else memcpy(rows[i].corr, rows[i - i % 10].corr, 37);
        hex(rows[i].hash, rnd(s), 16);
    }
}

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void rfc3339(char out[48], int64_t us)
{
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000 / 1000));
}

/* ------------------------------------------------------------------ buffers */

typedef struct buf {
    char *d;
    size_t len, cap;
} buf;

static void put(buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->d = realloc(b->d, b->cap);
        if (!b->d) die("out of memory", NULL);
    }
    memcpy(b->d + b->len, p, n);
    b->len += n;
}

static void put_s(buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* A COPY text field: backslash, tab, newline and carriage return escaped. */
static void put_copy_text(buf *b, const char *s, size_t n)
{
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i], e = c == '\\' ? '\\' : c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : 0;
        if (!e) continue;
        put(b, s + from, i - from);
        char esc[2] = {'\\', e};
        put(b, esc, 2);
        from = i + 1;
    }
    put(b, s + from, n - from);
}

static void put_be32(buf *b, uint32_t v)
{
    unsigned char x[4] = {v >> 24, v >> 16, v >> 8, v};
    put(b, x, 4);
}

static void put_be64(buf *b, uint64_t v)
{
    put_be32(b, (uint32_t)(v >> 32));
    put_be32(b, (uint32_t)v);
}

static void put_bin_text(buf *b, const char *s, size_t n)
{
    put_be32(b, (uint32_t)n);
    put(b, s, n);
}

static void put_bin_jsonb(buf *b, const char *s, size_t n)
{
    put_be32(b, (uint32_t)n + 1);
    put(b, "\1", 1); /* jsonb binary format version 1: the text follows */
    put(b, s, n);
}

/* ------------------------------------------------------------------ SQL */

static char *insert_sql(int rows)
{
    buf b = {0};
    char tmp[512];
    put_s(&b, "WITH e AS (INSERT INTO events (position, id, tenant_id, stream, key, version, "
              "type, schema_version, correlation_id, causation_id, user_id, source, data, "
              "metadata, time, content_hash, occurred_at) SELECT current_setting('sluice.head')::"
              "bigint + v.p, v.id, v.t, v.s, v.k, v.v, v.ty, v.sv, v.c, v.ca, v.u, "
              "v.so, v.d, v.m, ");
    snprintf(tmp, sizeof tmp, "$%d::timestamptz, v.h, v.oc FROM (VALUES ", rows * COLS + 1);
    put_s(&b, tmp);
    for (int r = 0; r < rows; r++) {
        int o = r * COLS;
        snprintf(tmp, sizeof tmp,
                 "%s($%d::bigint, $%d::text, $%d::text, $%d::text, $%d::text, $%d::bigint, "
                 "$%d::text, $%d::integer, $%d::text, $%d::text, $%d::text, $%d::text, "
                 "$%d::jsonb, $%d::jsonb, $%d::text, $%d::timestamptz)",
                 r ? ", " : "", o + 1, o + 2, o + 3, o + 4, o + 5, o + 6, o + 7, o + 8, o + 9,
                 o + 10, o + 11, o + 12, o + 13, o + 14, o + 15, o + 16);
        put_s(&b, tmp);
    }
    put_s(&b, ") AS v(p, id, t, s, k, v, ty, sv, c, ca, u, so, d, m, h, oc) RETURNING tenant_id, "
              "id, position, stream, key, version), i AS (INSERT INTO event_ids (tenant_id, id, "
              "position) SELECT tenant_id, id, position FROM e) INSERT INTO key_heads (tenant_id, "
              "stream, key, version) SELECT tenant_id, stream, key, max(version) FROM e WHERE key "
              "IS NOT NULL GROUP BY tenant_id, stream, key ON CONFLICT (tenant_id, stream, key) DO "
              "UPDATE SET version = GREATEST(key_heads.version, EXCLUDED.version)");
    put(&b, "", 1);
    return b.d;
}

static void expect(PGconn *c, PGresult *r, ExecStatusType want, const char *what)
{
    if (!r || PQresultStatus(r) != want) die_res(what, r);
    (void)c;
}

/* The next result of a pipeline step (skipping the NULL that ends the previous one). */
static PGresult *next_result(PGconn *c)
{
    PGresult *r = PQgetResult(c);
    if (!r) r = PQgetResult(c);
    if (!r) die("pipeline ended early", c);
    return r;
}

/* Drains the results of a plain (non-pipeline) command; dies unless all are `want`. */
static PGresult *finish_cmd(PGconn *c, const char *what)
{
    PGresult *r, *last = NULL;
    while ((r = PQgetResult(c))) {
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) die_res(what, r);
        if (last) PQclear(last);
        last = r;
    }
    return last;
}

/* ------------------------------------------------------------------ clients */

typedef struct client {
    int index, batches;
    const char *schema; /* --interleave: this connection's search_path */
    enum method method;
    double cpu_s; /* --interleave: this thread's CPU time in this connection's batches */
    PGconn *conn;
    int backend_pid;
    long long stored;
    char known[24]; /* a head at most the true one (other clients append too): the head read's bound */
    double busy_s; /* --interleave: wall time spent in this connection's batches */
    uint64_t rng;
    row *rows;
    const char **vals;
    buf copy;
    pthread_t thread;
} client;

static char pos_text[MAX_ROWS + 1][8]; /* "1".."5000": positions within a batch */

static void batch_insert(client *cl, row *rows, int n, const char *now, const char **vals)
{
    PGconn *c = cl->conn;
    if (!PQenterPipelineMode(c)) die("pipeline mode", c);
    if (!PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsendQueryParams(c, LOCK_SQL, 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsendQueryParams(c, HEAD_REL_SQL, 1, NULL, (const char *const[]){cl->known}, NULL, NULL, 0))
        die("send", c);
    int steps = 3;
    for (int at = 0; at < n; at += CHUNK) {
        int rows_in = n - at < CHUNK ? n - at : CHUNK;
        const char **v = vals;
        for (int i = 0; i < rows_in; i++) {
            row *r = &rows[at + i];
            v[0] = pos_text[at + i + 1];
            v[1] = r->id;
            v[2] = tenant;
            v[3] = stream;
            v[4] = NULL; /* key */
            v[5] = NULL; /* version */
            v[6] = type;
            v[7] = schema_version;
            v[8] = r->corr;
            v[9] = NULL; /* causation_id */
            v[10] = r->user;
            v[11] = NULL; /* source */
            v[12] = r->data;
            v[13] = r->metadata;
            v[14] = r->hash;
            v[15] = NULL; /* occurred_at */
            v += COLS;
        }
        *v = now;
        char name[16];
        snprintf(name, sizeof name, "ins_r%d", rows_in);
        if (!PQsendQueryPrepared(c, name, rows_in * COLS + 1, vals, NULL, NULL, 0)) die("send", c);
        steps++;
    }
    if (!PQsendQueryParams(c, NOTIFY_SQL, 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(c))
        die("send", c);
    for (int i = 0; i < steps + 2; i++) {
        PGresult *r = next_result(c);
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) die_res("batch", r);
        if (i == steps + 1 && strcmp(PQcmdStatus(r), "COMMIT") != 0) die_res("commit", r);
        PQclear(r);
    }
    PGresult *r = PQgetResult(c); /* the end of COMMIT's results */
    if (r) die_res("unexpected result", r);
    r = PQgetResult(c);
    if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC) die_res("no sync", r);
    PQclear(r);
    if (!PQexitPipelineMode(c)) die("exit pipeline mode", c);
    cl->stored += n;
    snprintf(cl->known, sizeof cl->known, "%lld", strtoll(cl->known, NULL, 10) + n);
}

/* One COPY ... FROM STDIN of the rows in `b`: two round trips (CopyInResponse, then the
 * data and its end). */
static void copy_in(PGconn *c, const char *sql, const buf *b)
{
    PGresult *r = PQexec(c, sql);
    expect(c, r, PGRES_COPY_IN, "COPY");
    PQclear(r);
    if (PQputCopyData(c, b->d, (int)b->len) != 1 || PQputCopyEnd(c, NULL) != 1)
        die("COPY data", c);
    r = PQgetResult(c);
    expect(c, r, PGRES_COMMAND_OK, "COPY end");
    PQclear(r);
    while ((r = PQgetResult(c)))
        PQclear(r);
}

static void put_bin_header(buf *b)
{
    static const char sig[] = "PGCOPY\n\377\r\n";
    put(b, sig, 11);
    put_be32(b, 0); /* flags */
    put_be32(b, 0); /* header extension length */
}

static void batch_copy(client *cl, row *rows, int n, const char *now, int64_t now_us_v, buf *b)
{
    PGconn *c = cl->conn;
    bool text = cl->method == M_COPY;
    /* Round trip 1: BEGIN; the lock; the head (one simple-protocol string, three results). */
    if (!PQsendQuery(c, "BEGIN; " LOCK_SQL "; " HEAD_SQL)) die("send", c);
    PGresult *head = finish_cmd(c, "begin/lock/head");
    long long pos0 = strtoll(PQgetvalue(head, 0, 0), NULL, 10), pos = pos0;
    PQclear(head);
    /* Round trips 2 and 3: the events. */
    b->len = 0;
    char num[24];
    if (text) {
        for (int i = 0; i < n; i++) {
            row *w = &rows[i];
            int k = snprintf(num, sizeof num, "%lld", ++pos);
            put(b, num, (size_t)k);
            put(b, "\t", 1);
            put_s(b, w->id);
            put_s(b, "\tdefault\tcontextual.events\t\\N\t\\N\tfile.uploaded\t1\t");
            put_s(b, w->corr);
            put(b, "\t\\N\t", 4);
            put_s(b, w->user);
            put(b, "\t\\N\t", 4);
            put_copy_text(b, w->data, w->data_len);
            put(b, "\t", 1);
            put_copy_text(b, w->metadata, w->metadata_len);
            put(b, "\t", 1);
            put_s(b, now);
            put(b, "\t", 1);
            put_s(b, w->hash);
            put(b, "\t\\N\n", 4); /* occurred_at */
        }
    } else {
        put_bin_header(b);
        uint64_t pg_time = (uint64_t)(now_us_v - 946684800000000LL); /* since 2000-01-01 */
        for (int i = 0; i < n; i++) {
            row *w = &rows[i];
            unsigned char nf[2] = {0, 17};
            put(b, nf, 2);
            put_be32(b, 8), put_be64(b, (uint64_t)++pos);
            put_bin_text(b, w->id, 36);
            put_bin_text(b, tenant, 7);
            put_bin_text(b, stream, 17);
            put_be32(b, UINT32_MAX); /* key NULL */
            put_be32(b, UINT32_MAX); /* version NULL */
            put_bin_text(b, type, 13);
            put_be32(b, 4), put_be32(b, 1); /* schema_version */
            put_bin_text(b, w->corr, 36);
            put_be32(b, UINT32_MAX); /* causation_id NULL */
            put_bin_text(b, w->user, strlen(w->user));
            put_be32(b, UINT32_MAX); /* source NULL */
            put_bin_jsonb(b, w->data, w->data_len);
            put_bin_jsonb(b, w->metadata, w->metadata_len);
            put_be32(b, 8), put_be64(b, pg_time);
            put_bin_text(b, w->hash, 64);
            put_be32(b, UINT32_MAX); /* occurred_at NULL */
        }
        unsigned char trailer[2] = {0xff, 0xff};
        put(b, trailer, 2);
    }
    copy_in(c, text ? "COPY events " COPY_COLS " FROM STDIN"
                    : "COPY events " COPY_COLS " FROM STDIN (FORMAT binary)", b);
    /* Round trips 4 and 5: their ids. */
    b->len = 0;
    pos = pos0;
    if (text) {
        for (int i = 0; i < n; i++) {
            put_s(b, tenant);
            put(b, "\t", 1);
            put_s(b, rows[i].id);
            int k = snprintf(num, sizeof num, "\t%lld\n", ++pos);
            put(b, num, (size_t)k);
        }
    } else {
        put_bin_header(b);
        for (int i = 0; i < n; i++) {
            unsigned char nf[2] = {0, 3};
            put(b, nf, 2);
            put_bin_text(b, tenant, 7);
            put_bin_text(b, rows[i].id, 36);
            put_be32(b, 8), put_be64(b, (uint64_t)++pos);
        }
        unsigned char trailer[2] = {0xff, 0xff};
        put(b, trailer, 2);
    }
    copy_in(c, text ? "COPY event_ids " IDS_COLS " FROM STDIN"
                    : "COPY event_ids " IDS_COLS " FROM STDIN (FORMAT binary)", b);
    /* Round trip 6: NOTIFY; COMMIT. */
    if (!PQsendQuery(c, NOTIFY_SQL "; COMMIT")) die("send", c);
    PGresult *r = finish_cmd(c, "notify/commit");
    if (strcmp(PQcmdStatus(r), "COMMIT") != 0) die_res("commit", r);
    PQclear(r);
    cl->stored += n;
}

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Outside the measured window: connect, learn the backend's pid, build the rows, prepare. */
static void client_setup(client *cl)
{
    cl->conn = PQconnectdb(url);
    if (PQstatus(cl->conn) != CONNECTION_OK) die("connect", cl->conn);
    PGresult *r = PQexec(cl->conn, "SELECT pg_backend_pid()");
    expect(cl->conn, r, PGRES_TUPLES_OK, "pg_backend_pid");
    cl->backend_pid = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (cl->schema) {
        const char *p[] = {cl->schema};
        r = PQexecParams(cl->conn, "SELECT set_config('search_path', $1, false)", 1, NULL, p,
                         NULL, NULL, 0);
        expect(cl->conn, r, PGRES_TUPLES_OK, "search_path");
        PQclear(r);
    }
    cl->rng = 0x9e3779b97f4a7c15ULL * (seed + 1) ^ (uint64_t)(cl->index + 1) * 0xbf58476d1ce4e5b9ULL;
    for (int i = 0; i < 8; i++)
        rnd(&cl->rng);
    cl->rows = calloc((size_t)n_rows, sizeof *cl->rows);
    cl->vals = calloc((size_t)CHUNK * COLS + 1, sizeof *cl->vals);
    if (!cl->rows || !cl->vals) die("out of memory", NULL);
    build_rows(cl->rows, n_rows, &cl->rng);
    if (cl->method == M_INSERT) { /* the chunk sizes a batch uses: 64 and the rest (36) */
        int sizes[2] = {n_rows < CHUNK ? n_rows : CHUNK, n_rows > CHUNK ? n_rows % CHUNK : 0};
        for (int k = 0; k < 2; k++) {
            if (!sizes[k] || (k == 1 && sizes[1] == sizes[0])) continue;
            char name[16];
            snprintf(name, sizeof name, "ins_r%d", sizes[k]);
            char *sql = insert_sql(sizes[k]);
            r = PQprepare(cl->conn, name, sql, sizes[k] * COLS + 1, NULL);
            expect(cl->conn, r, PGRES_COMMAND_OK, "PREPARE");
            PQclear(r);
            free(sql);
        }
    }
}

static void client_batch(client *cl)
{
    next_batch(cl->rows, n_rows, &cl->rng);
    int64_t t = now_us();
    char now[48];
    rfc3339(now, t);
    if (cl->method == M_INSERT) batch_insert(cl, cl->rows, n_rows, now, cl->vals);
    else batch_copy(cl, cl->rows, n_rows, now, t, &cl->copy);
}

static void client_dispose(client *cl)
{
    PQfinish(cl->conn);
    for (int i = 0; i < n_rows; i++)
        free(cl->rows[i].data), free(cl->rows[i].metadata);
    free(cl->rows);
    free(cl->vals);
    free(cl->copy.d);
}

static void *client_main(void *arg)
{
    client *cl = arg;
    pthread_barrier_wait(&barrier); /* 1: connected and prepared */
    pthread_barrier_wait(&barrier); /* 2: go (the start snapshot is taken) */
    for (int k = 0; k < cl->batches; k++)
        client_batch(cl);
    pthread_barrier_wait(&barrier); /* 3: done (the end snapshot is taken next) */
    pthread_barrier_wait(&barrier); /* 4: snapshot taken: the connection may close */
    return NULL;
}

/* ------------------------------------------------------------------ /proc */

typedef struct pstat {
    int pid, ppid;
    unsigned long long ticks; /* utime + stime, clock ticks (/proc/<pid>/stat) */
    unsigned long long ns;    /* the same CPU time in ns (/proc/<pid>/schedstat), 0 if absent */
} pstat;

static int have_schedstat = 1; /* cleared when a process has no readable schedstat */

static int read_stat(int pid, pstat *out)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')'); /* comm may hold spaces */
    if (!p) return -1;
    /* After ") ": 3 state, 4 ppid, ... 14 utime, 15 stime. */
    char state;
    int ppid;
    unsigned long long ut, st;
    if (sscanf(p + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &state, &ppid, &ut,
               &st) != 4)
        return -1;
    out->pid = pid;
    out->ppid = ppid;
    out->ticks = ut + st;
    /* schedstat's first field is the task's sum_exec_runtime: the CPU time that the kernel
     * splits into utime and stime and rounds down to clock ticks for /proc/<pid>/stat. */
    out->ns = 0;
    snprintf(path, sizeof path, "/proc/%d/schedstat", pid);
    f = fopen(path, "r");
    if (!f || fscanf(f, "%llu", &out->ns) != 1) have_schedstat = 0;
    if (f) fclose(f);
    return 0;
}

static int is_aux(int pid)
{
    char path[64], cmd[256];
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(cmd, 1, sizeof cmd - 1, f);
    fclose(f);
    cmd[n] = 0;
    static const char *const aux[] = {"postgres: checkpointer",
                                      "postgres: background writer",
                                      "postgres: walwriter",
                                      "postgres: autovacuum launcher",
                                      "postgres: logical replication launcher",
                                      NULL};
    for (int i = 0; aux[i]; i++)
        if (strncmp(cmd, aux[i], strlen(aux[i])) == 0) return 1;
    return 0;
}

#define MAX_CLIENTS 16

typedef struct snapshot {
    pstat backend[MAX_CLIENTS];
    int n_other;
    pstat other[32];
} snapshot;

static void take(snapshot *sn, client *cls, int postmaster)
{
    memset(sn, 0, sizeof *sn);
    for (int i = 0; i < n_clients; i++) {
        pstat p;
        if (read_stat(cls[i].backend_pid, &p) < 0) die("cannot read a backend's /proc stat", NULL);
        sn->backend[i] = p;
    }
    pstat pm;
    if (read_stat(postmaster, &pm) == 0) sn->other[sn->n_other++] = pm;
    DIR *d = opendir("/proc");
    if (!d) die("cannot open /proc", NULL);
    struct dirent *e;
    while ((e = readdir(d)) && sn->n_other < 32) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        pstat p;
        int pid = atoi(e->d_name);
        if (read_stat(pid, &p) < 0 || p.ppid != postmaster || !is_aux(pid)) continue;
        sn->other[sn->n_other++] = p;
    }
    closedir(d);
}

/* CPU seconds between two readings of one process: ns precision when schedstat is there. */
static double cpu_s(const pstat *a, const pstat *b, double *ticks_s)
{
    double tick = 1.0 / (double)sysconf(_SC_CLK_TCK);
    double t = b->ticks >= a->ticks ? (double)(b->ticks - a->ticks) * tick : 0;
    if (ticks_s) *ticks_s += t;
    if (!have_schedstat) return t;
    return b->ns >= a->ns ? (double)(b->ns - a->ns) / 1e9 : 0;
}

/* CPU seconds of the "other" processes alive in both snapshots. */
static double other_delta(const snapshot *a, const snapshot *b, double *ticks_s)
{
    double sum = 0;
    for (int i = 0; i < b->n_other; i++)
        for (int j = 0; j < a->n_other; j++)
            if (a->other[j].pid == b->other[i].pid) sum += cpu_s(&a->other[j], &b->other[i], ticks_s);
    return sum;
}

static double tv_s(struct timeval t)
{
    return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}

static const char *method_name(enum method m)
{
    return m == M_INSERT ? "insert" : m == M_COPY ? "copy" : "copybin";
}

static enum method parse_method(const char *v)
{
    if (!strcmp(v, "insert")) return M_INSERT;
    if (!strcmp(v, "copy")) return M_COPY;
    if (!strcmp(v, "copybin")) return M_COPYBIN;
    die("a method is insert, copy or copybin", NULL);
    return M_INSERT;
}

static double thread_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    char *interleave = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--url")) url = v;
        else if (!strcmp(k, "--method")) method = parse_method(v);
        else if (!strcmp(k, "--clients")) n_clients = atoi(v);
        else if (!strcmp(k, "--batches")) n_batches = atoi(v);
        else if (!strcmp(k, "--rows")) n_rows = atoi(v);
        else if (!strcmp(k, "--seed")) seed = (unsigned)atoi(v);
        else if (!strcmp(k, "--interleave")) interleave = strdup(v);
        else
            die("usage: insert_bench --url URL --method insert|copy|copybin [--clients N] "
                "[--batches B] [--rows R] [--seed S] [--interleave SCHEMA[:METHOD],...]",
                NULL);
    }
    const char *schemas[MAX_CLIENTS];
    enum method methods[MAX_CLIENTS];
    if (interleave) {
        n_clients = 0;
        for (char *save, *t = strtok_r(interleave, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (n_clients == MAX_CLIENTS) die("at most 16 schemas", NULL);
            char *colon = strchr(t, ':');
            methods[n_clients] = colon ? parse_method(colon + 1) : method;
            if (colon) *colon = 0;
            schemas[n_clients++] = t;
        }
    }
    if (!url || n_clients < 1 || n_clients > MAX_CLIENTS || n_batches < 1 ||
        (!interleave && n_batches < n_clients) || n_rows < 1 || n_rows > MAX_ROWS)
        die("bad arguments (--url is required; 1 <= clients <= 16, clients <= batches; "
            "rows <= 5000)",
            NULL);
    for (int i = 1; i <= MAX_ROWS; i++)
        snprintf(pos_text[i], sizeof pos_text[i], "%d", i);

    client *cls = calloc((size_t)n_clients, sizeof *cls);
    int postmaster = 0;
    for (int i = 0; i < n_clients; i++) {
        client *cl = &cls[i];
        cl->index = i;
        snprintf(cl->known, sizeof cl->known, "0");
        /* Threads share the batches; interleaved connections each write all of them. */
        cl->batches = interleave ? n_batches : n_batches / n_clients + (i < n_batches % n_clients);
        cl->schema = interleave ? schemas[i] : NULL;
        cl->method = interleave ? methods[i] : method;
        client_setup(cl);
        pstat p;
        if (read_stat(cl->backend_pid, &p) < 0)
            die("cannot read the backend's /proc/<pid>/stat (is PostgreSQL on this machine?)", NULL);
        if (postmaster && p.ppid != postmaster) die("backends of different postmasters", NULL);
        postmaster = p.ppid;
    }

    snapshot s0, s1;
    struct rusage u0, u1;
    double t0, secs;
    if (interleave) {
        /* One thread: batch k of every connection in turn, so that whatever else the machine
         * does at a moment is spread over all of them alike. */
        take(&s0, cls, postmaster);
        getrusage(RUSAGE_SELF, &u0);
        t0 = mono_s();
        for (int k = 0; k < n_batches; k++)
            for (int i = 0; i < n_clients; i++) {
                client *cl = &cls[i];
                double b0 = mono_s(), c0 = thread_cpu_s();
                client_batch(cl);
                cl->cpu_s += thread_cpu_s() - c0;
                cl->busy_s += mono_s() - b0;
            }
        secs = mono_s() - t0;
        getrusage(RUSAGE_SELF, &u1);
        take(&s1, cls, postmaster);
    } else {
        pthread_barrier_init(&barrier, NULL, (unsigned)n_clients + 1);
        for (int i = 0; i < n_clients; i++)
            pthread_create(&cls[i].thread, NULL, client_main, &cls[i]);
        pthread_barrier_wait(&barrier); /* 1 */
        take(&s0, cls, postmaster);
        getrusage(RUSAGE_SELF, &u0);
        t0 = mono_s();
        pthread_barrier_wait(&barrier); /* 2 */
        pthread_barrier_wait(&barrier); /* 3 */
        secs = mono_s() - t0;
        getrusage(RUSAGE_SELF, &u1);
        take(&s1, cls, postmaster);
        pthread_barrier_wait(&barrier); /* 4 */
        for (int i = 0; i < n_clients; i++)
            pthread_join(cls[i].thread, NULL);
    }

    double client_s = tv_s(u1.ru_utime) - tv_s(u0.ru_utime) + tv_s(u1.ru_stime) - tv_s(u0.ru_stime);
    double other_ticks_s = 0, other = other_delta(&s0, &s1, &other_ticks_s);
    double backend = 0, backend_ticks_s = 0;
    long long rows = 0;
    for (int i = 0; i < n_clients; i++) {
        rows += cls[i].stored;
        backend += cpu_s(&s0.backend[i], &s1.backend[i], &backend_ticks_s);
    }
    const char *source = have_schedstat ? "schedstat" : "stat";
    if (interleave) {
        /* Per connection: its backend's CPU; rows/s over the time its batches took. The
         * "other" processes cannot be told apart per connection: a total line. */
        for (int i = 0; i < n_clients; i++) {
            double t = 0, b = cpu_s(&s0.backend[i], &s1.backend[i], &t);
            double n = (double)cls[i].stored;
            printf("RESULT method=%s schema=%s rows=%lld secs=%.3f rows_per_s=%.0f "
                   "pg_backend_us_row=%.2f client_us_row=%.2f "
                   "stat_backend_us_row=%.2f cpu_source=%s\n",
                   method_name(cls[i].method), cls[i].schema, cls[i].stored, cls[i].busy_s,
                   n / cls[i].busy_s, b * 1e6 / n, cls[i].cpu_s * 1e6 / n, t * 1e6 / n, source);
        }
        printf("TOTAL connections=%d rows=%lld secs=%.3f pg_backend_us_row=%.2f "
               "pg_other_us_row=%.2f client_us_row=%.2f\n",
               n_clients, rows, secs, backend * 1e6 / (double)rows, other * 1e6 / (double)rows,
               client_s * 1e6 / (double)rows);
    } else {
        printf("RESULT method=%s clients=%d rows=%lld secs=%.3f rows_per_s=%.0f "
               "pg_backend_us_row=%.2f pg_other_us_row=%.2f client_us_row=%.2f "
               "stat_backend_us_row=%.2f stat_other_us_row=%.2f cpu_source=%s\n",
               method_name(method), n_clients, rows, secs, (double)rows / secs,
               backend * 1e6 / (double)rows, other * 1e6 / (double)rows,
               client_s * 1e6 / (double)rows, backend_ticks_s * 1e6 / (double)rows,
               other_ticks_s * 1e6 / (double)rows, source);
    }
    for (int i = 0; i < n_clients; i++)
        client_dispose(&cls[i]);
    free(cls);
    free(interleave);
    return 0;
}
