'use strict';
// Issues 6 and 15: the dead-letter admin API (API.md "Consumer groups and dead letters",
// server/dead_letters.h). Dead letters are made by real workers (XREADGROUP + nack over
// ioredis) failing in a group, and by a projection's reducer; then: list (filters stream,
// group, type, status, older_than_ms, event_id, source as <kind>:<name> or a kind alone;
// paging after/limit/next_after/has_more), inspect (the event and its history), reprocess one
// (the same entry, same event id, back to a worker of that group only; reprocessing →
// resolved once acknowledged; repeating delivers once), batch reprocess (dry run, max_age_ms,
// ids, event_ids, source, limit and has_more, a rate-limited redrive; a re-sent request —
// even after some letters failed again — delivers nothing twice), discard (the entry is
// acknowledged; twice → 409), the audit history of every transition, projection dead letters
// reprocessed by reapplying the event to the key's current state (resolved, or open again
// with the new error; a second reprocess applies nothing), and tenant isolation. Each sluice
// has its own SLUICE_REDIS_PREFIX.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

const WAIT_MS = 30000; // "no hang" bound for one expected state
// Dead letters here come from nacks; a longer ack timeout keeps a slow machine's worker from
// also timing out (groups.test.js tests the timeouts).
const POLICY = { max_deliveries: 3, retry: { base_delay_ms: 100, max_delay_ms: 400, jitter: true }, ack_timeout_ms: 2000 };

// the consumer-group kit: Redis client, worker, API helpers (lib/groups_kit.js)
const { Redis, redisUrl, withRedis, deletePrefix, posOf, fieldsOf, pendingEntries, waitInRedis, Worker, newPrefix, typeBase, keyOf, groupsPath, createGroup, listGroups, groupInfo, publishN, allDeadLetters, waitDeadLetters, startGroupsSluice, minBackoff } = require('./lib/groups_kit');

// Fails every delivery of `failTypes` (a Set of event types) with a non-retryable nack on its
// first delivery, and again on later ones while failAgain(d) says so; acknowledges the rest.
function failFirst(failTypes, failAgain = () => false) {
  return (d, n) => (failTypes.has(d.type) && (n === 1 || failAgain(d)) ? 'fatal' : 'ack');
}

const dlPath = (id, what = '') => `/v1/dead-letters/${id}${what}`;

function historyStatuses(dl) { return dl.history.map((x) => x.status); }

function checkRow(dl) {
  for (const f of ['id', 'source', 'stream', 'group', 'consumer', 'event_id', 'event_position', 'type', 'delivery_count', 'status', 'errors', 'first_failed_at', 'last_failed_at']) {
    assert.ok(f in dl, `dead letter has ${f}: ${JSON.stringify(dl)}`);
  }
  assert.match(String(dl.id), /^\d+$/);
  assert.ok(Array.isArray(dl.errors));
  for (const t of [dl.first_failed_at, dl.last_failed_at]) assert.match(t, h.TIME_RE);
}

// ---------------------------------------------------------------- list and inspect

