'use strict';
// Issue 17: read replicas. With SLUICE_READ_DATABASE_URL, history reads (pages, reads by id,
// NDJSON exports, subscription catch-ups, replays) run on a PostgreSQL streaming replica; a
// read needing a position the replica has not replayed waits up to SLUICE_READ_WAIT_MS and
// then reads the primary, so a client always reads its own writes. The replica is a real
// one: a private primary and its pg_basebackup replica from scripts/services.sh (`start
// replica`) in a run dir of this file's own, so the suite's PostgreSQL is never touched.
// Where a read ran is seen from outside: the replica's pg_stat_activity (application_name
// sluice-read), sluice_read_replica_total{outcome="replica|waited|primary"} in /metrics, and
// the replica's replay position (paused with pg_wal_replay_pause, or the replica stopped).
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const h = require('./lib/harness');
const svc = require('./lib/services');
const redis = require('../lib/redis.js');

const SCRIPT = path.join(h.REPO, 'scripts', 'services.sh');
const WAIT_MS = 500;      // SLUICE_READ_WAIT_MS of the instance under test
const BOUND_MS = 15000;   // a request bound proving "no hang", not a benchmark
const CATCH_UP_MS = 60000;

const runDir = fs.mkdtempSync(path.join(h.TMP, 'replica-'));
let servicesStarted = false;
let sluice = null;
let patient = null;   // a second instance that waits a minute for the replica
let db = null;        // the database on the private primary
let c;                // admin client of the instance
let replicaDbUrl;     // the same database on the replica
let redisPrefix;
const sseReaders = new Set();

// ---------------------------------------------------------------- the private servers

function services(cmd, what) { return svc.services(runDir, cmd, what); }

function readEnvFile() { return svc.readEnvFile(runDir); }

function stopByDataDirs() {
  let v;
  try { v = readEnvFile(); } catch (_) { return; }
  if (!v.SLUICE_PG_BIN || !v.SLUICE_PG_DATA) return;
  for (const dir of [path.join(path.dirname(v.SLUICE_PG_DATA), 'replica'), v.SLUICE_PG_DATA]) {
    const args = [`${v.SLUICE_PG_BIN}/pg_ctl`, '-D', dir, '-m', 'immediate', '-w', 'stop'];
    try {
      if (process.getuid() === 0) execFileSync('runuser', ['-u', 'postgres', '--', ...args], { stdio: 'ignore', timeout: 60000, cwd: '/' });
      else execFileSync(args[0], args.slice(1), { stdio: 'ignore', timeout: 60000 });
    } catch (_) { /* not running */ }
  }
}

const onReplica = (sql) => h.psql(replicaDbUrl, sql);
const onPrimary = (sql) => h.psql(db.url, sql);

// Waits until the replica has replayed everything the primary had written when called.
async function replicaCaughtUp() {
  const lsn = onPrimary('SELECT pg_current_wal_lsn()');
  await h.waitFor(() => onReplica(`SELECT pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn`) === 't',
    { timeout: CATCH_UP_MS, interval: 50, what: `the replica to replay ${lsn}` });
}

// ---------------------------------------------------------------- Sluice

// sluice_read_replica_total by outcome.
async function outcomes(client = c) {
  const res = await client.get('/metrics', { token: null });
  h.assertStatus(res, 200);
  const o = { replica: 0, waited: 0, primary: 0 };
  let seen = 0;
  for (const line of res.text.split('\n')) {
    const r = /^sluice_read_replica_total\{(.*)\} (\S+)$/.exec(line);
    if (!r) continue;
    const out = /(?:^|,)outcome="([^"]*)"/.exec(r[1]);
    assert.ok(out && out[1] in o, `an outcome of replica|waited|primary: ${line}`);
    o[out[1]] = Number(r[2]);
    seen++;
  }
  assert.equal(seen, 3, `sluice_read_replica_total{outcome="replica|waited|primary"} in /metrics:\n${
    res.text.split('\n').filter((l) => l.includes('read_replica')).join('\n')}`);
  return o;
}

async function publish(envs) {
  const r = h.assertStatus(await c.publish(envs), 201);
  return Array.isArray(envs) ? r.events : [r];
}

