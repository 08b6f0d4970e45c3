'use strict';
// Issue 13: retention loses nothing that is still owed. Against the real binary, with a
// redis-server of this test's own (so it can be stopped without touching anyone else's):
//   - events committed while Redis is down are not deleted, however old, until the relay
//     has sent them; then they all reach Redis, and only then are they deleted;
//   - an event a running replay has not replayed yet is not deleted;
//   - a (stream, key)'s version never goes back when its events expire.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const net = require('node:net');
const h = require('./lib/harness');
const { withRedis, xrangeAll } = require('../lib/redis.js');

let redis = null;
let port = 0;
let s = null;
let c = null;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const p = srv.address().port; srv.close(() => resolve(p)); });
    srv.on('error', reject);
  });
}

async function startRedis() {
  redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no'], { stdio: 'ignore' });
  await h.waitFor(async () => new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port }, () => { sock.destroy(); resolve(true); });
    sock.on('error', () => resolve(false));
  }), { timeout: 10000, interval: 50, what: 'redis-server to listen' });
}

async function stopRedis() {
  if (!redis) return;
  const p = redis;
  redis = null;
  await new Promise((resolve) => { p.once('exit', resolve); p.kill('SIGKILL'); });
}

const redisUrl = () => `redis://127.0.0.1:${port}/0`;
const age = (positions, ms) => h.psql(s.dbUrl,
  `UPDATE events SET time = time - interval '${ms} milliseconds' WHERE position IN (${positions.join(',')})`);
const count = (where) => Number(h.psql(s.dbUrl, `SELECT count(*) FROM events WHERE ${where}`));

async function pub(envs) {
  const r = await c.publish(envs);
  h.assertStatus(r, 201);
  return Array.isArray(envs) ? r.body.events : [r.body];
}

before(async () => {
  port = await freePort();
  await startRedis();
  s = await h.startSluice({ name: 'retention-owed', env: { SLUICE_REDIS_URL: redisUrl(), SLUICE_REDIS_PREFIX: 'ro:' } });
  c = s.client();
});

after(async () => {
  if (s) await s.stop().finally(() => s.cleanup());
  await stopRedis();
});

test('events committed while Redis is down are kept until the relay has sent them', { timeout: 120000 }, async () => {
  await stopRedis();
  const owed = await pub(Array.from({ length: 40 }, (_, i) => ({ type: 'owed.thing', stream: 'owed.events', data: { i } })));
  await pub([{ type: 'other.thing', stream: 'other.events', data: {} }]); // the newest of the log is never deleted anyway
  age(owed.map((e) => e.position), 3600 * 1000);
  h.assertStatus(await c.request('PUT', '/v1/streams/owed.events', { json: { retention: { max_age_ms: 1000 } } }), 200);
  await h.sleep(6000); // three retention rounds (every 2 s)
  assert.equal(count("stream = 'owed.events'"), owed.length, 'nothing Redis has not got was deleted');

  await startRedis(); // empty: the relay refills it from the log
  await h.waitFor(async () => count("stream = 'owed.events'") === 0,
    { timeout: 60000, interval: 200, what: 'the owed events to be deleted once relayed' });
  const entries = await withRedis(redisUrl(), (r) => xrangeAll(r, 'ro:owed.events'));
  assert.deepEqual(entries.map((e) => Number(e.fields.position)), owed.map((e) => e.position),
    'every expired event reached Redis, once, in order, before it was deleted');
});

test('an event a running replay has not replayed yet is not deleted', { timeout: 120000 }, async () => {
  const evs = await pub(Array.from({ length: 30 }, (_, i) => ({ type: 'slow.thing', stream: 'slow.events', data: { i } })));
  await pub([{ type: 'other.thing', stream: 'other.events', data: {} }]);
  const r = await c.post('/v1/replays', {
    filter: { streams: ['slow.events'] }, target: { redis_stream: 'replayed.slow' }, max_per_second: 2,
  });
  const job = h.assertStatus(r, 202);
  age(evs.map((e) => e.position), 3600 * 1000);
  h.assertStatus(await c.request('PUT', '/v1/streams/slow.events', { json: { retention: { max_age_ms: 1000 } } }), 200);
  await h.sleep(5000);
  const st = h.assertStatus(await c.get('/v1/replays/' + job.id), 200);
  assert.equal(st.status, 'running', `the replay is still running: ${JSON.stringify(st)}`);
  const stored = new Set(h.psql(s.dbUrl, "SELECT position FROM events WHERE stream = 'slow.events'")
    .split('\n').filter(Boolean).map(Number));
  assert.ok(stored.size > 0, 'events ahead of the replay are kept');
  // The replay goes on meanwhile (2 events/s): its checkpoint read after the store was looked
  // at bounds every deletion before it, so each event past that checkpoint must be there.
  const later = h.assertStatus(await c.get('/v1/replays/' + job.id), 200);
  assert.deepEqual(evs.filter((e) => e.position > later.position && !stored.has(e.position)).map((e) => e.position), [],
    'every event after the replay\'s checkpoint is still stored');
  h.assertStatus(await c.del('/v1/replays/' + job.id), 200);
});

test("a key's version never goes back when its events expire", { timeout: 120000 }, async () => {
  const k = await pub(Array.from({ length: 3 }, (_, i) => ({ type: 'acct.changed', stream: 'acct.events', key: 'acct-7', data: { i } })));
  assert.deepEqual(k.map((e) => e.version), [1, 2, 3]);
  await pub([{ type: 'other.thing', stream: 'other.events', data: {} }]);
  age(k.map((e) => e.position), 3600 * 1000);
  h.assertStatus(await c.request('PUT', '/v1/streams/acct.events', { json: { retention: { max_age_ms: 1000 } } }), 200);
  await h.waitFor(async () => count("stream = 'acct.events'") === 0,
    { timeout: 60000, interval: 200, what: "the key's events to expire" });
  h.assertProblem(await c.publish({ type: 'acct.changed', stream: 'acct.events', key: 'acct-7', expected_version: 0, data: {} }),
    409, 'version_conflict');
  const next = await pub({ type: 'acct.changed', stream: 'acct.events', key: 'acct-7', expected_version: 3, data: {} });
  assert.equal(next[0].version, 4, 'the version continues after the expired ones');
});