describe('dead letters: list, filter, page, inspect', () => {
  let s;
  let c;
  let prefix;
  const workers = [];
  let t;
  let u;
  let A;
  let B;
  let badA;
  let goodA;
  let badB;
  before(async () => {
    ({ s, c, prefix } = await startGroupsSluice('dl-list'));
    t = typeBase();
    u = typeBase();
    A = `${t}.events`;
    B = `${u}.events`;
    await createGroup(c, A, { name: 'g1', ...POLICY });
    await createGroup(c, A, { name: 'g2', ...POLICY });
    await createGroup(c, B, { name: 'g3', ...POLICY });
    const fail = new Set([`${t}.bad`, `${u}.bad`]);
    for (const [stream, group] of [[A, 'g1'], [A, 'g2'], [B, 'g3']]) {
      workers.push(await new Worker({ key: keyOf(prefix, stream), group, name: `w-${group}`, client: c, stream, decide: group === 'g2' ? () => 'ack' : failFirst(fail) }).start());
    }
    badA = await publishN(c, `${t}.bad`, 5, (i) => ({ i, why: 'poison' }));
    goodA = await publishN(c, `${t}.good`, 3);
    badB = await publishN(c, `${u}.bad`, 4);
    await waitDeadLetters(c, {}, 9);
    for (const w of workers) w.assertHealthy();
  });
  after(async () => {
    for (const w of workers) await w.stop().catch(() => {});
    if (s) await s.stop().finally(() => s.cleanup());
    await deletePrefix(prefix);
  });

  test('GET /v1/dead-letters lists every open one, oldest first, with its fields', async () => {
    const body = h.assertStatus(await c.get('/v1/dead-letters'), 200);
    assert.deepEqual(Object.keys(body).sort(), ['dead_letters', 'has_more', 'next_after']);
    const all = body.dead_letters;
    assert.equal(all.length, 9);
    assert.equal(body.has_more, false);
    assert.equal(body.next_after, Number(all[8].id));
    const ids = all.map((d) => Number(d.id));
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'ordered by id');
    for (const d of all) {
      checkRow(d);
      assert.equal(d.source, `group:${d.group}`, 'a group\'s source is group:<name>');
      assert.equal(d.status, 'open');
      assert.equal(d.delivery_count, 1);
      assert.equal(d.errors.length, 1);
      assert.equal(d.errors[0].delivery, 1);
      assert.match(d.errors[0].time, /^\d{4}-\d\d-\d\dT/);
    }
    const want = [...badA.map((e) => [A, 'g1', 'w-g1', e, `${t}.bad`]), ...badB.map((e) => [B, 'g3', 'w-g3', e, `${u}.bad`])];
    assert.deepEqual(all.map((d) => [d.stream, d.group, d.consumer, d.event_id, d.event_position, d.type]).sort(),
      want.map(([st, g, w, e, ty]) => [st, g, w, e.id, e.position, ty]).sort());
    // the group that acknowledged everything has none; the list counts per group
    assert.equal((await groupInfo(c, A, 'g1')).dead_letters, 5);
    assert.equal((await groupInfo(c, A, 'g2')).dead_letters, 0);
    assert.equal((await groupInfo(c, B, 'g3')).dead_letters, 4);
    void goodA;
  });

  test('filters: stream, group, type, source, event_id, status, older_than_ms', async () => {
    const ids = async (q) => (await allDeadLetters(c, q)).map((d) => d.event_id).sort();
    assert.deepEqual(await ids({ stream: A }), badA.map((e) => e.id).sort());
    assert.deepEqual(await ids({ stream: B }), badB.map((e) => e.id).sort());
    assert.deepEqual(await ids({ group: 'g3' }), badB.map((e) => e.id).sort());
    assert.deepEqual(await ids({ group: 'g2' }), []);
    assert.deepEqual(await ids({ stream: A, group: 'g3' }), []);
    assert.deepEqual(await ids({ type: `${t}.bad` }), badA.map((e) => e.id).sort());
    assert.deepEqual(await ids({ type: `${t}.good` }), []);
    assert.equal((await ids({ source: 'group' })).length, 9, 'a kind alone: every group\'s');
    assert.deepEqual(await ids({ source: 'group:g1' }), badA.map((e) => e.id).sort(), 'group:<name>: exactly that group');
    assert.deepEqual(await ids({ source: 'group:g3' }), badB.map((e) => e.id).sort());
    assert.deepEqual(await ids({ source: 'group:g2' }), []);
    assert.deepEqual(await ids({ source: 'group:g' }), [], 'not a prefix match');
    assert.deepEqual(await ids({ source: 'group:g3', stream: A }), []);
    assert.equal((await ids({ source: 'projection:nope' })).length, 0);
    assert.equal((await ids({ source: 'projection' })).length, 0);
    assert.equal((await ids({ source: 'webhook' })).length, 0);
    assert.deepEqual(await ids({ event_id: badA[2].id }), [badA[2].id]);
    assert.deepEqual(await ids({ event_id: badA[2].id, group: 'g3' }), []);
    assert.deepEqual(await ids({ event_id: goodA[0].id }), [], 'an event that never failed');
    assert.deepEqual(await ids({ event_id: 'no-such-event' }), []);
    assert.equal((await ids({ status: 'open' })).length, 9);
    assert.equal((await ids({ status: 'resolved' })).length, 0);
    assert.equal((await ids({ status: 'discarded' })).length, 0);
    assert.equal((await ids({ older_than_ms: '3600000' })).length, 0, 'none is an hour old');
    // a newer one is not older than a second; the first nine are
    await h.sleep(1200);
    const [late] = await publishN(c, `${u}.bad`, 1);
    await waitDeadLetters(c, {}, 10);
    const old = await ids({ older_than_ms: '1000' });
    assert.equal(old.length, 9);
    assert.ok(!old.includes(late.id));
    assert.ok((await ids({})).includes(late.id));
    badB.push(late);
  });

  test('paging: limit, after, next_after, has_more walk every dead letter once', async () => {
    const all = await allDeadLetters(c);
    const seen = [];
    let after = 0;
    for (let pages = 0; ; pages++) {
      assert.ok(pages < 20);
      const body = h.assertStatus(await c.get(`/v1/dead-letters?limit=3&after=${after}`), 200);
      assert.ok(body.dead_letters.length <= 3);
      seen.push(...body.dead_letters.map((d) => d.id));
      if (!body.has_more) break;
      assert.equal(body.dead_letters.length, 3);
      assert.equal(body.next_after, Number(body.dead_letters[2].id));
      after = body.next_after;
    }
    assert.deepEqual(seen, all.map((d) => d.id));
    const last = all[all.length - 1].id;
    const empty = h.assertStatus(await c.get(`/v1/dead-letters?after=${last}`), 200);
    assert.deepEqual(empty.dead_letters, []);
    assert.equal(empty.has_more, false);
    assert.equal(empty.next_after, null);
    for (const q of ['limit=0', 'limit=1001', 'limit=x', 'after=-1', 'after=abc', 'older_than_ms=-5', 'older_than_ms=soon',
      'source=', 'source=groups', 'source=group:', 'source=queue:x', 'source=Group:g1', 'source=%20group']) {
      h.assertProblem(await c.get('/v1/dead-letters?' + q), 400, 'invalid_query');
    }
  });

  test('GET /v1/dead-letters/{id}: the row, the stored event and the history; unknown → 404', async () => {
    const [row] = await allDeadLetters(c, { stream: A, limit: 1 });
    const one = h.assertStatus(await c.get(dlPath(row.id)), 200);
    checkRow(one);
    for (const k of Object.keys(row)) assert.deepEqual(one[k], row[k], `field ${k} as listed`);
    const stored = h.assertStatus(await c.get('/v1/events/' + encodeURIComponent(row.event_id)), 200);
    assert.ok(one.event && typeof one.event === 'object', 'the event is included');
    for (const k of ['id', 'type', 'stream', 'position', 'data', 'time', 'tenant_id']) {
      assert.deepEqual(one.event[k], stored[k], `event.${k} is the stored event's`);
    }
    assert.deepEqual(one.event.data.why, 'poison');
    assert.equal(one.history.length, 1);
    assert.equal(one.history[0].status, 'open');
    assert.match(one.history[0].time, /^\d{4}-\d\d-\d\dT/);
    assert.equal(typeof one.history[0].note, 'string');
    h.assertProblem(await c.get(dlPath('987654321')), 404, 'not_found');
  });

  test('an id that is not a number, or too large for one, is an unknown dead letter: 404 for every endpoint', async () => {
    const wrong = [];
    for (const id of ['abc', '12x', '99999999999999999999']) {
      for (const [what, res] of [['GET', await c.get(dlPath(id))], ['reprocess', await c.post(dlPath(id, '/reprocess'), {})], ['discard', await c.post(dlPath(id, '/discard'), {})]]) {
        if (res.status !== 404) wrong.push(`${what} ${id}: ${h.describeRes(res)}`);
      }
    }
    assert.deepEqual(wrong, [], 'every one answers 404 not_found');
  });

  test('GET /metrics counts dead letters by source and status', async () => {
    const res = await c.get('/metrics');
    assert.equal(res.status, 200);
    const m = /^sluice_dead_letters\{source="group",status="open"\} (\d+)$/m.exec(res.text);
    assert.ok(m, `sluice_dead_letters{source="group",status="open"} in ${res.text.split('\n').filter((l) => /dead/.test(l)).join('\n')}`);
    assert.equal(Number(m[1]), (await allDeadLetters(c, { source: 'group', status: 'open' })).length);
  });

  test('the dead-letter endpoints need the admin scope', async () => {
    const k = await h.createKey(s, 'default', ['publish', 'read', 'subscribe', 'schemas']);
    const uc = s.client(k.token);
    const [row] = await allDeadLetters(c, { limit: 1 });
    for (const res of [
      await uc.get('/v1/dead-letters'),
      await uc.get(dlPath(row.id)),
      await uc.post(dlPath(row.id, '/reprocess'), {}),
      await uc.post(dlPath(row.id, '/discard'), {}),
      await uc.post('/v1/dead-letters/reprocess', { dry_run: true }),
    ]) assert.equal(res.status, 403, h.describeRes(res));
    assert.equal((await c.get('/v1/dead-letters', { token: null })).status, 401);
    assert.equal(h.assertStatus(await c.get(dlPath(row.id)), 200).status, 'open', 'nothing changed');
  });
});

