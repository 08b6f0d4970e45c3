'use strict';
// Issue 6: consumer groups and retries (API.md "Consumer groups and dead letters",
// server/groups.h). Groups are created, listed and deleted through the API; real workers
// consume the group's Redis stream with XREADGROUP … > (new messages) and XREADGROUP … 0
// (their redeliveries) and XACK, over ioredis. A delivery fails when nacked
// (POST …/nack) or not acknowledged within ack_timeout_ms; the sweeper redelivers it after
// base·2^(n-1) ms (capped, jittered d/2..d) to the most recently active worker, and after
// max_deliveries parks it as a dead letter (consumer sluice-dead), delivered no more.
// Leader failover in the middle of a sweep loses nothing and dead-letters nothing twice.
//
// Short policies keep the tests quick (base 100 ms, max 400 ms, ack timeout 300 ms); the only
// timing assertions are lower bounds the server must respect (a retry never comes before its
// backoff) and generous "no hang" bounds. Each sluice has its own SLUICE_REDIS_PREFIX.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

const WAIT_MS = 30000; // "no hang" bound for one expected state
const POLICY = { max_deliveries: 3, retry: { base_delay_ms: 100, max_delay_ms: 400, jitter: true }, ack_timeout_ms: 300 };
// For tests where every failure is a nack: no delivery times out on a slow machine.
const NACK_POLICY = { ...POLICY, ack_timeout_ms: 2000 };

const { Redis, redisUrl, withRedis, deletePrefix, posOf, fieldsOf, pendingEntries, waitInRedis, Worker, newPrefix, typeBase, keyOf, groupsPath, createGroup, listGroups, groupInfo, publishN, allDeadLetters, waitDeadLetters, startGroupsSluice, minBackoff } = require('./lib/groups_kit');
// ---------------------------------------------------------------- groups: the API