// The three kinds of history read, each checked against what was published (acks, in
// position order): by id, the pages of GET /v1/events, the NDJSON export.
async function readsAnswer(type, acks, what) {
  const o = { timeout: BOUND_MS };
  for (const a of [acks[0], acks[acks.length - 1]]) {
    const e = h.assertStatus(await c.get('/v1/events/' + encodeURIComponent(a.id), o), 200);
    assert.equal(e.id, a.id, `${what}: GET /v1/events/{id}`);
    assert.equal(e.position, a.position, `${what}: GET /v1/events/{id} position`);
    assert.equal(e.type, type);
  }
  const page = h.assertStatus(await c.get('/v1/events?' + new URLSearchParams({ type, limit: '1000' }), o), 200);
  assert.deepEqual(page.events.map((e) => e.id), acks.map((a) => a.id), `${what}: GET /v1/events page`);
  assert.equal(page.has_more, false);
  const nd = await c.get('/v1/events?' + new URLSearchParams({ type }), { ...o, headers: { Accept: 'application/x-ndjson' } });
  h.assertStatus(nd, 200);
  assert.match(nd.contentType, /^application\/x-ndjson/);
  const lines = nd.text.split('\n');
  assert.equal(lines.pop(), '', 'NDJSON ends with a newline');
  assert.deepEqual(lines.map((l) => JSON.parse(l).id), acks.map((a) => a.id), `${what}: NDJSON export`);
  assert.deepEqual(JSON.parse(lines[0]), h.assertStatus(await c.get('/v1/events/' + encodeURIComponent(acks[0].id), o), 200),
    `${what}: the exported event is the stored envelope`);
}

// Sluice's connections to the replica, by the application_name it gives them.
function readConnections() {
  return Number(onReplica(`SELECT count(*) FROM pg_stat_activity
    WHERE application_name = 'sluice-read' AND datname = current_database()`));
}

let seq = 0;
const batch = (tag, n) => Array.from({ length: n }, (_, i) => ({ type: `rr.${tag}`, data: { i, seq: seq++ }, key: `k${i % 3}` }));

// ---------------------------------------------------------------- set-up

before(async () => {
  assert.ok(fs.existsSync(SCRIPT), `${SCRIPT} exists`);
  servicesStarted = true; // from here on, after() cleans the run dir whatever happens
  await services('start', 'replica');
  const vars = readEnvFile();
  assert.ok(vars.SLUICE_DATABASE_URL, 'SLUICE_DATABASE_URL in the env file');
  assert.ok(vars.SLUICE_READ_DATABASE_URL, 'SLUICE_READ_DATABASE_URL in the env file after `start replica`');
  assert.match(await services('status', 'replica'), /^replica: running .*streaming/m);

  // a fresh database on the primary, once it exists on the replica too
  db = await h.freshDatabase(vars.SLUICE_DATABASE_URL);
  replicaDbUrl = h.withDatabase(vars.SLUICE_READ_DATABASE_URL, db.name);
  await h.waitFor(() => h.psql(vars.SLUICE_READ_DATABASE_URL,
    `SELECT count(*) FROM pg_database WHERE datname = '${db.name}'`) === '1',
  { timeout: CATCH_UP_MS, interval: 50, what: `database ${db.name} on the replica` });
  assert.equal(onReplica('SELECT pg_is_in_recovery()'), 't', 'the read URL names a standby');

  redisPrefix = `sluice:${db.name}:`;
  sluice = await h.startSluice({
    name: 'replica', dbUrl: db.url,
    env: { SLUICE_READ_DATABASE_URL: replicaDbUrl, SLUICE_READ_WAIT_MS: String(WAIT_MS), SLUICE_REDIS_PREFIX: redisPrefix },
  });
  c = sluice.client();
  await replicaCaughtUp(); // the migrations sluice ran on the primary
});

after(async () => {
  for (const x of sseReaders) x.close();
  try {
    if (patient) await patient.stop().finally(() => patient.cleanup());
    if (sluice) await sluice.stop().finally(() => sluice.cleanup()); // SIGTERM → exit 0 (no leak)
  } finally {
    await cleanUp();
  }
});