// ---------------------------------------------------------------- reprocess and discard

describe('dead letters: reprocess and discard', () => {
  let s;
  let c;
  let prefix;
  const workers = [];
  before(async () => { ({ s, c, prefix } = await startGroupsSluice('dl-reprocess')); });
  after(async () => {
    for (const w of workers) await w.stop().catch(() => {});
    if (s) await s.stop().finally(() => s.cleanup());
    await deletePrefix(prefix);
  });

  // A stream with group `fails` (its worker fails `bad` events as decide says) and group
  // `fine` (acknowledges everything).
  async function fixture(decideFails) {
    const t = typeBase();
    const stream = `${t}.events`;
    const key = keyOf(prefix, stream);
    await createGroup(c, stream, { name: 'fails', ...POLICY });
    await createGroup(c, stream, { name: 'fine', ...POLICY });
    const wf = await new Worker({ key, group: 'fails', name: 'wf', client: c, stream, decide: decideFails }).start();
    const wok = await new Worker({ key, group: 'fine', name: 'wok', client: c, stream, decide: () => 'ack' }).start();
    workers.push(wf, wok);
    return { t, stream, key, wf, wok, bad: new Set([`${t}.bad`]) };
  }

  test('reprocess one: the same entry and event id go back to that group only; acknowledged → resolved; repeating delivers once', { timeout: 120000 }, async () => {
    const fx = await fixture((d, n) => (n === 1 ? 'fatal' : 'ack'));
    fx.wf.decide = (d, n) => (d.type === `${fx.t}.bad` && n === 1 ? 'fatal' : 'ack');
    const [ev] = await publishN(c, `${fx.t}.bad`, 1);
    const [dl] = await waitDeadLetters(c, { stream: fx.stream, group: 'fails' }, 1);
    await h.waitFor(() => fx.wok.of(ev.position).length === 1, { timeout: WAIT_MS, what: 'group fine to get the event' });
    assert.equal(fx.wf.of(ev.position).length, 1);

    // two identical requests at once, then more: one redelivery
    const answers = await Promise.all([c.post(dlPath(dl.id, '/reprocess'), {}), c.post(dlPath(dl.id, '/reprocess'), {})]);
    for (const a of answers) {
      h.assertStatus(a, 200);
      assert.equal(a.body.id, dl.id);
      assert.ok(['reprocessing', 'resolved'].includes(a.body.status), a.text);
    }
    await h.waitFor(() => fx.wf.of(ev.position).length >= 2, { timeout: WAIT_MS, what: 'the failed group to get the event again' });
    const again = fx.wf.of(ev.position)[1];
    assert.equal(again.eventId, ev.id, 'the same event id');
    assert.equal(again.id, `${ev.position}-0`, 'the same Redis entry');
    assert.equal(again.via, '0', 'as a redelivery (XREADGROUP … 0)');
    const resolved = await h.waitFor(async () => {
      const b = h.assertStatus(await c.get(dlPath(dl.id)), 200);
      return b.status === 'resolved' ? b : false;
    }, { timeout: WAIT_MS, what: 'the dead letter to be resolved once acknowledged' });
    assert.deepEqual(historyStatuses(resolved), ['open', 'reprocessing', 'resolved']);
    for (const x of resolved.history) assert.match(x.time, /^\d{4}-\d\d-\d\dT/);
    const later = h.assertStatus(await c.post(dlPath(dl.id, '/reprocess'), {}), 200);
    assert.equal(later.status, 'resolved', 'reprocessing a resolved one changes nothing');
    await h.sleep(1500);
    assert.equal(fx.wf.of(ev.position).length, 2, 'delivered once more, not twice');
    assert.equal(fx.wok.of(ev.position).length, 1, 'the group that acknowledged it never sees it again');
    assert.deepEqual(historyStatuses(h.assertStatus(await c.get(dlPath(dl.id)), 200)), ['open', 'reprocessing', 'resolved']);
    // off the default list, on the resolved one; the group counts none
    assert.deepEqual(await allDeadLetters(c, { stream: fx.stream }), []);
    assert.deepEqual((await allDeadLetters(c, { stream: fx.stream, status: 'resolved' })).map((d) => d.id), [dl.id]);
    assert.equal((await groupInfo(c, fx.stream, 'fails')).dead_letters, 0);
    await withRedis(async (r) => {
      assert.deepEqual(await pendingEntries(r, fx.key, 'fails'), [], 'nothing pending in the group');
    });
    h.assertProblem(await c.post(dlPath('987654321', '/reprocess'), {}), 404, 'not_found');
    for (const w of [fx.wf, fx.wok]) w.assertHealthy();
  });

  test('a reprocessed event that fails again is a dead letter again: the same row, reopened, counts and history appended', { timeout: 120000 }, async () => {
    const fx = await fixture((d) => (d.type.endsWith('.bad') ? 'fatal' : 'ack'));
    const [ev] = await publishN(c, `${fx.t}.bad`, 1);
    const [dl] = await waitDeadLetters(c, { stream: fx.stream, group: 'fails' }, 1);
    h.assertStatus(await c.post(dlPath(dl.id, '/reprocess'), {}), 200);
    const reopened = await h.waitFor(async () => {
      const b = h.assertStatus(await c.get(dlPath(dl.id)), 200);
      return b.status === 'open' && b.history.length >= 3 ? b : false;
    }, { timeout: WAIT_MS, what: 'the dead letter to reopen' });
    assert.deepEqual(historyStatuses(reopened), ['open', 'reprocessing', 'open']);
    assert.equal(reopened.delivery_count, 2, 'the deliveries add up');
    assert.deepEqual(reopened.errors.map((e) => e.delivery), [1, 1]);
    assert.equal(reopened.first_failed_at, dl.first_failed_at);
    assert.ok(reopened.last_failed_at >= dl.last_failed_at);
    assert.equal((await allDeadLetters(c, { stream: fx.stream })).length, 1, 'still one row');
    assert.equal(fx.wf.of(ev.position).length, 2);
    assert.equal(fx.wok.of(ev.position).length, 1);
  });

  test('discard: the status is discarded, the entry acknowledged; discarding again → 409, reprocessing → 409', { timeout: 120000 }, async () => {
    const fx = await fixture((d) => (d.type.endsWith('.bad') ? 'fatal' : 'ack'));
    const [ev] = await publishN(c, `${fx.t}.bad`, 1);
    const [dl] = await waitDeadLetters(c, { stream: fx.stream, group: 'fails' }, 1);
    await withRedis(async (r) => {
      assert.deepEqual((await pendingEntries(r, fx.key, 'fails')).map((x) => [x.position, x.consumer]), [[ev.position, 'sluice-dead']]);
    });
    const d = h.assertStatus(await c.post(dlPath(dl.id, '/discard'), {}), 200);
    assert.equal(d.id, dl.id);
    assert.equal(d.status, 'discarded');
    assert.deepEqual(historyStatuses(d), ['open', 'discarded']);
    await withRedis(async (r) => {
      assert.deepEqual(await pendingEntries(r, fx.key, 'fails'), [], 'the entry is acknowledged');
    });
    h.assertProblem(await c.post(dlPath(dl.id, '/discard'), {}), 409, 'conflict');
    h.assertProblem(await c.post(dlPath(dl.id, '/reprocess'), {}), 409, 'conflict');
    assert.deepEqual(historyStatuses(h.assertStatus(await c.get(dlPath(dl.id)), 200)), ['open', 'discarded'], 'refused requests are not transitions');
    assert.deepEqual(await allDeadLetters(c, { stream: fx.stream }), []);
    assert.deepEqual((await allDeadLetters(c, { stream: fx.stream, status: 'discarded' })).map((x) => x.id), [dl.id]);
    await h.sleep(800);
    assert.equal(fx.wf.of(ev.position).length, 1, 'a discarded event is not delivered');
    h.assertProblem(await c.post(dlPath('987654321', '/discard'), {}), 404, 'not_found');
  });

  test('a dead letter whose group was deleted: reprocess → 409 conflict and it stays open; a batch over it gives up (no endless retries filling the history); discard still works', { timeout: 60000 }, async () => {
    const fx = await fixture((d) => (d.type.endsWith('.bad') ? 'fatal' : 'ack'));
    await publishN(c, `${fx.t}.bad`, 2);
    const [dl, dl2] = await waitDeadLetters(c, { stream: fx.stream, group: 'fails' }, 2);
    await fx.wf.stop();
    assert.equal((await c.del(`${groupsPath(fx.stream)}/fails`)).status, 204);
    const wrong = [];
    // a batch first (its answer is 202 whatever happens later)
    h.assertStatus(await c.post('/v1/dead-letters/reprocess', { ids: [dl2.id], max_per_second: 10 }), 202);
    await h.sleep(2000);
    const two = h.assertStatus(await c.get(dlPath(dl2.id)), 200);
    if (two.status !== 'open') wrong.push(`batch: status ${two.status}`);
    if (two.history.length > 3) wrong.push(`batch: ${two.history.length} history entries after 2 s (still growing: the redrive retries it every tick): ${JSON.stringify(two.history.slice(0, 4))}…`);
    // then one
    const res = await c.post(dlPath(dl.id, '/reprocess'), {});
    if (res.status !== 409) wrong.push(`POST /v1/dead-letters/${dl.id}/reprocess: ${h.describeRes(res)}`);
    const one = h.assertStatus(await c.get(dlPath(dl.id)), 200);
    if (one.status !== 'open') wrong.push(`one: status ${one.status}`);
    const d = h.assertStatus(await c.post(dlPath(dl.id, '/discard'), {}), 200);
    assert.equal(d.status, 'discarded');
    assert.deepEqual(wrong, [], 'a group that no longer exists is a conflict, not an outage');
  });

  test('batch: dry_run answers what would be reprocessed and changes nothing; max_age_ms and ids select', { timeout: 120000 }, async () => {
    const fx = await fixture((d, n) => (d.type.endsWith('.bad') && n === 1 ? 'fatal' : 'ack'));
    const older = await publishN(c, `${fx.t}.bad`, 3);
    await waitDeadLetters(c, { stream: fx.stream }, 3);
    await h.sleep(1500);
    const newer = await publishN(c, `${fx.t}.bad`, 2);
    const rows = await waitDeadLetters(c, { stream: fx.stream }, 5);
    const idOf = new Map(rows.map((r) => [r.event_id, r.id]));
    const batch = (b) => c.post('/v1/dead-letters/reprocess', b);

    const dry = h.assertStatus(await batch({ stream: fx.stream, group: 'fails', dry_run: true }), 200);
    assert.equal(dry.dry_run, true);
    assert.equal(dry.count, 5);
    assert.equal(dry.has_more, false);
    assert.deepEqual(dry.dead_letters.map((x) => x.id), rows.map((r) => r.id));
    for (const x of dry.dead_letters) checkRow(x);
    const recent = h.assertStatus(await batch({ stream: fx.stream, max_age_ms: 1000, dry_run: true }), 200);
    assert.deepEqual(recent.dead_letters.map((x) => x.event_id).sort(), newer.map((e) => e.id).sort(), 'max_age_ms: failed within that long');
    const picked = [idOf.get(older[0].id), Number(idOf.get(newer[1].id))]; // a string and a number
    const byIds = h.assertStatus(await batch({ ids: picked, dry_run: true }), 200);
    assert.deepEqual(byIds.dead_letters.map((x) => x.id).sort(), picked.map(String).sort());
    assert.equal(h.assertStatus(await batch({ stream: fx.stream, group: 'fine', dry_run: true }), 200).count, 0);
    assert.equal(h.assertStatus(await batch({ stream: 'no.such', dry_run: true }), 200).count, 0);
    // nothing moved
    await h.sleep(500);
    for (const e of [...older, ...newer]) assert.equal(fx.wf.of(e.position).length, 1, 'a dry run delivers nothing');
    for (const r of await allDeadLetters(c, { stream: fx.stream })) {
      assert.equal(r.status, 'open');
      assert.deepEqual(historyStatuses(h.assertStatus(await c.get(dlPath(r.id)), 200)), ['open']);
    }
    // the real thing, by ids
    const go = h.assertStatus(await batch({ ids: picked }), 202);
    assert.equal(go.dry_run, false);
    assert.equal(go.count, 2);
    assert.deepEqual([...go.ids].map(String).sort(), picked.map(String).sort());
    await h.waitFor(async () => (await allDeadLetters(c, { stream: fx.stream, status: 'resolved' })).length === 2, { timeout: WAIT_MS, what: 'the two to resolve' });
    assert.equal((await allDeadLetters(c, { stream: fx.stream })).length, 3);
    for (const bad of [{ max_per_second: 0 }, { max_per_second: 'fast' }, { ids: 'x' }, { dry_run: 'yes' }, { max_age_ms: 0 }, { stream: 5 }, { extra: 1 }, [],
      { event_ids: 'x' }, { event_ids: [1] }, { limit: 0 }, { limit: 10001 }, { limit: 1.5 }, { source: 'nope' }, { source: 'group:' }, { source: 7 }]) {
      h.assertProblem(await batch(bad), 400, 'invalid_request');
    }
  });

  test('batch redrive at max_per_second: 20 dead letters at 10/s take ≳ 1.5 s, each delivered once to its group; repeating the request redelivers nothing', { timeout: 120000 }, async () => {
    const fx = await fixture((d, n) => (d.type.endsWith('.bad') && n === 1 ? 'fatal' : 'ack'));
    const evs = await publishN(c, `${fx.t}.bad`, 20);
    await waitDeadLetters(c, { stream: fx.stream, group: 'fails' }, 20);
    const t0 = Date.now();
    const go = h.assertStatus(await c.post('/v1/dead-letters/reprocess', { stream: fx.stream, group: 'fails', max_per_second: 10 }), 202);
    assert.equal(go.count, 20);
    assert.equal(go.ids.length, 20);
    assert.equal(go.max_per_second, 10);
    await h.waitFor(() => evs.every((e) => fx.wf.of(e.position).length === 2), { timeout: WAIT_MS, what: 'all 20 to be redelivered' });
    const lastAt = Math.max(...evs.map((e) => fx.wf.of(e.position)[1].at));
    assert.ok(lastAt - t0 >= 1500, `20 at 10/s took ${lastAt - t0} ms (≥ 1500 expected)`);
    await h.waitFor(async () => (await allDeadLetters(c, { stream: fx.stream, status: 'resolved' })).length === 20, { timeout: WAIT_MS, what: 'all 20 resolved' });
    const again = h.assertStatus(await c.post('/v1/dead-letters/reprocess', { stream: fx.stream, group: 'fails', max_per_second: 10 }), 202);
    assert.equal(again.count, 0, 'nothing open is left to reprocess');
    await h.sleep(1000);
    for (const e of evs) {
      assert.equal(fx.wf.of(e.position).length, 2, 'exactly one redelivery');
      assert.equal(fx.wok.of(e.position).length, 1, 'not to the other group');
    }
    for (const r of await allDeadLetters(c, { stream: fx.stream, status: 'resolved' })) {
      assert.deepEqual(historyStatuses(h.assertStatus(await c.get(dlPath(r.id)), 200)), ['open', 'reprocessing', 'resolved']);
    }
  });
  test('batch: event_ids and source select; a limit stops the selection and has_more says so; the next request takes the next ones, each letter once', { timeout: 120000 }, async () => {
    const fx = await fixture((d, n) => (d.type.endsWith('.bad') && n === 1 ? 'fatal' : 'ack'));
    const evs = await publishN(c, `${fx.t}.bad`, 5);
    const rows = await waitDeadLetters(c, { stream: fx.stream, group: 'fails' }, 5);
    const ids = rows.map((r) => r.id);
    const batch = (b) => c.post('/v1/dead-letters/reprocess', b);
    const dryIds = async (b) => h.assertStatus(await batch({ ...b, dry_run: true }), 200).dead_letters.map((d) => d.id);
    assert.deepEqual(await dryIds({ event_ids: [evs[3].id, evs[1].id] }), [ids[1], ids[3]]);
    assert.deepEqual(await dryIds({ event_ids: [evs[3].id], ids: [ids[1]] }), [], 'every field must match');
    assert.deepEqual(await dryIds({ event_ids: [] }), []);
    assert.deepEqual(await dryIds({ source: 'group:fails', stream: fx.stream }), ids);
    assert.deepEqual(await dryIds({ source: 'group', stream: fx.stream }), ids);
    assert.deepEqual(await dryIds({ source: 'group:fine', stream: fx.stream }), []);
    assert.deepEqual(await dryIds({ source: 'projection', stream: fx.stream }), []);
    const two = h.assertStatus(await batch({ stream: fx.stream, limit: 2, dry_run: true }), 200);
    assert.deepEqual([two.count, two.has_more, two.dead_letters.map((d) => d.id)], [2, true, ids.slice(0, 2)]);
    const all = h.assertStatus(await batch({ stream: fx.stream, limit: 5, dry_run: true }), 200);
    assert.deepEqual([all.count, all.has_more], [5, false], 'exactly the limit: nothing more');

    const first = h.assertStatus(await batch({ stream: fx.stream, group: 'fails', limit: 2 }), 202);
    assert.deepEqual([first.count, first.has_more, first.ids], [2, true, ids.slice(0, 2)]);
    const second = h.assertStatus(await batch({ stream: fx.stream, group: 'fails', limit: 2 }), 202);
    assert.deepEqual([second.count, second.has_more, second.ids], [2, true, ids.slice(2, 4)], 'the first one\'s letters are not selected again');
    const third = h.assertStatus(await batch({ stream: fx.stream, group: 'fails', limit: 2 }), 202);
    assert.deepEqual([third.count, third.has_more, third.ids], [1, false, ids.slice(4)]);
    await h.waitFor(async () => (await allDeadLetters(c, { stream: fx.stream, status: 'resolved' })).length === 5, { timeout: WAIT_MS, what: 'all five resolved' });
    await h.sleep(500);
    for (const e of evs) assert.equal(fx.wf.of(e.position).length, 2, 'each delivered once more');
  });

  test('a re-sent batch request delivers nothing twice, even once letters have failed again while the first runs; two at once share the letters', { timeout: 120000 }, async () => {
    // this group's worker fails every delivery of a bad event: a reprocessed letter is soon open again
    const fx = await fixture((d) => (d.type.endsWith('.bad') ? 'fatal' : 'ack'));
    const evs = await publishN(c, `${fx.t}.bad`, 4);
    const rows = await waitDeadLetters(c, { stream: fx.stream, group: 'fails' }, 4);
    const body = { stream: fx.stream, group: 'fails', max_per_second: 1 };
    const batch = (b) => c.post('/v1/dead-letters/reprocess', b);
    const first = h.assertStatus(await batch(body), 202);
    assert.equal(first.count, 4);
    // the first letter is reprocessed at once, redelivered, failed again: open once more
    await h.waitFor(async () => {
      const d = h.assertStatus(await c.get(dlPath(rows[0].id)), 200);
      return d.status === 'open' && d.history.length === 3;
    }, { timeout: WAIT_MS, what: 'the first letter to fail again' });
    assert.equal(fx.wf.of(evs[0].position).length, 2);
    // re-sent while the first runs: nothing selected, not even the letter that is open again
    const resent = h.assertStatus(await batch(body), 202);
    assert.deepEqual([resent.count, resent.ids, resent.has_more], [0, [], false]);
    assert.equal(h.assertStatus(await batch({ ...body, dry_run: true }), 200).count, 0, 'a dry run says so too');
    // the first ends: every letter redelivered once, failed again, open, and free to select
    await h.waitFor(async () => h.assertStatus(await batch({ ...body, dry_run: true }), 200).count === 4,
      { timeout: WAIT_MS, what: 'the first redrive to end with all four open again' });
    await h.sleep(500);
    for (const e of evs) assert.equal(fx.wf.of(e.position).length, 2, `event ${e.position}: delivered once by the redrive`);
    for (const r of rows) {
      assert.deepEqual(historyStatuses(h.assertStatus(await c.get(dlPath(r.id)), 200)), ['open', 'reprocessing', 'open']);
    }
    // two identical requests at once: between them each letter once
    const pair = await Promise.all([batch({ ...body, max_per_second: 20 }), batch({ ...body, max_per_second: 20 })]);
    const got = pair.map((res) => h.assertStatus(res, 202).ids).flat().sort();
    assert.deepEqual(got, rows.map((r) => r.id).sort(), 'each letter in exactly one answer');
    await h.waitFor(() => evs.every((e) => fx.wf.of(e.position).length >= 3), { timeout: WAIT_MS, what: 'the second redelivery of each' });
    await h.waitFor(async () => h.assertStatus(await batch({ ...body, dry_run: true }), 200).count === 4,
      { timeout: WAIT_MS, what: 'both redrives to end' });
    await h.sleep(500);
    for (const e of evs) assert.equal(fx.wf.of(e.position).length, 3, `event ${e.position}: once more, not twice`);
    for (const e of evs) assert.equal(fx.wok.of(e.position).length, 1, 'never to the other group');
  });
});