describe('consumer groups: create, list, delete', () => {
  let s;
  let c;
  let prefix;
  before(async () => { ({ s, c, prefix } = await startGroupsSluice('groups-api')); });
  after(async () => {
    if (s) await s.stop().finally(() => s.cleanup());
    await deletePrefix(prefix);
  });

  test('POST creates the Redis group (MKSTREAM) with its policy; GET lists policy, Redis fields and dead_letters; DELETE destroys it', async () => {
    const t = typeBase();
    const stream = `${t}.events`;
    const key = keyOf(prefix, stream);
    const body = await createGroup(c, stream, { name: 'billing', start: '$', ...POLICY });
    assert.equal(body.name, 'billing');
    assert.equal(body.stream, stream);
    assert.equal(body.redis_stream, key, 'the answer names the Redis stream workers read');
    assert.equal(body.start, '$');
    assert.equal(body.max_deliveries, 3);
    assert.deepEqual(body.retry, { strategy: 'exponential', ...POLICY.retry });
    assert.equal(body.ack_timeout_ms, 300);
    assert.equal(body.filter, null);
    // defaults
    const d = await createGroup(c, stream, { name: 'defaults' });
    assert.equal(d.start, '$');
    assert.equal(d.max_deliveries, 3);
    assert.deepEqual(d.retry, { strategy: 'exponential', base_delay_ms: 1000, max_delay_ms: 30000, jitter: true });
    assert.equal(d.ack_timeout_ms, 30000);

    await withRedis(async (r) => {
      assert.equal(await r.cmd('TYPE', key), 'stream', 'MKSTREAM made the stream before any event');
      const names = (await r.cmd('XINFO', 'GROUPS', key)).map((g) => fieldsOf(g).name).sort();
      assert.deepEqual(names, ['billing', 'defaults']);
    });

    const list = await listGroups(c, stream);
    assert.equal(list.stream, stream);
    assert.equal(list.redis_stream, key);
    assert.deepEqual(list.groups.map((g) => g.name), ['billing', 'defaults'], 'sorted by name');
    const g = list.groups[0];
    assert.equal(g.start, '$');
    assert.equal(g.max_deliveries, 3);
    assert.deepEqual(g.retry, { strategy: 'exponential', ...POLICY.retry });
    assert.equal(g.ack_timeout_ms, 300);
    assert.equal(g.dead_letters, 0);
    assert.equal(g.in_redis, true);
    for (const f of ['pending', 'consumers', 'last_delivered_id', 'entries_read', 'lag']) assert.ok(f in g, `group has ${f}: ${JSON.stringify(g)}`);
    assert.equal(g.pending, 0);
    assert.equal(g.consumers, 0);

    // Redis's view follows what a worker does
    const evs = await publishN(c, `${t}.x`, 5);
    await waitInRedis(key, evs[4].position);
    await withRedis(async (r) => {
      const rep = await r.cmd('XREADGROUP', 'GROUP', 'billing', 'w1', 'COUNT', 10, 'STREAMS', key, '>');
      assert.equal(rep[0][1].length, 5);
      await r.cmd('XACK', key, 'billing', rep[0][1][0][0], rep[0][1][1][0]);
    });
    const g2 = await groupInfo(c, stream, 'billing');
    assert.equal(g2.pending, 3, JSON.stringify(g2));
    assert.equal(g2.consumers, 1);
    assert.equal(g2.last_delivered_id, `${evs[4].position}-0`);
    assert.equal(g2.entries_read, 5);
    assert.equal(g2.lag, 0);
    const gd = await groupInfo(c, stream, 'defaults');
    assert.equal(gd.pending, 0);
    assert.equal(gd.lag, 5, 'the idle group lags by the 5 events');

    // DELETE → 204, the Redis group is gone, DELETE again → 404
    const del = await c.del(`${groupsPath(stream)}/defaults`);
    assert.equal(del.status, 204, h.describeRes(del));
    assert.deepEqual((await listGroups(c, stream)).groups.map((x) => x.name), ['billing']);
    await withRedis(async (r) => {
      const names = (await r.cmd('XINFO', 'GROUPS', key)).map((x) => fieldsOf(x).name);
      assert.deepEqual(names, ['billing']);
    });
    h.assertProblem(await c.del(`${groupsPath(stream)}/defaults`), 404, 'not_found');
    // and it can be created again
    await createGroup(c, stream, { name: 'defaults', start: '0' });
  });

  test('creating a group that exists in Redis → 409 conflict', async () => {
    const stream = `${typeBase()}.events`;
    await createGroup(c, stream, { name: 'dup', ...POLICY });
    h.assertProblem(await c.post(groupsPath(stream), { name: 'dup', ...POLICY }), 409, 'conflict');
    // the same name on another stream is another group
    await createGroup(c, `${typeBase()}.events`, { name: 'dup' });
  });

  test('start: "$" = new events only, "0" = the whole stream, <position> = after that position', async () => {
    const t = typeBase();
    const stream = `${t}.events`;
    const key = keyOf(prefix, stream);
    const old = await publishN(c, `${t}.old`, 6);
    await waitInRedis(key, old[5].position);
    await createGroup(c, stream, { name: 'from-now', start: '$' });
    await createGroup(c, stream, { name: 'from-zero', start: '0' });
    await createGroup(c, stream, { name: 'from-pos', start: String(old[2].position) });
    await createGroup(c, stream, { name: 'from-int', start: old[3].position });
    const fresh = await publishN(c, `${t}.new`, 2);
    await waitInRedis(key, fresh[1].position);
    const want = {
      'from-now': fresh,
      'from-zero': [...old, ...fresh],
      'from-pos': [...old.slice(3), ...fresh],
      'from-int': [...old.slice(4), ...fresh],
    };
    await withRedis(async (r) => {
      for (const [g, evs] of Object.entries(want)) {
        const rep = await r.cmd('XREADGROUP', 'GROUP', g, 'w', 'COUNT', 100, 'STREAMS', key, '>');
        const got = rep ? rep[0][1].map(([id, kv]) => ({ position: posOf(id), id: fieldsOf(kv).id })) : [];
        assert.deepEqual(got, evs.map((e) => ({ position: e.position, id: e.id })), `group ${g}`);
      }
    });
    const listed = Object.fromEntries((await listGroups(c, stream)).groups.map((g) => [g.name, g.start]));
    assert.equal(listed['from-now'], '$');
    assert.equal(listed['from-zero'], '0');
    assert.equal(listed['from-pos'], String(old[2].position));
  });

  test('GET /metrics shows each group: pending, lag, retrying, dead and consumers, labelled tenant/stream/group', async () => {
    const t = typeBase();
    const stream = `${t}.events`;
    const key = keyOf(prefix, stream);
    // a long backoff and ack timeout: nothing moves by itself while the test looks
    await createGroup(c, stream, { name: 'gauges', start: '$', max_deliveries: 3, retry: { base_delay_ms: 60000, max_delay_ms: 60000, jitter: false }, ack_timeout_ms: 600000 });
    const evs = await publishN(c, `${t}.x`, 6);
    await waitInRedis(key, evs[5].position);
    await withRedis(async (r) => {
      const rep = await r.cmd('XREADGROUP', 'GROUP', 'gauges', 'w1', 'COUNT', 4, 'STREAMS', key, '>');
      assert.equal(rep[0][1].length, 4);
    });
    h.assertStatus(await c.post(`${groupsPath(stream)}/gauges/nack`, { event_id: evs[0].id, error: 'poison', retryable: false }), 200);
    h.assertStatus(await c.post(`${groupsPath(stream)}/gauges/nack`, { event_id: evs[1].id, error: 'flaky' }), 200);
    const res = await c.get('/metrics');
    assert.equal(res.status, 200);
    const text = res.text;
    const gauge = (name) => {
      const re = new RegExp(`^${name}\\{tenant="default",stream="${stream.replace(/\./g, '\\.')}",group="gauges"\\} (\\d+)$`, 'm');
      const m = re.exec(text);
      assert.ok(m, `${name} for the group in:\n${text.split('\n').filter((l) => l.startsWith('sluice_group_')).join('\n')}`);
      return Number(m[1]);
    };
    assert.equal(gauge('sluice_group_pending'), 4, 'delivered, not acknowledged (two of them parked by Sluice)');
    assert.equal(gauge('sluice_group_lag'), 2, 'not delivered yet');
    assert.equal(gauge('sluice_group_retrying'), 1);
    assert.equal(gauge('sluice_group_dead'), 1);
    assert.equal(gauge('sluice_group_consumers'), 1, 'the worker; sluice-retry and sluice-dead are not counted');
    for (const name of ['sluice_group_pending', 'sluice_group_lag', 'sluice_group_retrying', 'sluice_group_dead', 'sluice_group_consumers']) {
      assert.match(text, new RegExp(`^# TYPE ${name} gauge$`, 'm'));
    }
  });

  test('invalid requests → 400; nack errors: unknown event 404, not pending 409, bad body 400', async () => {
    const t = typeBase();
    const stream = `${t}.events`;
    const bad = [
      {},
      { name: '' },
      { name: 'sluice-retry' },
      { name: 'sluice-mine' },
      { name: 'has space' },
      { name: 'x'.repeat(65) },
      { name: 'ok', start: 'yesterday' },
      { name: 'ok', start: -1 },
      { name: 'ok', max_deliveries: 0 },
      { name: 'ok', max_deliveries: '3' },
      { name: 'ok', ack_timeout_ms: 0 },
      { name: 'ok', retry: { base_delay_ms: -1 } },
      { name: 'ok', retry: { backoff: 'linear' } },
      { name: 'ok', retry: 5 },
      { name: 'ok', extra: true },
      [],
    ];
    for (const b of bad) h.assertProblem(await c.post(groupsPath(stream), b), 400, 'invalid_request');
    assert.deepEqual((await listGroups(c, stream)).groups, [], 'nothing was created');
    assert.equal((await c.request('POST', groupsPath(stream), { body: '{"name":', headers: { 'Content-Type': 'application/json' } })).status, 400);

    await createGroup(c, stream, { name: 'n', start: '0', ...POLICY });
    const nack = (b) => c.post(`${groupsPath(stream)}/n/nack`, b);
    h.assertProblem(await nack({ event_id: '01ARZ3NDEKTSV4RRFFQ69G5FAV', error: 'x' }), 404, 'not_found');
    h.assertProblem(await nack({ error: 'no id' }), 400, 'invalid_request');
    h.assertProblem(await nack({ event_id: 'x', retryable: 'no' }), 400, 'invalid_request');
    h.assertProblem(await nack({ event_id: 'x', extra: 1 }), 400, 'invalid_request');
    const [ev] = await publishN(c, `${t}.x`, 1);
    await waitInRedis(keyOf(prefix, stream), ev.position);
    // delivered to nobody yet → not pending
    h.assertProblem(await nack({ event_id: ev.id, error: 'x' }), 409, 'conflict');
    await withRedis(async (r) => {
      const key = keyOf(prefix, stream);
      await r.cmd('XREADGROUP', 'GROUP', 'n', 'w', 'COUNT', 10, 'STREAMS', key, '>');
      await r.cmd('XACK', key, 'n', `${ev.position}-0`);
    });
    // acknowledged → not pending
    h.assertProblem(await nack({ event_id: ev.id, error: 'x' }), 409, 'conflict');
  });

  test('the groups and nack endpoints need the admin scope', async () => {
    const stream = `${typeBase()}.events`;
    const k = await h.createKey(s, 'default', ['publish', 'read', 'subscribe']);
    const u = s.client(k.token);
    for (const res of [
      await u.get(groupsPath(stream)),
      await u.post(groupsPath(stream), { name: 'g' }),
      await u.del(`${groupsPath(stream)}/g`),
      await u.post(`${groupsPath(stream)}/g/nack`, { event_id: 'x' }),
    ]) assert.equal(res.status, 403, h.describeRes(res));
    assert.equal((await c.get(groupsPath(stream), { token: null })).status, 401);
  });
});

