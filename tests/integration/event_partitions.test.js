'use strict';
// Issue 17: the partitioned event store, against the real binary and PostgreSQL, with
// SLUICE_PARTITION_EVENTS at its smallest (1,000) so a test crosses many partitions:
//   - concurrent appends (batches, single events, client ids, keyed events) across partition
//     boundaries stay gap-free and in order; the partitions are created as they are needed;
//   - reads by id, by key, by correlation and NDJSON exports see every event, whichever
//     partition holds it; a re-sent id in an old partition is still idempotent;
//   - retention drops whole expired partitions while pages are being read (no read fails or
//     goes backwards), keeps the dropped keys' versions, forgets the dropped ids, and leaves
//     partitions that are not all expired alone.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

const WIDTH = 1000;
let s = null;
let c = null;

const sql = (q) => h.psql(s.dbUrl, q);
const partitions = () => sql(
  "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid " +
  "WHERE i.inhparent = 'events'::regclass ORDER BY c.relname").split('\n').filter(Boolean);
const head = () => Number(sql('SELECT coalesce(max(position), 0) FROM events'));

async function pub(envs) {
  const r = await c.publish(envs);
  h.assertStatus(r, 201);
  return Array.isArray(envs) ? r.body.events : [r.body];
}

async function metric(name) {
  const r = await c.get('/metrics');
  h.assertStatus(r, 200);
  const m = r.text.match(new RegExp(`^${name} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

before(async () => {
  s = await h.startSluice({ name: 'event-partitions', env: { SLUICE_PARTITION_EVENTS: String(WIDTH) } });
  c = s.client();
});

after(async () => {
  if (s) await s.stop().finally(() => s.cleanup());
});

test('the log is partitioned, with the next partition there before it is needed', async () => {
  assert.equal(sql("SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'events'::regclass"), '1');
  const ps = partitions();
  assert.ok(ps.includes('events_p0'), `the converted table is the first partition: ${ps}`);
  assert.ok(ps.length >= 2, `a partition ahead of the head: ${ps}`);
});

test('concurrent appends across partition boundaries: gap-free, ordered, every read finds them', { timeout: 120000 }, async () => {
  const writers = 6, rounds = 12, batch = 50;
  const ids = [];
  const keyed = [];
  await Promise.all(Array.from({ length: writers }, async (_, w) => {
    for (let r = 0; r < rounds; r++) {
      const envs = Array.from({ length: batch }, (_, i) => {
        const id = `w${w}-r${r}-i${i}`;
        ids.push(id);
        return { id, type: 'part.thing', stream: `part.s${w % 3}`, correlation_id: `corr-${r}`, data: { w, r, i } };
      });
      await pub(envs);
      // One keyed event per writer and round: its versions must climb by one across partitions.
      const k = await pub({ type: 'part.keyed', stream: 'part.keyed', key: `k${w}`, data: { r } });
      keyed.push(k[0]);
    }
  }));
  const total = writers * rounds * (batch + 1);
  assert.equal(head(), total, 'every event stored once');
  const rows = sql('SELECT count(*), count(DISTINCT position), min(position), max(position) FROM events');
  assert.equal(rows, `${total}|${total}|1|${total}`, 'positions gap-free');
  assert.equal(sql('SELECT count(*) FROM event_ids'), String(total), 'every id kept for idempotency');
  const ps = partitions();
  assert.ok(ps.length >= Math.ceil(total / WIDTH) + 1, `partitions were added as appends went on: ${ps}`);
  assert.equal(sql('SELECT count(*) FROM events_p0'), '0', 'a fresh log starts past the converted (empty) table');

  // Every keyed event's version, per key, is 1..rounds in position order.
  for (let w = 0; w < writers; w++) {
    const vs = keyed.filter((e) => e.key === `k${w}`).sort((a, b) => a.position - b.position).map((e) => e.version);
    assert.deepEqual(vs, Array.from({ length: rounds }, (_, i) => i + 1), `versions of k${w}`);
  }
  const { events: byKey } = await h.readAllPages(c, { key: 'k3', stream: 'part.keyed' });
  assert.deepEqual(byKey.map((e) => e.version), Array.from({ length: rounds }, (_, i) => i + 1), 'read by key');

  // By id, from the first, a middle and the last partition.
  for (const id of [ids[0], ids[Math.floor(ids.length / 2)], ids[ids.length - 1]]) {
    const r = await c.get(`/v1/events/${id}`);
    h.assertStatus(r, 200);
    assert.equal(r.body.id, id);
  }
  // A re-sent id whose event sits in an old partition is answered as stored, not stored again.
  const first = Number(sql(`SELECT position FROM event_ids WHERE id = '${ids[0]}'`));
  assert.ok(first < WIDTH, 'the first id is in the first partition with events');
  const again = await c.publish({ id: ids[0], type: 'part.thing', stream: `part.s0`, correlation_id: 'corr-0', data: { w: 0, r: 0, i: 0 } });
  assert.ok([200, 201].includes(again.status), h.describeRes(again));
  assert.equal(again.body.position, first, 'the re-sent id answers with its stored position');
  assert.equal(head(), total, 'and nothing new was stored');

  // By correlation: every round's events, over every partition.
  const { events: corr } = await h.readAllPages(c, { correlation_id: 'corr-5' });
  assert.equal(corr.length, writers * batch, 'correlation read');
  // NDJSON: the whole log, in order.
  const nd = await c.request('GET', '/v1/events?limit=100000', { headers: { accept: 'application/x-ndjson' } });
  h.assertStatus(nd, 200);
  const lines = nd.text.split('\n').filter(Boolean).map((l) => JSON.parse(l).position);
  assert.equal(lines.length, total, 'NDJSON export');
  for (let i = 1; i < lines.length; i++) assert.ok(lines[i] > lines[i - 1], 'NDJSON in position order');
});

test('retention drops whole expired partitions while pages are read, and keeps versions', { timeout: 180000 }, async () => {
  const before = head();
  // A stream with retention filling several partitions, then a stream without any, newer.
  for (let b = 0; b < 6; b++) {
    await pub(Array.from({ length: 500 }, (_, i) => ({ type: 'old.thing', stream: 'old.events', key: i < 5 ? `ok${i}` : undefined, data: { b, i } })));
  }
  const oldHigh = head();
  const keptVersion = Number(sql("SELECT max(version) FROM events WHERE key = 'ok0'"));
  assert.equal(keptVersion, 6, 'key ok0 got one version per batch');
  const oldId = sql("SELECT id FROM events WHERE stream = 'old.events' ORDER BY position LIMIT 1");
  // Partitions are [1 + k·WIDTH, 1 + (k+1)·WIDTH). Those wholly inside the old stream's span
  // can go; the one it shares with the earlier, unexpiring events of the previous test cannot.
  const doomed = [];
  for (let lo = 1 + Math.ceil(before / WIDTH) * WIDTH; lo + WIDTH <= oldHigh + 1; lo += WIDTH) doomed.push(`events_p${lo}`);
  assert.ok(doomed.length >= 2, `partitions lie wholly in old.events: ${doomed}`);
  assert.deepEqual(doomed.filter((p) => !partitions().includes(p)), [], 'they exist');
  await pub({ type: 'new.thing', stream: 'new.events', data: {} }); // keeps the head out of old.events
  const droppedBefore = await metric('sluice_partitions_dropped_total');

  // Pages are read all along, from the start, while the drop happens.
  let reading = true;
  let pagesRead = 0;
  const reader = (async () => {
    while (reading) {
      let after = 0;
      for (;;) {
        const r = await c.get(`/v1/events?after=${after}&limit=200`);
        h.assertStatus(r, 200);
        for (const e of r.body.events) {
          assert.ok(e.position > after, 'pages never go backwards');
          after = e.position;
        }
        pagesRead++;
        if (!r.body.has_more) break;
      }
    }
  })();

  sql("UPDATE events SET time = time - interval '2 hours' WHERE stream = 'old.events'");
  h.assertStatus(await c.request('PUT', '/v1/streams/old.events', { json: { retention: { max_age_ms: 3600000 } } }), 200);
  await h.waitFor(async () => doomed.every((p) => !partitions().includes(p)),
    { timeout: 60000, interval: 250, what: `${doomed} to be dropped` });
  await h.waitFor(async () => Number(sql("SELECT count(*) FROM events WHERE stream = 'old.events'")) === 0,
    { timeout: 60000, interval: 250, what: 'the rest of old.events (in shared partitions) to be deleted by rows' });
  reading = false;
  await reader;
  assert.ok(pagesRead > 0, 'pages were read during the drop');

  const ps = partitions();
  assert.ok(ps.includes('events_p1'), `the partition with unexpiring events stays: ${ps}`);
  assert.ok((await metric('sluice_partitions_dropped_total')) - droppedBefore >= doomed.length,
    'the drops are counted');
  assert.equal(sql("SELECT count(*) FROM pg_class WHERE relname LIKE 'events_p%' AND relkind = 'r' " +
    "AND NOT relispartition"), '0', 'no detached table left behind');
  // Its ids are forgotten (a re-send is new), its keys' versions kept (they never go back).
  assert.equal(sql(`SELECT count(*) FROM event_ids WHERE id = '${oldId}'`), '0');
  h.assertStatus(await c.get(`/v1/events/${oldId}`), 404);
  const next = await pub({ type: 'old.thing', stream: 'old.events', key: 'ok0', data: {} });
  assert.equal(next[0].version, keptVersion + 1, 'the version continues after the drop');
  const { events: unexpired } = await h.readAllPages(c, { stream: 'part.s0' });
  assert.equal(unexpired.length, 2 * 12 * 50, 'streams without retention keep every event (writers 0 and 3)');
});