// ---------------------------------------------------------------- projections

describe('dead letters: projection failures, reprocessed by reapplying the event', () => {
  let s;
  let c;
  let prefix;
  before(async () => { ({ s, c, prefix } = await startGroupsSluice('dl-projection')); });
  after(async () => {
    if (s) await s.stop().finally(() => s.cleanup());
    await deletePrefix(prefix);
  });

  // A sum per account over /data/amount; its events are published in one request, in order.
  async function sumProjection(t, name) {
    h.assertStatus(await c.post('/v1/projections', { name, filter: { types: [`${t}.moved`] }, key: '/data/acct', reduce: 'sum', path: '/data/amount' }), 201);
  }
  async function move(t, rows) {
    const res = await c.publish(rows.map(([acct, amount]) => ({ type: `${t}.moved`, stream: `${t}.events`, data: { acct, amount } })));
    return h.assertStatus(res, 201).events;
  }
  async function caughtUp(name, position) {
    await h.waitFor(async () => h.assertStatus(await c.get(`/v1/projections/${name}`), 200).position >= position,
      { timeout: WAIT_MS, what: `projection ${name} to reach ${position}` });
  }
  const stateOf = async (name, key) => h.assertStatus(await c.get(`/v1/projections/${name}/state?key=${key}`), 200);
  const near = (got, want, what) => assert.ok(Math.abs(got - want) <= Math.abs(want) * 1e-9, `${what}: ${got}, expected ${want}`);

  test('a sum that overflows is a dead letter with source projection:<name>; reprocess reapplies it to the key\'s current state and resolves it, once however often it is asked', { timeout: 60000 }, async () => {
    const t = typeBase();
    const name = 'bal_' + h.rand(2);
    await sumProjection(t, name);
    // a: 1e308, then 1e308 more overflows (dead letter), then −1e308 and −5e307: −5e307.
    const evs = await move(t, [['a', 1e308], ['a', 1e308], ['a', -1e308], ['b', 3], ['a', -5e307], ['b', 4]]);
    const [dl] = await waitDeadLetters(c, { source: `projection:${name}` }, 1);
    await caughtUp(name, evs[5].position);
    checkRow(dl);
    assert.equal(dl.source, `projection:${name}`);
    assert.equal(dl.event_id, evs[1].id);
    assert.equal(dl.event_position, evs[1].position);
    assert.equal(dl.stream, `${t}.events`);
    assert.equal(dl.group, null);
    assert.equal(dl.status, 'open');
    assert.deepEqual(dl.errors.map((e) => e.error), ['the sum overflows']);
    // the source and event filters
    assert.deepEqual((await allDeadLetters(c, { source: 'projection' })).map((d) => d.id), [dl.id], 'a kind alone');
    assert.deepEqual(await allDeadLetters(c, { source: 'group' }), []);
    assert.deepEqual(await allDeadLetters(c, { source: `projection:${name}x` }), []);
    assert.deepEqual((await allDeadLetters(c, { event_id: evs[1].id })).map((d) => d.id), [dl.id]);
    near((await stateOf(name, 'a')).state, -5e307, 'before');
    const before = await stateOf(name, 'a');

    // two at once, then one more: applied once
    const answers = await Promise.all([c.post(dlPath(dl.id, '/reprocess'), {}), c.post(dlPath(dl.id, '/reprocess'), {})]);
    for (const a of answers) assert.equal(h.assertStatus(a, 200).status, 'resolved', a.text);
    const again = h.assertStatus(await c.post(dlPath(dl.id, '/reprocess'), {}), 200);
    assert.equal(again.status, 'resolved');
    assert.deepEqual(historyStatuses(again), ['open', 'reprocessing', 'resolved']);
    assert.match(again.history[2].note, new RegExp(`reapplied to projection ${name}`));
    assert.equal(again.errors.length, 1, 'no new error');
    const after = await stateOf(name, 'a');
    near(after.state, 5e307, 'after: −5e307 + 1e308 (twice would be 1.5e308)');
    assert.equal(after.position, before.position, 'the key\'s position stays its newest event\'s');
    near((await stateOf(name, 'b')).state, 7, 'b untouched');
    // off the default list, on the resolved one
    assert.deepEqual(await allDeadLetters(c, { source: `projection:${name}` }), []);
    assert.deepEqual((await allDeadLetters(c, { source: `projection:${name}`, status: 'resolved' })).map((d) => d.id), [dl.id]);
    // the projection goes on from its checkpoint, on the reapplied state
    const [more] = await move(t, [['a', 1e307]]);
    await caughtUp(name, more.position);
    near((await stateOf(name, 'a')).state, 6e307, 'a later event folds onto the reapplied state');
    near((await stateOf(name, 'b')).state, 7, 'b still');
    assert.equal(h.assertStatus(await c.get(`/v1/projections/${name}`), 200).status, 'live');
  });

  test('refused again: the letter stays open with the new error in errors and history, the state is unchanged; discard still clears it', { timeout: 60000 }, async () => {
    const t = typeBase();
    const name = 'tot_' + h.rand(2);
    await sumProjection(t, name);
    const evs = await move(t, [['x', 10], ['x', 'lots'], ['x', 5]]);
    const [dl] = await waitDeadLetters(c, { source: `projection:${name}` }, 1);
    await caughtUp(name, evs[2].position);
    assert.equal(dl.event_id, evs[1].id);
    const one = h.assertStatus(await c.post(dlPath(dl.id, '/reprocess'), {}), 200);
    assert.equal(one.status, 'open');
    assert.deepEqual(historyStatuses(one), ['open', 'reprocessing', 'open']);
    assert.match(one.history[2].note, /reprocess failed: expected a number at the path/);
    assert.deepEqual(one.errors.map((e) => e.error), ['expected a number at the path', 'expected a number at the path']);
    for (const e of one.errors) assert.match(e.time, /^\d{4}-\d\d-\d\dT/);
    assert.equal(one.first_failed_at, dl.first_failed_at);
    assert.ok(one.last_failed_at >= dl.last_failed_at);
    assert.equal((await stateOf(name, 'x')).state, 15, 'nothing applied');
    assert.deepEqual((await allDeadLetters(c, { source: `projection:${name}` })).map((d) => d.id), [dl.id], 'still listed');
    const d = h.assertStatus(await c.post(dlPath(dl.id, '/discard'), {}), 200);
    assert.equal(d.status, 'discarded');
    assert.deepEqual(historyStatuses(d), ['open', 'reprocessing', 'open', 'discarded']);
    h.assertProblem(await c.post(dlPath(dl.id, '/reprocess'), {}), 409, 'conflict');
    assert.deepEqual(await allDeadLetters(c, { source: `projection:${name}` }), []);
  });

  test('a projection deleted since, or defined again under the same name: reprocess → 409, the letter stays open and unchanged', { timeout: 60000 }, async () => {
    const t = typeBase();
    const name = 'gone_' + h.rand(2);
    await sumProjection(t, name);
    await move(t, [['g', 1], ['g', 'many']]);
    const [dl] = await waitDeadLetters(c, { source: `projection:${name}` }, 1);
    assert.equal((await c.del(`/v1/projections/${name}`)).status, 204);
    h.assertProblem(await c.post(dlPath(dl.id, '/reprocess'), {}), 409, 'conflict');
    await sumProjection(t, name); // another projection, which folds every event itself
    const p = h.assertProblem(await c.post(dlPath(dl.id, '/reprocess'), {}), 409, 'conflict');
    assert.match(p.detail, /no longer exists as it was/);
    const now = h.assertStatus(await c.get(dlPath(dl.id)), 200);
    assert.equal(now.status, 'open');
    assert.deepEqual(historyStatuses(now), ['open'], 'refused requests are not transitions');
  });

  test('batch: projection letters are selected by source and event_ids and reprocessed alongside; the refused one stays open', { timeout: 60000 }, async () => {
    const t = typeBase();
    const name = 'mix_' + h.rand(2);
    await sumProjection(t, name);
    const evs = await move(t, [['m', 1e308], ['m', 1e308], ['m', -1e308], ['n', 'none']]);
    const letters = await waitDeadLetters(c, { source: `projection:${name}` }, 2);
    await caughtUp(name, evs[3].position);
    const byEvent = new Map(letters.map((d) => [d.event_id, d]));
    const overflow = byEvent.get(evs[1].id);
    const refused = byEvent.get(evs[3].id);
    assert.ok(overflow && refused, JSON.stringify(letters));
    const batch = (b) => c.post('/v1/dead-letters/reprocess', b);
    const dry = h.assertStatus(await batch({ source: `projection:${name}`, dry_run: true }), 200);
    assert.deepEqual(dry.dead_letters.map((d) => d.id), [overflow.id, refused.id]);
    assert.equal(dry.has_more, false);
    assert.deepEqual(h.assertStatus(await batch({ event_ids: [evs[3].id, 'no-such-event'], dry_run: true }), 200).dead_letters.map((d) => d.id), [refused.id]);
    assert.equal(h.assertStatus(await batch({ source: `projection:${name}`, group: 'g', dry_run: true }), 200).count, 0, 'a group selects group letters only');
    const go = h.assertStatus(await batch({ source: `projection:${name}`, max_per_second: 50 }), 202);
    assert.deepEqual(go.ids, [overflow.id, refused.id]);
    assert.equal(go.has_more, false);
    await h.waitFor(async () => {
      const a = h.assertStatus(await c.get(dlPath(overflow.id)), 200);
      const b = h.assertStatus(await c.get(dlPath(refused.id)), 200);
      return a.status === 'resolved' && b.history.length === 3;
    }, { timeout: WAIT_MS, what: 'the redrive to reach both letters' });
    near((await stateOf(name, 'm')).state, 1e308, 'm: 0 + 1e308');
    const b = h.assertStatus(await c.get(dlPath(refused.id)), 200);
    assert.equal(b.status, 'open');
    assert.deepEqual(historyStatuses(b), ['open', 'reprocessing', 'open']);
    assert.equal(b.errors.length, 2);
    // the redrive has ended (its claim is released): the refused one can be selected again
    await h.waitFor(async () => h.assertStatus(await batch({ source: `projection:${name}`, dry_run: true }), 200).count === 1,
      { timeout: WAIT_MS, what: 'the refused letter to be selectable again' });
    near((await stateOf(name, 'm')).state, 1e308, 'applied once');
  });
});