// ---------------------------------------------------------------- retries and dead letters

describe('retries: a real worker that fails', () => {
  let s;
  let c;
  let prefix;
  const workers = [];
  before(async () => { ({ s, c, prefix } = await startGroupsSluice('groups-retry')); });
  after(async () => {
    for (const w of workers) await w.stop().catch(() => {});
    if (s) await s.stop().finally(() => s.cleanup());
    await deletePrefix(prefix);
  });

  async function setup(policy, decide, { workerName = 'w1', start = '$' } = {}) {
    const t = typeBase();
    const stream = `${t}.events`;
    const key = keyOf(prefix, stream);
    const group = 'g' + h.rand(2);
    await createGroup(c, stream, { name: group, start, ...policy });
    const w = await new Worker({ key, group, name: workerName, client: c, stream, decide }).start();
    workers.push(w);
    return { t, stream, key, group, w };
  }

  test('nacked deliveries come back after a growing backoff, then dead-letter after max_deliveries and are delivered no more', { timeout: 120000 }, async () => {
    const policy = { max_deliveries: 4, retry: { base_delay_ms: 100, max_delay_ms: 400, jitter: false }, ack_timeout_ms: 2000 };
    const { t, stream, key, group, w } = await setup(policy, () => 'nack');
    const [ev] = await publishN(c, `${t}.fails`, 1);
    const rows = await waitDeadLetters(c, { stream, group }, 1);
    const mine = w.of(ev.position);
    assert.deepEqual(mine.map((d) => d.n), [1, 2, 3, 4], 'delivered exactly max_deliveries times');
    assert.equal(mine[0].via, '>', 'the first delivery is a new message');
    for (const d of mine.slice(1)) assert.equal(d.via, '0', 'retries arrive on XREADGROUP … 0');
    for (const d of mine) assert.equal(d.eventId, ev.id, 'the same event every time');
    // nack answers: retry_scheduled, …, dead_lettered
    assert.deepEqual(w.nacks.map((x) => x.body.status), ['retry_scheduled', 'retry_scheduled', 'retry_scheduled', 'dead_lettered']);
    assert.deepEqual(w.nacks.map((x) => x.body.delivery_count), [1, 2, 3, 4]);
    // growing delays: never before the backoff of the delivery (100, 200, 400 ms, no jitter)
    const gaps = [];
    for (let i = 1; i < mine.length; i++) {
      const gap = mine[i].at - mine[i - 1].nackedAt;
      gaps.push(gap);
      assert.ok(gap >= minBackoff(policy, i) - 30, `retry ${i} came ${gap} ms after the nack; backoff ${minBackoff(policy, i)} ms (gaps ${gaps})`);
    }
    const [dl] = rows;
    assert.equal(dl.event_id, ev.id);
    assert.equal(dl.event_position, ev.position);
    assert.equal(dl.group, group);
    assert.equal(dl.stream, stream);
    assert.equal(dl.source, `group:${group}`);
    assert.equal(dl.consumer, 'w1');
    assert.equal(dl.type, `${t}.fails`);
    assert.equal(dl.delivery_count, 4);
    assert.equal(dl.status, 'open');
    assert.deepEqual(dl.errors.map((e) => e.delivery), [1, 2, 3, 4]);
    assert.deepEqual(dl.errors.map((e) => e.error), [1, 2, 3, 4].map((n) => `w1 failed delivery ${n}`));
    for (const e of dl.errors) { assert.equal(e.consumer, 'w1'); assert.ok(typeof e.time === 'string' && e.time.length > 0); }
    // parked under sluice-dead, delivered no more
    await h.sleep(1500);
    assert.equal(w.of(ev.position).length, 4, 'no delivery after dead-lettering');
    await withRedis(async (r) => {
      const p = await pendingEntries(r, key, group);
      assert.deepEqual(p.map((x) => [x.position, x.consumer]), [[ev.position, 'sluice-dead']]);
    });
    h.assertProblem(await c.post(`${groupsPath(stream)}/${group}/nack`, { event_id: ev.id, error: 'again' }), 409, 'conflict');
    const g = await groupInfo(c, stream, group);
    assert.equal(g.dead_letters, 1);
    w.assertHealthy();
  });

  test('max_delay_ms caps the backoff (8 deliveries dead-letter in seconds, not the 12.7 s of uncapped doubling)', { timeout: 120000 }, async () => {
    const policy = { max_deliveries: 8, retry: { base_delay_ms: 100, max_delay_ms: 200, jitter: true }, ack_timeout_ms: 2000 };
    const { t, stream, group, w } = await setup(policy, () => 'nack');
    const [ev] = await publishN(c, `${t}.fails`, 1);
    await waitInRedis(keyOf(prefix, stream), ev.position);
    const t0 = Date.now();
    await waitDeadLetters(c, { stream, group }, 1, 9000);
    assert.ok(Date.now() - t0 < 9000);
    const mine = w.of(ev.position);
    assert.equal(mine.length, 8);
    for (let i = 1; i < mine.length; i++) {
      const gap = mine[i].at - mine[i - 1].nackedAt;
      assert.ok(gap >= minBackoff(policy, i) - 30, `retry ${i} after ${gap} ms, at least ${minBackoff(policy, i)} (equal jitter)`);
    }
    w.assertHealthy();
  });

  test('deliveries not acknowledged within ack_timeout_ms are retried, then dead-lettered with the timeout as the error', { timeout: 120000 }, async () => {
    const { t, stream, key, group, w } = await setup(POLICY, () => 'ignore');
    const [ev] = await publishN(c, `${t}.slow`, 1);
    const [dl] = await waitDeadLetters(c, { stream, group }, 1);
    const mine = w.of(ev.position);
    assert.deepEqual(mine.map((d) => d.n), [1, 2, 3]);
    for (let i = 1; i < mine.length; i++) {
      const gap = mine[i].at - mine[i - 1].at;
      assert.ok(gap >= POLICY.ack_timeout_ms + minBackoff(POLICY, i) - 30, `delivery ${i + 1} came ${gap} ms after delivery ${i}: ack timeout + backoff first`);
    }
    assert.equal(dl.delivery_count, 3);
    assert.equal(dl.consumer, 'w1');
    assert.ok(dl.errors.length >= 3, JSON.stringify(dl.errors));
    assert.deepEqual([...new Set(dl.errors.map((e) => e.delivery))], [1, 2, 3]);
    for (const e of dl.errors) assert.match(e.error, /ack_timeout_ms/);
    await h.sleep(1500);
    assert.equal(w.of(ev.position).length, 3, 'no delivery after dead-lettering');
    await withRedis(async (r) => {
      assert.deepEqual((await pendingEntries(r, key, group)).map((x) => x.consumer), ['sluice-dead']);
    });
    w.assertHealthy();
  });

  test('a nack with retryable:false dead-letters at once', { timeout: 60000 }, async () => {
    const { t, stream, key, group, w } = await setup(NACK_POLICY, () => 'fatal');
    const [ev] = await publishN(c, `${t}.poison`, 1);
    const [dl] = await waitDeadLetters(c, { stream, group }, 1);
    assert.equal(w.nacks.length, 1);
    assert.equal(w.nacks[0].body.status, 'dead_lettered');
    assert.equal(w.nacks[0].body.delivery_count, 1);
    assert.equal(w.nacks[0].body.event_id, ev.id);
    assert.equal(dl.delivery_count, 1);
    assert.equal(dl.event_id, ev.id);
    assert.deepEqual(dl.errors.map((e) => [e.delivery, e.consumer, e.error]), [[1, 'w1', 'w1 failed delivery 1']]);
    await h.sleep(1000);
    assert.equal(w.of(ev.position).length, 1, 'never redelivered');
    await withRedis(async (r) => {
      assert.deepEqual((await pendingEntries(r, key, group)).map((x) => x.consumer), ['sluice-dead']);
    });
    w.assertHealthy();
  });

  test('a mixed batch: acknowledged events are done, failing ones (nack or timeout) and only they become dead letters', { timeout: 120000 }, async () => {
    // i % 5: 0 → nack always, 1 → ignore always, 2 → fail twice then succeed, else ack
    const fate = new Map();
    const { t, stream, key, group, w } = await setup(POLICY, (d, n) => {
      const i = fate.get(d.eventId);
      if (i % 5 === 0) return 'nack';
      if (i % 5 === 1) return 'ignore';
      if (i % 5 === 2) return n <= 2 ? (n === 1 ? 'nack' : 'ignore') : 'ack';
      return 'ack';
    });
    const evs = await publishN(c, `${t}.mixed`, 30);
    evs.forEach((e, i) => fate.set(e.id, i));
    const failing = evs.filter((_, i) => i % 5 < 2);
    const rows = await waitDeadLetters(c, { stream, group }, failing.length, 60000);
    await h.waitFor(() => evs.filter((_, i) => i % 5 === 2).every((e) => w.of(e.position).length === 3), { timeout: WAIT_MS, what: 'the flaky events to succeed on their third delivery' });
    await h.sleep(1000);
    assert.deepEqual(rows.map((r) => r.event_id).sort(), failing.map((e) => e.id).sort(), 'exactly the failing events are dead letters');
    // Redis counts every read; a worker reading its PEL by id can (rarely) get one more than
    // it asked for, so the rule is: dead after at least max_deliveries, and the row's count is
    // exactly the number of deliveries the worker saw.
    const byPos = new Map(rows.map((r) => [r.event_position, r]));
    evs.forEach((e, i) => {
      const n = w.of(e.position).length;
      const what = `event ${i} (${['nack', 'ignore', 'flaky', 'ack', 'ack'][i % 5]}) delivered ${n} times`;
      if (i % 5 < 2) {
        assert.ok(n >= 3, what);
        assert.equal(byPos.get(e.position).delivery_count, n, `${what}: the dead letter's delivery_count`);
      } else if (i % 5 === 2) {
        assert.ok(n >= 3, what);
      } else {
        assert.equal(n, 1, what);
      }
    });
    assert.ok(rows.some((r) => r.delivery_count === 3));
    await withRedis(async (r) => {
      const p = await pendingEntries(r, key, group);
      assert.deepEqual(p.map((x) => x.position).sort((a, b) => a - b), failing.map((e) => e.position), 'only the dead letters are still pending');
      for (const x of p) assert.equal(x.consumer, 'sluice-dead');
    });
    const g = await groupInfo(c, stream, group);
    assert.equal(g.dead_letters, failing.length);
    assert.equal(g.pending, failing.length, 'the dead letters stay in the PEL (under sluice-dead)');
    w.assertHealthy();
  });

  test('a worker that dies: its unacknowledged messages are redelivered to the live worker', { timeout: 120000 }, async () => {
    const t = typeBase();
    const stream = `${t}.events`;
    const key = keyOf(prefix, stream);
    const group = 'crash';
    await createGroup(c, stream, { name: group, ...POLICY });
    const evs = await publishN(c, `${t}.x`, 5);
    await waitInRedis(key, evs[4].position);
    // the doomed worker takes everything and is never heard from again
    await withRedis(async (r) => {
      const rep = await r.cmd('XREADGROUP', 'GROUP', group, 'doomed', 'COUNT', 100, 'STREAMS', key, '>');
      assert.equal(rep[0][1].length, 5);
    });
    const live = await new Worker({ key, group, name: 'live', client: c, stream, decide: () => 'ack' }).start();
    workers.push(live);
    await h.waitFor(() => evs.every((e) => live.of(e.position).length === 1), { timeout: WAIT_MS, what: 'the live worker to receive the dead worker\'s messages' });
    for (const e of evs) assert.equal(live.of(e.position)[0].via, '0', 'as redeliveries');
    await h.waitFor(() => withRedis(async (r) => (await pendingEntries(r, key, group)).length === 0), { timeout: WAIT_MS, what: 'the PEL to empty' });
    assert.deepEqual(await allDeadLetters(c, { stream, group }), []);
    live.assertHealthy();
  });
});