async function cleanUp() {
  if (redisPrefix && process.env.SLUICE_REDIS_URL) {
    await redis.deletePrefix(process.env.SLUICE_REDIS_URL, redisPrefix).catch((e) => console.error(String(e)));
  }
  if (db) { try { db.drop(); } catch (e) { console.error(String(e)); } }
  // `clean pg` stops and removes the replica, then the primary; if the script fails, stop
  // both servers by their data dirs
  if (servicesStarted) await services('clean', 'pg').catch((e) => { console.error(String(e)); stopByDataDirs(); });
  fs.rmSync(runDir, { recursive: true, force: true });
}

// ---------------------------------------------------------------- tests

// The statements Sluice's connections to the replica ran last (pg_stat_activity).
function replicaQueries() {
  return onReplica(`SELECT query FROM pg_stat_activity
    WHERE application_name = 'sluice-read' AND datname = current_database()`).split('\n');
}

// First: the replica stopped and started below sends the projections' reader to the primary
// for a while (it reconnects after 5 s), as it should.
describe('a projection rebuild', () => {
  test('catching up, a projection reads its batches on the replica and ends equal to the events', { timeout: 180000 }, async () => {
    const acks = [];
    const want = {};
    for (let k = 0; k < 3; k++) {
      const envs = batch('p', 1000);
      for (const e of envs) want[e.key] = (want[e.key] || 0) + 1;
      acks.push(...await publish(envs));
    }
    await replicaCaughtUp();
    const readBatch = (q) => q.startsWith('SELECT position, id, stream,'); // projections.c's read
    assert.ok(!replicaQueries().some(readBatch), 'no projection has read the replica yet');
    h.assertStatus(await c.post('/v1/projections', { name: 'rr-count', filter: { types: ['rr.p'] }, key: '/key', reduce: 'count' }), 201);
    const last = acks[acks.length - 1].position;
    const p = await h.waitFor(async () => {
      const x = h.assertStatus(await c.get('/v1/projections/rr-count'), 200);
      return (x.status === 'failed' || (x.status === 'live' && x.position >= last)) && x;
    }, { timeout: CATCH_UP_MS, what: 'the projection caught up' });
    assert.equal(p.status, 'live', JSON.stringify(p));
    const st = h.assertStatus(await c.get('/v1/projections/rr-count/state?limit=1000'), 200);
    const got = Object.fromEntries(st.states.map((x) => [x.key, x.state]));
    assert.deepEqual(got, want, 'count by key over the 3,000 events');
    // Its batches were read on the replica (that connection's last statement is the read).
    assert.ok(replicaQueries().some(readBatch), `a projection batch read on the replica:\n${replicaQueries().join('\n')}`);
  });
});