// ---------------------------------------------------------------- tenants

describe('dead letters and groups: tenant isolation', () => {
  test('a tenant-B admin sees none of tenant A\'s groups or dead letters, and its Redis stream is <prefix><tenant>:<stream>', { timeout: 120000 }, async () => {
    const { s, c, prefix } = await startGroupsSluice('dl-tenants');
    const workers = [];
    try {
      const tenantB = 'tenant-' + h.rand(3);
      const kb = await h.createKey(s, tenantB, ['admin', 'publish', 'read']);
      const cb = s.client(kb.token);
      const t = typeBase();
      const stream = `${t}.events`;
      const keyA = keyOf(prefix, stream);
      const keyB = keyOf(prefix, stream, tenantB);
      assert.equal(keyB, `${prefix}${tenantB}:${stream}`);
      const ga = await createGroup(c, stream, { name: 'same', ...POLICY });
      assert.equal(ga.redis_stream, keyA);
      assert.deepEqual((await listGroups(cb, stream)).groups, [], 'B sees no group of A');
      const gb = await createGroup(cb, stream, { name: 'same', ...POLICY }); // not a conflict: another Redis stream
      assert.equal(gb.redis_stream, keyB);
      assert.equal((await listGroups(cb, stream)).redis_stream, keyB);
      await withRedis(async (r) => {
        assert.deepEqual((await r.cmd('XINFO', 'GROUPS', keyA)).map((g) => fieldsOf(g).name), ['same']);
        assert.deepEqual((await r.cmd('XINFO', 'GROUPS', keyB)).map((g) => fieldsOf(g).name), ['same']);
      });
      const decide = (d) => (d.type.endsWith('.bad') ? 'fatal' : 'ack');
      workers.push(await new Worker({ key: keyA, group: 'same', name: 'wa', client: c, stream, decide }).start());
      workers.push(await new Worker({ key: keyB, group: 'same', name: 'wb', client: cb, stream, decide }).start());
      const evA = await publishN(c, `${t}.bad`, 2);
      const evB = await publishN(cb, `${t}.bad`, 1);
      const rowsA = await waitDeadLetters(c, {}, 2);
      const rowsB = await waitDeadLetters(cb, {}, 1);
      await h.sleep(500);
      assert.deepEqual((await allDeadLetters(c)).map((d) => d.event_id).sort(), evA.map((e) => e.id).sort(), 'A sees only its own');
      assert.deepEqual((await allDeadLetters(cb)).map((d) => d.event_id), [evB[0].id], 'B sees only its own');
      assert.deepEqual(workers[0].deliveries.map((d) => d.eventId).sort(), evA.map((e) => e.id).sort(), 'A\'s worker got only A\'s events');
      assert.deepEqual(workers[1].deliveries.map((d) => d.eventId), [evB[0].id]);
      assert.equal((await groupInfo(c, stream, 'same')).dead_letters, 2);
      assert.equal((await groupInfo(cb, stream, 'same')).dead_letters, 1);
      // B cannot reach A's rows by id
      const a0 = rowsA[0].id;
      h.assertProblem(await cb.get(dlPath(a0)), 404, 'not_found');
      h.assertProblem(await cb.post(dlPath(a0, '/reprocess'), {}), 404, 'not_found');
      h.assertProblem(await cb.post(dlPath(a0, '/discard'), {}), 404, 'not_found');
      assert.equal(h.assertStatus(await cb.post('/v1/dead-letters/reprocess', { ids: [a0], dry_run: true }), 200).count, 0);
      assert.equal(h.assertStatus(await cb.post('/v1/dead-letters/reprocess', { ids: [a0] }), 202).count, 0);
      h.assertProblem(await cb.post(`${groupsPath(stream)}/same/nack`, { event_id: evA[0].id, error: 'x' }), 404, 'not_found');
      // nor A B's
      h.assertProblem(await c.get(dlPath(rowsB[0].id)), 404, 'not_found');
      // B deleting its group leaves A's
      await workers[1].stop();
      workers[1].assertHealthy();
      assert.equal((await cb.del(`${groupsPath(stream)}/same`)).status, 204);
      assert.equal((await groupInfo(c, stream, 'same')).dead_letters, 2);
      await withRedis(async (r) => {
        assert.deepEqual((await r.cmd('XINFO', 'GROUPS', keyA)).map((g) => fieldsOf(g).name), ['same']);
        assert.deepEqual(await r.cmd('XINFO', 'GROUPS', keyB), []);
      });
      await h.sleep(300);
      for (const r of await allDeadLetters(c)) assert.equal(r.status, 'open', 'A\'s dead letters untouched');
      for (const w of workers) w.assertHealthy();
    } finally {
      for (const w of workers) await w.stop().catch(() => {});
      await s.stop().finally(() => s.cleanup());
      await deletePrefix(prefix);
    }
  });
});
