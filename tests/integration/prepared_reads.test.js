'use strict';
// Reads prepared once per connection (server/db.c's statement cache: a read's SQL is prepared
// on a pooled connection the first time it runs there, then executed by name with other
// values). Against the real binary and PostgreSQL, with two pooled connections so each one
// runs every shape many times (past the five custom plans after which PostgreSQL may keep a
// generic one):
//   - the same shapes (a page by correlation id, by correlation id and type, an NDJSON
//     export, one event by id, a long poll's stored lookup) with other values give exactly
//     each value's own events;
//   - partitions attached after the statements were prepared are read (PostgreSQL replans);
//   - after PostgreSQL ended every Sluice session, the new connections prepare afresh (a
//     name prepared on the old session is never used on the new one) and reads go on.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

const WIDTH = 1000; // SLUICE_PARTITION_EVENTS at its smallest: a few batches cross it
const GROUPS = 12;
let s = null;
let c = null;
const run = h.rand(4);
const cid = (g) => `prep-${run}-${g}`;
const typeOf = (g, i) => `prep.t${(g + i) % 3}`;
const expected = new Map(); // correlation id -> [event id] in position order

const sql = (q) => h.psql(s.dbUrl, q);
const partitions = () => Number(sql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"));

async function publishRound(round) {
  const envs = [];
  for (let g = 0; g < GROUPS; g++)
    for (let i = 0; i < 2; i++)
      envs.push({ type: typeOf(g, round * 2 + i), data: { g, round, i }, correlation_id: cid(g) });
  const r = await c.publish(envs);
  h.assertStatus(r, 201);
  r.body.events.forEach((e, n) => {
    const g = Math.floor(n / 2);
    if (!expected.has(cid(g))) expected.set(cid(g), []);
    expected.get(cid(g)).push({ id: e.id, type: envs[n].type });
  });
}

async function filler(n) {
  for (let left = n; left > 0; left -= 500) {
    const envs = Array.from({ length: Math.min(500, left) }, (_, i) => ({ type: 'prep.filler', data: { i } }));
    h.assertStatus(await c.publish(envs), 201);
  }
}

// Every shape, for every group, checked against what was published.
async function checkAll(what) {
  for (let g = 0; g < GROUPS; g++) {
    const want = expected.get(cid(g));
    const page = h.assertStatus(await c.get('/v1/events?' + new URLSearchParams({ correlation_id: cid(g), limit: '1000' })), 200);
    assert.deepEqual(page.events.map((e) => e.id), want.map((e) => e.id), `${what}: the page of ${cid(g)}`);
    const t = typeOf(g, 1);
    const typed = h.assertStatus(await c.get('/v1/events?' + new URLSearchParams({ correlation_id: cid(g), type: t })), 200);
    assert.deepEqual(typed.events.map((e) => e.id), want.filter((e) => e.type === t).map((e) => e.id),
      `${what}: ${cid(g)} of type ${t}`);
    const nd = await c.get('/v1/events?' + new URLSearchParams({ correlation_id: cid(g) }),
      { headers: { Accept: 'application/x-ndjson' } });
    assert.equal(nd.status, 200, `${what}: NDJSON of ${cid(g)}: ${nd.text.slice(0, 200)}`);
    assert.deepEqual(nd.text.trim().split('\n').map((l) => JSON.parse(l).id), want.map((e) => e.id),
      `${what}: NDJSON of ${cid(g)}`);
    const last = want[want.length - 1];
    const one = h.assertStatus(await c.get('/v1/events/' + encodeURIComponent(last.id)), 200);
    assert.equal(one.id, last.id, `${what}: event ${last.id} by id`);
    assert.equal(one.correlation_id, cid(g));
    const w = h.assertStatus(await c.get('/v1/events/wait?' + new URLSearchParams({ correlation_id: cid(g), timeout_ms: '5000' })), 200);
    assert.equal(w.id, want[0].id, `${what}: the long poll of ${cid(g)} answers its first stored event`);
  }
}

before(async () => {
  s = await h.startSluice({
    name: 'prepared-reads',
    env: { SLUICE_PARTITION_EVENTS: String(WIDTH), SLUICE_DB_POOL: '2' },
  });
  c = s.client();
});

after(async () => {
  if (s) await s.stop().finally(() => s.cleanup());
});

test('the same read shapes with other values give each value its own events', async () => {
  await publishRound(0);
  await checkAll('first round');
  await checkAll('second round, statements prepared');
});

test('partitions attached after the statements were prepared are read', { timeout: 120000 }, async () => {
  const before_ = partitions();
  await filler(2 * WIDTH + 100);
  await publishRound(1);
  await h.waitFor(() => partitions() > before_, { timeout: 30000, what: 'a partition created meanwhile' });
  await checkAll('after new partitions');
});

test('after PostgreSQL ended every Sluice session, reads prepare afresh and go on', { timeout: 120000 }, async () => {
  const ended = Number(sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity " +
    "WHERE datname = current_database() AND application_name = 'sluice' AND pid <> pg_backend_pid()"));
  assert.ok(ended >= 2, `the pooled sessions were ended (${ended})`);
  // Each pooled connection finds its session gone (a read may be answered 503 meanwhile).
  await h.waitFor(async () => (await c.get('/v1/events?' + new URLSearchParams({ correlation_id: cid(0) }))).status === 200,
    { timeout: 30000, what: 'reads answered again' });
  await h.waitFor(async () => (await c.publish({ type: 'prep.filler', data: {} })).status === 201,
    { timeout: 30000, what: 'publishes answered again' });
  await publishRound(2);
  await checkAll('new sessions');
  await checkAll('new sessions, statements prepared again');
  const log = s.logs.join('\n');
  assert.doesNotMatch(log, /prepared statement "s\d+" does not exist/, 'no name of an ended session was used');
});