describe('a streaming replica behind SLUICE_READ_DATABASE_URL', () => {
  test('reads by id, pages and NDJSON exports are served by the replica once it has the events', { timeout: 120000 }, async () => {
    const acks = await publish(batch('a', 25));
    await replicaCaughtUp();
    const before0 = await outcomes();
    await readsAnswer('rr.a', acks, 'replica caught up');
    const after0 = await outcomes();
    assert.ok(after0.replica > before0.replica,
      `outcome="replica" grew: ${JSON.stringify(before0)} → ${JSON.stringify(after0)}`);
    assert.equal(after0.primary, before0.primary,
      `no read went to the primary while the replica had everything: ${JSON.stringify(before0)} → ${JSON.stringify(after0)}`);
    assert.ok(readConnections() >= 1, 'sluice-read connections on the replica (pg_stat_activity)');
  });

  test('replay paused: a read of a write the replica lacks waits, then answers from the primary; resumed: back on the replica', { timeout: 120000 }, async () => {
    await replicaCaughtUp();
    onReplica('SELECT pg_wal_replay_pause()');
    let resumed = false;
    try {
      await h.waitFor(() => onReplica('SELECT pg_get_wal_replay_pause_state()') === 'paused',
        { timeout: CATCH_UP_MS, what: 'the replica to pause its replay' });
      const before0 = await outcomes();
      const acks = await publish(batch('b', 3));
      const lsn = onPrimary('SELECT pg_current_wal_lsn()');
      // read-your-writes: every kind of read answers with the new events
      await readsAnswer('rr.b', acks, 'replay paused');
      assert.equal(onReplica(`SELECT pg_last_wal_replay_lsn() < '${lsn}'::pg_lsn`), 't',
        'the replica still lacks the events: the answers came from the primary');
      const after0 = await outcomes();
      assert.ok(after0.primary > before0.primary,
        `outcome="primary" grew: ${JSON.stringify(before0)} → ${JSON.stringify(after0)}`);

      onReplica('SELECT pg_wal_replay_resume()');
      resumed = true;
      await replicaCaughtUp();
      const mid = await outcomes();
      await readsAnswer('rr.b', acks, 'replay resumed');
      const end = await outcomes();
      assert.ok(end.replica > mid.replica, `outcome="replica" grew again: ${JSON.stringify(mid)} → ${JSON.stringify(end)}`);
      assert.equal(end.primary, mid.primary, `caught up, nothing went to the primary: ${JSON.stringify(mid)} → ${JSON.stringify(end)}`);
    } finally {
      if (!resumed) onReplica('SELECT pg_wal_replay_resume()');
    }
  });

  test('replica stopped: reads answer from the primary (bounded); started again: reads go back to it', { timeout: 300000 }, async () => {
    const urlBefore = readEnvFile().SLUICE_READ_DATABASE_URL;
    await services('stop', 'replica');
    try {
      const before0 = await outcomes();
      const acks = await publish(batch('c', 4));
      await readsAnswer('rr.c', acks, 'replica stopped');
      await readsAnswer('rr.a', (await c.get('/v1/events?type=rr.a&limit=1000')).body.events, 'replica stopped, older events');
      const after0 = await outcomes();
      assert.ok(after0.primary > before0.primary,
        `outcome="primary" grew: ${JSON.stringify(before0)} → ${JSON.stringify(after0)}`);
    } finally {
      await services('start', 'replica');
    }
    assert.equal(readEnvFile().SLUICE_READ_DATABASE_URL, urlBefore, 'the replica came back at the same address');
    await replicaCaughtUp();
    const acks = (await c.get('/v1/events?type=rr.c&limit=1000')).body.events;
    assert.equal(acks.length, 4);
    // the instance finds the replica again by itself
    await h.waitFor(async () => {
      const mid = await outcomes();
      await readsAnswer('rr.c', acks, 'replica back');
      const end = await outcomes();
      return end.replica > mid.replica && end.primary === mid.primary;
    }, { timeout: CATCH_UP_MS, interval: 200, what: 'reads to be served by the restarted replica' });
    assert.ok(readConnections() >= 1, 'sluice-read connections on the restarted replica');
  });

  test('a replay and an SSE catch-up from from_position deliver exactly the events', { timeout: 120000 }, async () => {
    const acks = await publish(batch('d', 40));
    await replicaCaughtUp();
    const before0 = await outcomes();

    const key = `${redisPrefix}replay:rr:${h.rand(3)}`;
    const started = h.assertStatus(await c.post('/v1/replays', { filter: { type: 'rr.d' }, target: { redis_stream: key } }), 202);
    const done = await h.waitFor(async () => {
      const r = h.assertStatus(await c.get('/v1/replays/' + started.id), 200);
      return r.status !== 'running' ? r : false;
    }, { timeout: CATCH_UP_MS, interval: 50, what: 'the replay to finish' });
    assert.equal(done.status, 'done', JSON.stringify(done));
    const entries = await redis.withRedis(process.env.SLUICE_REDIS_URL, (r) => redis.xrangeAll(r, key));
    assert.deepEqual(entries.map((e) => e.fields.id), acks.map((a) => a.id), 'the replay: exactly the events, in order');

    const from = acks[9].position;
    const x = await SseReader.open(`${sluice.url}/v1/subscribe?type=rr.d&from_position=${from}`, sluice.adminToken);
    await x.take(30);
    x.close();
    assert.deepEqual(x.events.map((e) => e.id), acks.slice(10).map((a) => a.id), 'the SSE catch-up: exactly the events after from_position');
    const after0 = await outcomes();
    assert.ok(after0.replica + after0.waited > before0.replica + before0.waited,
      `the catch-up read the replica: ${JSON.stringify(before0)} → ${JSON.stringify(after0)}`);
  });
});