// ---------------------------------------------------------------- races with the sweeper

describe('the sweeper against a concurrent nack', () => {
  // The sweeper lists the timed-out entries (XPENDING … IDLE) and then works through the list,
  // a PostgreSQL write per entry; an entry a nack dead-letters meanwhile must stay dead.
  test('an entry dead-lettered by a nack while the sweeper is timing out a large batch stays dead (the sweeper must not act on its stale list)', { timeout: 120000 }, async (tc) => {
    const { s, c, prefix } = await startGroupsSluice('groups-race');
    try {
      const t = typeBase();
      const stream = `${t}.events`;
      const key = keyOf(prefix, stream);
      await createGroup(c, stream, { name: 'race', ...POLICY });
      const evs = await publishN(c, `${t}.x`, 300);
      await waitInRedis(key, evs[299].position);
      const last = evs[299];
      let nack;
      await withRedis(async (r) => {
        const rep = await r.cmd('XREADGROUP', 'GROUP', 'race', 'w', 'COUNT', 300, 'STREAMS', key, '>');
        assert.equal(rep[0][1].length, 300);
        // the sweeper has started on the batch once the first entry is parked for a retry
        await h.waitFor(async () => (await r.cmd('XPENDING', key, 'race', '-', '+', 1, 'sluice-retry')).length > 0,
          { timeout: WAIT_MS, interval: 5, what: 'the sweeper to start parking timed-out entries' });
        nack = await c.post(`${groupsPath(stream)}/race/nack`, { event_id: last.id, error: 'poison', retryable: false });
      });
      if (nack.status === 409) {
        // the sweeper got to it first: the race was not set up this time, nothing to check
        tc.skip(`the sweeper reached the entry before the nack: ${nack.text}`);
        return;
      }
      assert.equal(h.assertStatus(nack, 200).status, 'dead_lettered');
      await h.sleep(3000); // the batch is done, backoffs have passed, retries were handed out
      await withRedis(async (r) => {
        const [p] = await r.cmd('XPENDING', key, 'race', `${last.position}-0`, `${last.position}-0`, 1);
        assert.ok(p, 'still pending');
        assert.equal(p[1], 'sluice-dead', `the dead-lettered entry is parked under sluice-dead, not with ${p[1]} (delivery count ${p[3]})`);
      });
      const [dl] = await allDeadLetters(c, { stream });
      assert.equal(dl.event_id, last.id);
      const one = h.assertStatus(await c.get(`/v1/dead-letters/${dl.id}`), 200);
      assert.deepEqual(one.history.map((x) => x.status), ['open'], 'dead-lettered once');
      assert.deepEqual(one.errors.map((e) => e.error), ['poison'], `no failure recorded after the nack: ${JSON.stringify(one.errors)}`);
    } finally {
      await s.stop().finally(() => s.cleanup());
      await deletePrefix(prefix);
    }
  });
});

