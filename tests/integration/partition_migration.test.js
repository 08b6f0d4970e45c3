'use strict';
// Issue 17: migration 015 converts an existing, unpartitioned event log into the partitioned
// one without losing an event, on a log of 1,000,000 events, and says how long it took.
//
// The database is brought to the schema before 015 as Sluice's migrator would have left it
// (every migrations/NNN_*.sql below 015, each in its own transaction, recorded in
// schema_migrations), and filled with 1,000,000 events in SQL: three tenants, four streams,
// keyed events whose versions run 1..50 per key, client ids whose content_hash is the
// SHA-256 of the envelope's canonical text as Sluice computes it, server ids (ULIDs),
// correlation, causation and user ids, sources, metadata, occurred_at, small nested data;
// plus key_heads rows. The relay's Redis checkpoint says the log is relayed (a deployment
// that is up to date), so the new Sluice does not push 1,000,000 events into Redis.
// Then the real binary starts on it (SLUICE_PARTITION_EVENTS=1000000) and migrates.
//
// Asserted afterwards:
//   - every event is kept with identical content: per tenant, the count, sum and max of
//     positions and an order-independent digest of every row's full text; key_heads holds
//     every key's current version (what it kept, or the newest stored);
//   - `events` is partitioned; events_p0 holds [MINVALUE, 1000001) and all 1,000,000 events;
//     the next partition [1000001, 2000001) exists before any event needs it;
//   - event_ids holds exactly one row per event, matching (tenant_id, id, position);
//   - over HTTP: old events by id (the first, a server id, the middle, the last); reads by
//     stream, by key, by correlation id give what the table held before; an old client id
//     re-sent is the same event (200, Idempotent-Replay, same position, stored once) and
//     with other content is 409 duplicate_id; a key's version continues (expected_version),
//     also one kept only in key_heads; the next event gets position 1,000,001; an NDJSON
//     export of one tenant's stream has every event of it.
// The conversion time (the migration's transaction, from schema_migrations.applied_at to
// Sluice's "applied migration" log line) is printed as a diagnostic.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const h = require('./lib/harness');
const { withRedis, deletePrefix } = require('../lib/redis.js');

const EVENTS = 1000000;
const PARTITION_MIGRATION = 15; // migrations/015_partitions.sql
const PERIOD = 20000;           // the fill repeats its (tenant, stream, key) pattern every PERIOD
const VERSIONS = EVENTS / PERIOD; // so every key has versions 1..VERSIONS
const SQL_TIMEOUT_MS = 300000;  // the fill on a loaded two-core machine; a bound, not a timing

let db = null;
let s = null;
let redisPrefix = '';
const before_ = {};             // what the table held before the conversion
const clients = {};             // tenant → Client
let startMs = 0;                // spawn → "listening", including the migration

// psql for the long statements (the harness's psql has a 60 s bound).
function sql(text) {
  return execFileSync('psql', [db.url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-c', text], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: SQL_TIMEOUT_MS, maxBuffer: 64 << 20,
  }).trim();
}
const sqlJson = (text) => JSON.parse(sql(text));