describe('SLUICE_READ_WAIT_MS', () => {
  test('a read the replica cannot answer yet waits for it (outcome waited), not for the primary', { timeout: 180000 }, async () => {
    patient = await h.startSluice({
      name: 'replica-patient', dbUrl: db.url,
      env: { SLUICE_READ_DATABASE_URL: replicaDbUrl, SLUICE_READ_WAIT_MS: '60000', SLUICE_REDIS_PREFIX: redisPrefix },
    });
    const pc = patient.client();
    await replicaCaughtUp();
    onReplica('SELECT pg_wal_replay_pause()');
    let resumed = false;
    try {
      await h.waitFor(() => onReplica('SELECT pg_get_wal_replay_pause_state()') === 'paused',
        { timeout: CATCH_UP_MS, what: 'the replica to pause its replay' });
      const ack = h.assertStatus(await pc.publish({ type: 'rr.e', data: {} }), 201);
      const before0 = await outcomes(pc);
      let settled = false;
      const read = pc.get('/v1/events/' + encodeURIComponent(ack.id), { timeout: 120000 }).finally(() => { settled = true; });
      await h.sleep(500);
      assert.equal(settled, false, 'the read waits while the replica lacks the event (its wait is a minute)');
      onReplica('SELECT pg_wal_replay_resume()');
      resumed = true;
      const r = h.assertStatus(await read, 200);
      assert.equal(r.id, ack.id);
      assert.equal(r.position, ack.position);
      const after0 = await outcomes(pc);
      assert.ok(after0.waited > before0.waited, `outcome="waited" grew: ${JSON.stringify(before0)} → ${JSON.stringify(after0)}`);
      assert.equal(after0.primary, before0.primary, `nothing went to the primary: ${JSON.stringify(before0)} → ${JSON.stringify(after0)}`);
    } finally {
      if (!resumed) onReplica('SELECT pg_wal_replay_resume()');
    }
    await patient.stop();
    patient = null;
  });
});

// ---------------------------------------------------------------- a small SSE reader

// Reads `event: event` blocks of one text/event-stream response until `take(n)` has n.
class SseReader {
  static async open(url, token) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), BOUND_MS);
    let res;
    try {
      res = await fetch(url, { headers: { Accept: 'text/event-stream', Authorization: `Bearer ${token}` }, signal: ctrl.signal });
    } finally { clearTimeout(timer); }
    const x = new SseReader(ctrl);
    sseReaders.add(x);
    if (res.status !== 200) {
      const text = await res.text();
      x.close();
      assert.fail(`GET ${url}: HTTP ${res.status} ${text.slice(0, 500)}`);
    }
    x.done = x.pump(res.body);
    return x;
  }

  constructor(ctrl) {
    this.ctrl = ctrl;
    this.events = [];
    this.wake = null;
    this.ended = false;
  }

  async pump(body) {
    const dec = new TextDecoder();
    let pending = '';
    try {
      for await (const chunk of body) {
        pending += dec.decode(chunk, { stream: true });
        let i;
        while ((i = pending.indexOf('\n\n')) >= 0) {
          const lines = pending.slice(0, i).split('\n');
          pending = pending.slice(i + 2);
          if (!lines.includes('event: event')) continue;
          this.events.push(JSON.parse(lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n')));
        }
        if (this.wake) this.wake();
      }
    } catch (_) { /* aborted */ } finally {
      this.ended = true;
      if (this.wake) this.wake();
    }
  }

  async take(n) {
    const deadline = Date.now() + CATCH_UP_MS;
    while (this.events.length < n && !this.ended && Date.now() < deadline) {
      await h.race(new Promise((r) => { this.wake = r; }), 1000, null);
      this.wake = null;
    }
    assert.ok(this.events.length >= n, `${n} events over SSE, got ${this.events.length}${this.ended ? ' (stream ended)' : ''}`);
    return this.events.slice(0, n);
  }

  close() {
    sseReaders.delete(this);
    try { this.ctrl.abort(); } catch (_) { /* closed */ }
  }
}