// ---------------------------------------------------------------- failover

describe('leader failover in the middle of a sweep', () => {
  // dead_letter() parks the entry under sluice-dead (XCLAIM) and then writes the row: a leader
  // killed between the two, or a PostgreSQL error on the INSERT, leaves this exact state.
  test('an entry parked under sluice-dead without its dead-letter row (the leader died between the two steps) is not lost', { timeout: 60000 }, async () => {
    const { s, c, prefix } = await startGroupsSluice('groups-halfdead');
    try {
      const t = typeBase();
      const stream = `${t}.events`;
      const key = keyOf(prefix, stream);
      await createGroup(c, stream, { name: 'half', ...POLICY });
      const [ev] = await publishN(c, `${t}.x`, 1);
      await waitInRedis(key, ev.position);
      const id = `${ev.position}-0`;
      await withRedis(async (r) => {
        for (let n = 0; n < 3; n++) await r.cmd('XREADGROUP', 'GROUP', 'half', 'w', 'COUNT', 1, 'STREAMS', key, n === 0 ? '>' : '0');
        assert.deepEqual(await r.cmd('XCLAIM', key, 'half', 'sluice-dead', 0, id, 'JUSTID'), [id]);
      });
      const outcome = await h.race(h.waitFor(async () => {
        if ((await allDeadLetters(c, { stream })).length) return 'dead letter';
        return withRedis(async (r) => {
          const p = await pendingEntries(r, key, 'half');
          return p.length && p[0].consumer !== 'sluice-dead' ? `pending with ${p[0].consumer}` : false;
        });
      }, { timeout: 10000, interval: 200, what: 'x' }).catch(() => null), 11000, null);
      assert.ok(outcome, `after 10 s the entry is still parked under sluice-dead with no dead-letter row: invisible to GET /v1/dead-letters, never reprocessable (group: ${JSON.stringify(await groupInfo(c, stream, 'half'))})`);
    } finally {
      await s.stop().finally(() => s.cleanup());
      await deletePrefix(prefix);
    }
  });

  test('kill -9 of the sweeper leader: the other instance takes over; every failing event is dead-lettered exactly once, nothing lost', { timeout: 300000 }, async () => {
    const prefix = newPrefix();
    const env = { SLUICE_REDIS_URL: redisUrl(), SLUICE_REDIS_PREFIX: prefix };
    const s1 = await h.startSluice({ name: 'groups-leader', env });
    let s2;
    const workers = [];
    try {
      await h.waitFor(() => s1.logs.some((l) => /consumer-group sweeper/.test(l)), { timeout: WAIT_MS, what: 'the first instance to take the sweeper lock' });
      s2 = await h.startSluice({ name: 'groups-follower', dbUrl: s1.dbUrl, adminToken: s1.adminToken, env });
      const c2 = s2.client(s1.adminToken);
      await h.sleep(500);
      assert.ok(!s2.logs.some((l) => /consumer-group sweeper/.test(l)), 'one sweeper at a time');

      const t = typeBase();
      const stream = `${t}.events`;
      const key = keyOf(prefix, stream);
      const group = 'fo';
      await createGroup(c2, stream, { name: group, start: '0', ...POLICY });
      const t0 = Date.now();
      const N = 90;
      const evs = await publishN(c2, `${t}.x`, N);
      const idx = new Map(evs.map((e, i) => [e.id, i]));
      await waitInRedis(key, evs[N - 1].position);
      // i % 3: 0 → nack (through the survivor), 1 → ignore (ack timeout), 2 → ack
      const decide = (d) => ['nack', 'ignore', 'ack'][idx.get(d.eventId) % 3];
      for (const name of ['wa', 'wb']) {
        workers.push(await new Worker({ key, group, name, client: c2, stream, decide, interval: 20 }).start());
      }
      const failing = evs.filter((_, i) => i % 3 !== 2);
      const count = () => Number(h.psql(s1.dbUrl, "SELECT count(*) FROM dead_letters WHERE source = 'group'"));
      // mid-sweep: some failing events are already dead letters, others are still retrying
      await h.waitFor(() => count() >= 3, { timeout: WAIT_MS, interval: 20, what: 'the first dead letters' });
      const before = count();
      const killedAt = Date.now();
      await s1.kill9();
      assert.ok(before < failing.length, `killed mid-sweep (${before} of ${failing.length} dead-lettered)`);
      await h.waitFor(() => s2.logs.some((l) => /consumer-group sweeper/.test(l)), { timeout: WAIT_MS, what: 'the survivor to take over the sweeper' });

      const rows = await waitDeadLetters(c2, { stream, group }, failing.length, 120000);
      await h.sleep(1500); // anything left to dead-letter twice would have shown by now
      const again = await allDeadLetters(c2, { stream, group, status: 'open' });
      assert.equal(again.length, failing.length, 'no extra dead letters after settling');
      assert.deepEqual(rows.map((r) => r.event_id).sort(), failing.map((e) => e.id).sort(), 'every failing event, and only those');
      const db = h.psql(s1.dbUrl, `SELECT event_position, count(*), min(delivery_count), max(delivery_count), max(jsonb_array_length(history)) FROM dead_letters WHERE source = 'group' GROUP BY event_position ORDER BY event_position`).split('\n').filter(Boolean).map((l) => l.split('|').map(Number));
      assert.equal(db.length, failing.length);
      const explain = (pos) => JSON.stringify({
        row: h.psql(s1.dbUrl, `SELECT delivery_count, consumer, errors::text, history::text FROM dead_letters WHERE event_position = ${pos}`),
        deliveries: workers.map((w) => w.deliveries.filter((d) => d.position === pos).map((d) => ({ w: w.name, n: d.n, via: d.via, at: d.at - t0 }))),
        nacks: workers.map((w) => w.nacks.filter((x) => posOf(x.id) === pos).map((x) => ({ w: w.name, n: x.n, status: x.status, body: x.body }))),
        killedAt: killedAt - t0,
      });
      // Every delivery counts, including a hand-back a busy worker did not read within
      // ack_timeout_ms, so a dead letter's delivery_count is exactly max_deliveries and never
      // less than the deliveries the workers saw; a second dead-lettering would add up (and
      // append a second "open" to the history).
      const seen = new Map();
      for (const w of workers) for (const d of w.deliveries) seen.set(d.position, (seen.get(d.position) || 0) + 1);
      for (const [pos, n, dmin, dmax, hlen] of db) {
        const ok = n === 1 && hlen === 1 && dmin === dmax && dmin === POLICY.max_deliveries && (seen.get(pos) || 0) <= dmin;
        if (!ok) console.error('failover: ' + explain(pos));
        assert.equal(n, 1, `position ${pos}: one row`);
        assert.equal(hlen, 1, `position ${pos}: dead-lettered once (one "open" in its history): ${explain(pos)}`);
        assert.equal(dmin, POLICY.max_deliveries, `position ${pos}: delivery_count = max_deliveries: ${explain(pos)}`);
        assert.ok((seen.get(pos) || 0) <= dmin, `position ${pos}: the workers saw no more deliveries than were counted: ${explain(pos)}`);
      }
      evs.forEach((e, i) => { if (i % 3 === 2) assert.equal(seen.get(e.position), 1, `acknowledged event ${i}: delivered once`); });
      await withRedis(async (r) => {
        const p = await pendingEntries(r, key, group);
        assert.equal(p.length, failing.length);
        for (const x of p) assert.equal(x.consumer, 'sluice-dead', `entry ${x.id} parked as dead`);
      });
      // a nack that comes after the sweeper timed the delivery out answers 409: allowed here
      for (const w of workers) w.assertHealthy({ lateNacks: true });
    } finally {
      for (const w of workers) await w.stop().catch(() => {});
      if (s2) await s2.stop().finally(() => s2.cleanup());
      await s1.cleanup();
      await deletePrefix(prefix);
    }
  });
});