// Every migration before 015, as server/migrate.c applies one: its text and the
// schema_migrations row (name: the file name without .sql) in one transaction.
function migrateBefore(version) {
  sql('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, ' +
      'name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
  const dir = path.join(h.REPO, 'migrations');
  const files = fs.readdirSync(dir).filter((f) => /^\d+_.*\.sql$/.test(f)).sort();
  const applied = [];
  for (const f of files) {
    const v = parseInt(f, 10);
    if (v >= version) continue;
    const name = f.slice(0, -'.sql'.length);
    sql(`BEGIN;\n${fs.readFileSync(path.join(dir, f), 'utf8')}\n;\n` +
        `INSERT INTO schema_migrations (version, name) VALUES (${v}, '${name}');\nCOMMIT;`);
    applied.push(v);
  }
  return applied;
}

// The events, one row per n (= position), from `source` (a set of n). Columns as in
// `events`, plus env: the envelope its producer sent, in canonical form (sorted keys,
// compact, ASCII), which content_hash is the SHA-256 of for a client id (empty for a
// server id, as Sluice stores it).
function generated(source) {
  const strs = (a) => `ARRAY[${a.map((x) => `'${x}'`).join(',')}]`;
  return `
WITH b AS (
  SELECT n, n - 1 AS j, (n - 1) % ${PERIOD} AS r, (n - 1) / ${PERIOD} AS cyc FROM ${source} AS n
), f AS (
  SELECT n, j,
    CASE WHEN r % 10 < 6 THEN 'default' WHEN r % 10 < 9 THEN 'acme' ELSE 'globex' END AS tenant_id,
    (${strs(['orders.events', 'users.events', 'billing.events', 'audit.events'])})[(r / 10) % 4 + 1] AS stream,
    (${strs(['order', 'user', 'invoice', 'audit'])})[(r / 10) % 4 + 1] AS noun,
    (${strs(['checkout', 'accounts', 'billing', 'auditor'])})[(r / 10) % 4 + 1] AS producer,
    CASE WHEN r % 5 < 2 THEN cyc + 1 END AS version,
    r, cyc,
    j % 3 <> 2 AS client,
    '2024-01-01T00:00:00Z'::timestamptz + n * interval '37 ms' AS time
  FROM b
), g AS (
  SELECT f.*,
    CASE WHEN version IS NOT NULL THEN noun || '-' || r END AS key,
    noun || '.' || CASE WHEN version = 1 THEN 'created'
                        ELSE (${strs(['updated', 'viewed', 'exported'])})[j % 3 + 1] END AS type,
    CASE WHEN client THEN 'ev-' || n ELSE '01J' || lpad(upper(to_hex(n)), 23, '0') END AS id,
    client AND j % 4 <> 3 AS corr_sent,
    CASE WHEN client AND j % 4 <> 3 AND j % 8 > 0 THEN 'ev-' || (n - 1) END AS causation_id,
    CASE WHEN j % 3 <> 1 THEN 'user-' || (j % 997) END AS user_id,
    CASE WHEN client THEN producer ELSE 'legacy importer' END AS source,
    '{"amount":' || (j % 10000) || ',"currency":"EUR","items":[{"qty":' || (j % 5 + 1) ||
      ',"sku":"sku-' || (j % 50) || '"}],"n":' || n || '}' AS data_text,
    CASE WHEN j % 5 = 0 THEN '{"ip":"10.0.' || (j % 256) || '.1","trace":"t-' || to_hex(n) || '"}' END AS metadata_text,
    CASE WHEN j % 3 = 0 THEN time - interval '1500 ms' END AS occurred_at
  FROM f
), e AS (
  SELECT g.*,
    CASE WHEN corr_sent THEN 'corr-' || (j / 8) ELSE id END AS correlation_id,
    CASE WHEN client THEN '{' || concat_ws(',',
      '"causation_id":"' || causation_id || '"',
      CASE WHEN corr_sent THEN '"correlation_id":"corr-' || (j / 8) || '"' END,
      '"data":' || data_text,
      '"id":"' || id || '"',
      '"key":"' || key || '"',
      '"metadata":' || metadata_text,
      '"occurred_at":"' || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"',
      '"source":"' || source || '"',
      '"stream":"' || stream || '"',
      '"type":"' || type || '"',
      '"user_id":"' || user_id || '"') || '}' END AS env
  FROM g
)
SELECT n AS position, id, tenant_id, stream, key, version, type, NULL::integer AS schema_version,
  correlation_id, causation_id, user_id, source, data_text::jsonb AS data,
  metadata_text::jsonb AS metadata, time,
  CASE WHEN client THEN encode(sha256(convert_to(env, 'UTF8')), 'hex') ELSE '' END AS content_hash,
  occurred_at, env
FROM e`;
}

// Per tenant, in one scan: count, sum and max of positions, and an order-independent digest
// of every row's full text.
function fingerprint() {
  return sqlJson(`SELECT json_object_agg(tenant_id, json_build_object('count', c, 'sum', s, 'max', m, 'digest', d)
      ORDER BY tenant_id)
    FROM (SELECT tenant_id, count(*) AS c, sum(position)::text AS s, max(position) AS m,
                 sum(hashtext(e::text)::bigint)::text AS d
          FROM events e GROUP BY tenant_id) t`);
}
const keyHeads = () => sqlJson(`SELECT json_agg(k ORDER BY tenant_id, stream, key) FROM key_heads k`);
// What key_heads must hold after 015: every key's current version — the greater of what it
// kept (expired events) and the newest stored one.
const keyHeadsDue = () => sqlJson(`SELECT json_agg(json_build_object('tenant_id', tenant_id,
    'stream', stream, 'key', key, 'version', version) ORDER BY tenant_id, stream, key)
  FROM (SELECT tenant_id, stream, key, max(version) AS version FROM (
          SELECT tenant_id, stream, key, version FROM key_heads
          UNION ALL SELECT tenant_id, stream, key, version FROM events WHERE key IS NOT NULL) x
        GROUP BY tenant_id, stream, key) k`);
const total = (fp, f) => Object.values(fp).reduce((a, t) => a + BigInt(t[f]), 0n);

// An event as the API shows it, from the table.
const apiEvent = (where) => sqlJson(`SELECT coalesce(json_agg(json_build_object(
    'position', position, 'id', id, 'type', type, 'stream', stream, 'key', key, 'version', version,
    'data', data, 'metadata', metadata, 'correlation_id', correlation_id, 'causation_id', causation_id,
    'user_id', user_id, 'source', source, 'schema_version', schema_version, 'tenant_id', tenant_id,
    'time', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'occurred_at', to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
    ORDER BY position), '[]') FROM events WHERE ${where}`);
const positions = (where, limit = 'ALL') => sqlJson(
  `SELECT coalesce(json_agg(position ORDER BY position), '[]') FROM (SELECT position FROM events WHERE ${
    where} ORDER BY position LIMIT ${limit}) p`);

// Sample events: the first, a server id, the middle, the last.
const SAMPLES = [1, 3, EVENTS / 2, EVENTS];
const GONE_KEY = { tenant: 'acme', stream: 'users.events', key: 'user-gone', version: 7 };

before(async () => {
  db = await h.freshDatabase();
  let t0 = Date.now();
  const applied = migrateBefore(PARTITION_MIGRATION);
  assert.ok(applied.length >= 14 && applied.every((v) => v < PARTITION_MIGRATION), `migrations ${applied}`);

  before_.schemaMs = Date.now() - t0;
  t0 = Date.now();
  sql(`INSERT INTO events (position, id, tenant_id, stream, key, version, type, schema_version,
         correlation_id, causation_id, user_id, source, data, metadata, time, content_hash, occurred_at)
       SELECT position, id, tenant_id, stream, key, version, type, schema_version, correlation_id,
         causation_id, user_id, source, data, metadata, time, content_hash, occurred_at
       FROM (${generated(`generate_series(1, ${EVENTS})`)}) x`);
  // What retention keeps when it deletes a key's expired events: of two keys left without
  // events (user-gone, audit-9999), and of one whose older events went (order-5000).
  sql(`INSERT INTO key_heads VALUES ('${GONE_KEY.tenant}', '${GONE_KEY.stream}', '${GONE_KEY.key}', ${GONE_KEY.version}),
       ('default', 'orders.events', 'order-5000', 3), ('globex', 'audit.events', 'audit-9999', 2)`);
  sql('ANALYZE events');
  before_.fillMs = Date.now() - t0;
  t0 = Date.now();
  before_.fp = fingerprint();
  before_.fingerprintMs = Date.now() - t0;
  before_.keyHeads = keyHeadsDue();
  before_.samples = apiEvent(`position IN (${SAMPLES})`);
  // The envelopes their producers sent (position → canonical text; null for a server id).
  before_.envs = sqlJson(`SELECT json_object_agg(position, env) FROM (${generated(`unnest(ARRAY[${SAMPLES}])`)}) x`);
  before_.stream = positions(`tenant_id = 'acme' AND stream = 'billing.events' AND position > ${EVENTS / 2}`, 1000);
  before_.key = apiEvent(`tenant_id = 'default' AND key = 'order-0'`);
  before_.correlation = positions(`tenant_id = 'default' AND correlation_id = 'corr-${(EVENTS / 2 - 1) / 8 | 0}'`);
  before_.exportCount = Number(sql(`SELECT count(*) FROM events WHERE tenant_id = 'globex' AND stream = 'audit.events'`));
  before_.exportSum = sql(`SELECT sum(position) FROM events WHERE tenant_id = 'globex' AND stream = 'audit.events'`);

  // A deployment whose relay has sent every event: its checkpoint is the head.
  redisPrefix = `sluice:${db.name}:`;
  await withRedis(process.env.SLUICE_REDIS_URL, (r) => r.set(`${redisPrefix}relay:position`, String(EVENTS)));

  const tStart = Date.now();
  s = await h.startSluice({ name: 'partition-migration', dbUrl: db.url,
    env: { SLUICE_PARTITION_EVENTS: String(EVENTS), SLUICE_REDIS_PREFIX: redisPrefix } });
  startMs = Date.now() - tStart;
  clients.default = s.client();
  for (const t of ['acme', 'globex']) {
    clients[t] = s.client().withToken((await h.createKey(s, t, ['publish', 'read'], `${t} producer`)).token);
  }
});

after(async () => {
  if (s) await s.stop().finally(() => s.cleanup());
  if (db) db.drop();
  if (redisPrefix) await deletePrefix(process.env.SLUICE_REDIS_URL, redisPrefix);
});

test(`the conversion of ${EVENTS} events keeps every one, unchanged, and says how long it took`, (t) => {
  const logged = s.logJson().find((l) => l.msg === 'applied migration' && /^015_/.test(l.migration));
  assert.ok(logged, 'Sluice logged migration 015 as applied');
  const began = sql(`SELECT to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    FROM schema_migrations WHERE version = ${PARTITION_MIGRATION}`);
  assert.ok(began, 'schema_migrations records 015');
  const convMs = Date.parse(logged.time) - Date.parse(began);
  assert.ok(convMs >= 0, `the migration's transaction began (${began}) before its log line (${logged.time})`);
  const sec = (ms) => `${(ms / 1000).toFixed(1)} s`;
  t.diagnostic(`set-up: migrations before ${PARTITION_MIGRATION} ${sec(before_.schemaMs)}, fill of ${EVENTS} events ${
    sec(before_.fillMs)}, fingerprint ${sec(before_.fingerprintMs)}`);
  t.diagnostic(`conversion (migration 015, one transaction): ${(convMs / 1000).toFixed(2)} s; ` +
    `sluice start-up including it: ${(startMs / 1000).toFixed(2)} s`);

  const after_ = fingerprint();
  assert.deepEqual(after_, before_.fp, 'the same events, positions and content, tenant by tenant');
  assert.deepEqual(Object.keys(after_), ['acme', 'default', 'globex']);
  assert.equal(total(after_, 'count'), BigInt(EVENTS));
  assert.equal(total(after_, 'sum'), BigInt(EVENTS) * BigInt(EVENTS + 1) / 2n, 'positions 1..N, each once');
  assert.equal(Math.max(...Object.values(after_).map((tenant) => tenant.max)), EVENTS);
  assert.deepEqual(apiEvent(`position IN (${SAMPLES})`), before_.samples);
  assert.deepEqual(keyHeads(), before_.keyHeads, "key_heads holds every key's current version");
});

test('events is partitioned: events_p0 holds the old table, the next partition exists ahead of need', () => {
  assert.equal(sql(`SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'events'::regclass`), '1');
  const parts = sqlJson(`SELECT json_agg(json_build_object('name', c.relname,
      'bound', pg_get_expr(c.relpartbound, c.oid)) ORDER BY c.relname)
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass`);
  // pg_get_expr shows a bigint bound quoted: TO ('1000001').
  const bound = Object.fromEntries(parts.map((p) => [p.name, p.bound.replace(/'/g, '')]));
  assert.equal(bound.events_p0, `FOR VALUES FROM (MINVALUE) TO (${EVENTS + 1})`, JSON.stringify(parts));
  assert.equal(bound[`events_p${EVENTS + 1}`], `FOR VALUES FROM (${EVENTS + 1}) TO (${2 * EVENTS + 1})`,
    JSON.stringify(parts));
  assert.equal(parts.length, 2, `the old table and the one next partition: ${JSON.stringify(parts)}`);
  assert.equal(sql('SELECT count(*) FROM events_p0'), String(EVENTS));
  assert.equal(sql(`SELECT count(*) FROM events_p${EVENTS + 1}`), '0');
  assert.equal(sql(`SELECT count(*) FROM event_ids`), String(EVENTS));
  assert.equal(sql(`SELECT count(*) FROM event_ids i JOIN events e USING (tenant_id, id, position)`),
    String(EVENTS), 'every event_ids row is an event of the same tenant, id and position');
  assert.equal(sql(`SELECT conname FROM pg_constraint WHERE conrelid = 'event_ids'::regclass AND contype = 'p'`),
    'events_tenant_id');
  assert.equal(sql(`SELECT name FROM schema_migrations WHERE version = ${PARTITION_MIGRATION}`), '015_partitions');
});

function clientOf(tenant) { return clients[tenant]; }

test('old events read by id, stream, key and correlation id are the ones stored before', async () => {
  for (const e of before_.samples) {
    const got = h.assertStatus(await clientOf(e.tenant_id).get('/v1/events/' + e.id), 200);
    assert.deepEqual(got, e, `event ${e.position}`);
  }
  assert.equal(before_.samples.filter((e) => !e.id.startsWith('ev-')).length, 1, 'one sample has a server id');

  const page = h.assertStatus(await clients.acme.get(
    `/v1/events?stream=billing.events&after=${EVENTS / 2}&limit=1000`), 200);
  assert.deepEqual(page.events.map((e) => e.position), before_.stream);
  assert.equal(page.has_more, true);

  const byKey = h.assertStatus(await clients.default.get('/v1/events?key=order-0&limit=1000'), 200);
  assert.deepEqual(byKey.events, before_.key);
  assert.deepEqual(byKey.events.map((e) => e.version), Array.from({ length: VERSIONS }, (_, i) => i + 1));
  const history = h.assertStatus(await clients.default.get('/v1/streams/orders.events/keys/order-0'), 200);
  assert.deepEqual(history.events.map((e) => e.position), before_.key.map((e) => e.position));

  const corr = `corr-${(EVENTS / 2 - 1) / 8 | 0}`;
  assert.ok(before_.correlation.length > 0, 'the flow has events in tenant default');
  const byCorr = h.assertStatus(await clients.default.get(`/v1/events?correlation_id=${corr}`), 200);
  assert.deepEqual(byCorr.events.map((e) => e.position), before_.correlation);
  const flow = h.assertStatus(await clients.default.get(`/v1/correlations/${corr}`), 200);
  assert.deepEqual(flow.events.map((e) => e.position), before_.correlation);
});

test('an old client id re-sent is the same event; with other content it is refused', async () => {
  for (const e of before_.samples.filter((x) => x.id.startsWith('ev-'))) {
    assert.ok(before_.envs[e.position], `the envelope of event ${e.position}`);
    const env = JSON.parse(before_.envs[e.position]);
    const c = clientOf(e.tenant_id);
    const again = await c.publish(env);
    h.assertStatus(again, 200);
    assert.equal(again.headers.get('idempotent-replay'), 'true', `event ${e.position}`);
    assert.deepEqual(again.body, { id: e.id, position: e.position, stream: e.stream, key: e.key,
      version: e.version, time: e.time });
    const other = await c.publish({ ...env, data: { ...env.data, amount: -1 } });
    assert.equal(h.assertProblem(other, 409, 'duplicate_id').position, e.position);
  }
  assert.equal(sql(`SELECT count(*) FROM events WHERE id IN (${before_.samples.map((e) => `'${e.id}'`)})`),
    String(SAMPLES.length), 'each stored once');
  assert.equal(sql('SELECT max(position) FROM events'), String(EVENTS), 'nothing new was stored');
});

test("a key's version continues; the next event is position 1,000,001", async () => {
  const conflict = await clients.default.publish({ type: 'order.updated', stream: 'orders.events', key: 'order-0',
    expected_version: VERSIONS - 1, data: { amount: 1 } });
  assert.equal(h.assertProblem(conflict, 409, 'version_conflict').current_version, VERSIONS);
  const next = h.assertStatus(await clients.default.publish({ type: 'order.updated', stream: 'orders.events',
    key: 'order-0', expected_version: VERSIONS, data: { amount: 1 } }), 201);
  assert.equal(next.position, EVENTS + 1);
  assert.equal(next.version, VERSIONS + 1);

  const gone = h.assertStatus(await clients[GONE_KEY.tenant].publish({ type: 'user.updated', stream: GONE_KEY.stream,
    key: GONE_KEY.key, expected_version: GONE_KEY.version, data: {} }), 201);
  assert.equal(gone.version, GONE_KEY.version + 1, 'a version kept only in key_heads continues');
  assert.equal(gone.position, EVENTS + 2);

  const fresh = h.assertStatus(await clients.globex.publish({ type: 'audit.recorded', stream: 'audit.events',
    id: 'after-migration-1', data: { n: 0 } }), 201);
  assert.equal(fresh.position, EVENTS + 3);
  assert.equal(sql(`SELECT count(*) FROM events_p${EVENTS + 1}`), '3', 'new events go to the next partition');
  assert.equal(sql(`SELECT count(*) FROM event_ids WHERE position > ${EVENTS}`), '3');
});

test("an NDJSON export of one tenant's stream has every event of it", async () => {
  const res = await fetch(`${s.url}/v1/events?stream=audit.events`, {
    headers: { Authorization: `Bearer ${clients.globex.token}`, Accept: 'application/x-ndjson' } });
  assert.equal(res.status, 200);
  const lines = (await res.text()).split('\n').filter((l) => l.length);
  const evs = lines.map((l) => JSON.parse(l));
  const old = evs.filter((e) => e.position <= EVENTS);
  assert.equal(old.length, before_.exportCount);
  assert.equal(String(old.reduce((a, e) => a + e.position, 0)), before_.exportSum);
  assert.ok(evs.every((e) => e.tenant_id === 'globex' && e.stream === 'audit.events'));
  assert.deepEqual(evs.filter((e) => e.position > EVENTS).map((e) => e.id), ['after-migration-1']);
  for (let i = 1; i < evs.length; i++) assert.ok(evs[i].position > evs[i - 1].position, 'in position order');
});
