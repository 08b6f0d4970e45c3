'use strict';
// Issue 15: the workers Sluice must survive, each against the real binary and a real Redis
// (API.md "Consumer groups and dead letters"):
//   - seed 001's worker: reads only new messages (XREADGROUP … >) and fails a message by not
//     acknowledging it (`return false; // Don't ack, will retry`), never reading its pending
//     list: its message is still dead-lettered after max_deliveries, and then is pending
//     with it no more;
//   - a worker that re-reads its pending list (XREADGROUP … 0) forever without acknowledging:
//     dead-lettered once read more than max_deliveries times; nothing circles forever;
//   - Redis restarted empty in the middle of a consumer-API worker's run (a redis-server of
//     this test's own): the group comes back at its acknowledged floor and every message not
//     acknowledged before the restart is delivered;
//   - Redis frozen (SIGSTOP) while consumer-API workers fetch and ack: fetches and acks are
//     answered on the HTTP threads while Redis answers at once, so a hung Redis must not hold
//     those threads: /health keeps answering, calls end in 200 or 503, and after SIGCONT every
//     event is delivered and acknowledged;
//   - the sweeper leader killed (SIGKILL) while it dead-letters a batch: the other instance
//     takes over and every message is dead-lettered exactly once.
// Short policies keep the tests quick; there are no timed assertions, only generous bounds
// for "no hang". Each sluice has its own SLUICE_REDIS_PREFIX.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const { PrivateRedis } = require('./lib/private_redis');
const { Redis, redisUrl, withRedis, deletePrefix, posOf, fieldsOf, pendingEntries, waitInRedis, newPrefix, typeBase, keyOf, groupsPath, createGroup, groupInfo, publishN, allDeadLetters, waitDeadLetters, startGroupsSluice } = require('./lib/groups_kit');

const WAIT_MS = 60000; // "no hang" bound for one expected state
const SWEEPER_LINE = /this instance runs the consumer-group sweeper/;

// ---------------------------------------------------------------- workers

// Seed 001's EventBus.subscribe(stream, type, handler, {consumerGroup, consumerName,
// batchSize}): it reads new messages only (XREADGROUP … COUNT batchSize BLOCK 100 … >), hands
// each event to the handler and acknowledges (XACK) when the handler returns true; `return
// false; // Don't ack, will retry` leaves the message pending. It never reads its pending
// list, so a message Sluice hands back for a retry is never seen again by it.
class SeedWorker {
  constructor({ key, group, name, handler, batchSize = 10, url = redisUrl() }) {
    Object.assign(this, { key, group, name, handler, batchSize, url });
    this.deliveries = []; // {id, position, eventId, type, acked}
    this.errors = [];
    this.stopped = false;
  }

  async start() {
    this.r = await Redis.connect(this.url);
    this.loop = (async () => {
      while (!this.stopped) {
        try {
          const rep = await this.r.xreadgroup('GROUP', this.group, this.name, 'COUNT', this.batchSize,
            'BLOCK', 100, 'STREAMS', this.key, '>');
          for (const [, entries] of rep || []) {
            for (const [id, kv] of entries) {
              const f = fieldsOf(kv);
              const d = { id, position: posOf(id), eventId: f.id, type: f.type, acked: false };
              this.deliveries.push(d);
              if (await this.handler(JSON.parse(f.event))) {
                await this.r.xack(this.key, this.group, id);
                d.acked = true;
              }
            }
          }
        } catch (e) {
          if (!this.stopped) { this.errors.push(e); await h.sleep(50); }
        }
      }
    })();
    return this;
  }

  async stop() {
    this.stopped = true;
    if (this.loop) await this.loop;
    if (this.r) this.r.close();
  }

  of(position) { return this.deliveries.filter((d) => d.position === position); }
}

// A worker that never acknowledges and re-reads its own pending list: every 50 ms one round
// of XREADGROUP … > (new messages) and XREADGROUP … 0 (everything pending with it). Each
// delivery records when the round that read it started.
class PelRereader {
  constructor({ key, group, name, url = redisUrl() }) {
    Object.assign(this, { key, group, name, url });
    this.deliveries = []; // {id, position, via, started}
    this.rounds = [];     // start time of every round completed
    this.errors = [];
    this.stopped = false;
  }

  async start() {
    this.r = await Redis.connect(this.url);
    this.loop = (async () => {
      while (!this.stopped) {
        const started = Date.now();
        try {
          for (const via of ['>', '0']) {
            const rep = await this.r.xreadgroup('GROUP', this.group, this.name, 'COUNT', 100,
              'STREAMS', this.key, via);
            for (const [, entries] of rep || []) {
              for (const [id] of entries) this.deliveries.push({ id, position: posOf(id), via, started });
            }
          }
          this.rounds.push(started);
        } catch (e) {
          if (!this.stopped) this.errors.push(e);
        }
        await h.sleep(50);
      }
    })();
    return this;
  }

  async stop() {
    this.stopped = true;
    if (this.loop) await this.loop;
    if (this.r) this.r.close();
  }

  roundsSince(t) { return this.rounds.filter((s) => s > t).length; }

  of(position) { return this.deliveries.filter((d) => d.position === position); }
}

// Waits until the stream `key` of the Redis at `url` has an entry at `position` or later.
async function waitStream(url, key, position) {
  const r = await Redis.connect(url);
  try {
    await h.waitFor(async () => {
      const top = await r.xrevrange(key, '+', '-', 'COUNT', 1);
      return top.length > 0 && posOf(top[0][0]) >= position;
    }, { timeout: WAIT_MS, interval: 50, what: `${key} to reach position ${position}` });
  } finally {
    r.close();
  }
}

// Per-consumer pending counts of a group (XPENDING summary form).
async function pendingByConsumer(r, key, group) {
  const [, , , consumers] = await r.xpending(key, group);
  return Object.fromEntries((consumers || []).map(([name, n]) => [name, Number(n)]));
}

// ---------------------------------------------------------------- Redis workers

describe('Redis workers that never acknowledge', () => {
  let s;
  let c;
  let prefix;
  const workers = [];
  before(async () => { ({ s, c, prefix } = await startGroupsSluice('workers')); });
  after(async () => {
    for (const w of workers) await w.stop().catch(() => {});
    if (s) await s.stop().finally(() => s.cleanup());
    await deletePrefix(prefix);
  });

  test('seed 001\'s worker (reads only `>`, fails by not acknowledging): its event becomes a dead letter after max_deliveries and is never pending with it again', { timeout: 180000 }, async () => {
    const t = typeBase();
    const stream = `${t}.events`;
    const key = keyOf(prefix, stream);
    const group = 'seed-' + h.rand(2);
    const policy = { max_deliveries: 2, ack_timeout_ms: 500, retry: { strategy: 'fixed', base_delay_ms: 100, jitter: false } };
    await createGroup(c, stream, { name: group, ...policy });
    assert.equal((await groupInfo(c, stream, group)).retry.strategy, 'fixed');
    // its handler fails <t>.fails events (returns false) and handles the others
    const w = await new SeedWorker({ key, group, name: 'worker-1', handler: (ev) => ev.type !== `${t}.fails` }).start();
    workers.push(w);
    const [bad] = await publishN(c, `${t}.fails`, 1);
    const [good] = await publishN(c, `${t}.ok`, 1);

    const [dl] = await waitDeadLetters(c, { stream, group }, 1, WAIT_MS);
    assert.equal(dl.event_id, bad.id);
    assert.equal(dl.event_position, bad.position);
    assert.equal(dl.source, `group:${group}`);
    assert.equal(dl.stream, stream);
    assert.equal(dl.group, group);
    assert.equal(dl.consumer, 'worker-1');
    assert.equal(dl.status, 'open');
    assert.equal(dl.delivery_count, 2, `delivered (read, then handed back) max_deliveries times: ${JSON.stringify(dl)}`);
    assert.deepEqual(dl.errors.map((e) => e.delivery), [1, 2], `one failure per delivery: ${JSON.stringify(dl.errors)}`);
    for (const e of dl.errors) assert.match(e.error, /not acknowledged/);

    // Two more rounds of (ack timeout + backoff): time enough for anything still circling to show.
    await h.sleep(2 * (policy.ack_timeout_ms + policy.retry.base_delay_ms) + 500);
    await withRedis(async (r) => {
      const p = await pendingEntries(r, key, group);
      assert.deepEqual(p.map((x) => [x.position, x.consumer]), [[bad.position, 'sluice-dead']], 'parked under sluice-dead, nothing else pending');
      assert.deepEqual(await pendingEntries(r, key, group, 'worker-1'), [], 'never pending with the worker again');
    });
    const rows = await allDeadLetters(c, { stream, group });
    assert.deepEqual(rows.map((x) => [x.event_id, x.delivery_count]), [[bad.id, 2]], 'one dead letter, not failed again');
    assert.deepEqual(w.of(bad.position).map((d) => d.acked), [false], 'the worker saw the failing event once (it reads only new messages)');
    assert.deepEqual(w.of(good.position).map((d) => d.acked), [true], 'and handled the other one');
    assert.deepEqual(w.errors.map(String), [], 'no Redis errors');
  });

  test('a worker that re-reads its pending list (XREADGROUP … 0) every 50 ms without acknowledging: dead-lettered once read more than max_deliveries times, then its re-reads return it no more', { timeout: 180000 }, async () => {
    const t = typeBase();
    const stream = `${t}.events`;
    const key = keyOf(prefix, stream);
    const group = 'reread-' + h.rand(2);
    // A long ack timeout: the reads alone must end it (each re-read resets its idle time anyway).
    await createGroup(c, stream, { name: group, max_deliveries: 2, ack_timeout_ms: 60000, retry: { strategy: 'fixed', base_delay_ms: 100, jitter: false } });
    const w = await new PelRereader({ key, group, name: 'rereader' }).start();
    workers.push(w);
    const [ev] = await publishN(c, `${t}.x`, 1);

    const [dl] = await waitDeadLetters(c, { stream, group }, 1, WAIT_MS);
    const deadAt = Date.now(); // the entry was parked under sluice-dead before its row was written
    assert.equal(dl.event_id, ev.id);
    assert.equal(dl.source, `group:${group}`);
    assert.equal(dl.consumer, 'rereader');
    assert.ok(dl.delivery_count > 2, `read more than max_deliveries times: ${JSON.stringify(dl)}`);
    assert.equal(dl.errors.length, 1, `one failure, the over-reading: ${JSON.stringify(dl.errors)}`);
    assert.match(dl.errors[0].error, /read \d+ times/);

    // Every round that starts after the dead letter was seen finds the entry gone.
    await h.waitFor(() => w.roundsSince(deadAt) >= 10, { timeout: WAIT_MS, what: 'ten more rounds of re-reading' });
    const mine = w.of(ev.position);
    assert.deepEqual(mine.filter((d) => d.started > deadAt), [], 'no re-read returns the dead letter');
    assert.equal(mine[0].via, '>', 'first read as a new message');
    assert.ok(mine.slice(1).every((d) => d.via === '0'), 'then from the pending list');
    assert.equal(mine.length, dl.delivery_count, 'the dead letter counts every read the worker got');
    await withRedis(async (r) => {
      const p = await pendingEntries(r, key, group);
      assert.deepEqual(p.map((x) => [x.position, x.consumer]), [[ev.position, 'sluice-dead']]);
    });
    assert.equal((await allDeadLetters(c, { stream, group })).length, 1);
    assert.deepEqual(w.errors.map(String), [], 'no Redis errors');
  });
});

// ---------------------------------------------------------------- Redis restarted empty

test('Redis restarted empty in the middle of a consumer-API worker\'s run: the group is recreated at its acknowledged floor and every event not acknowledged before is delivered', { timeout: 300000 }, async () => {
  const red = await PrivateRedis.start();
  const prefix = 'wr:';
  let s;
  try {
    s = await h.startSluice({ name: 'workers-restart', env: { SLUICE_REDIS_URL: red.url, SLUICE_REDIS_PREFIX: prefix } });
    const admin = s.client();
    const w = s.client((await h.createKey(s, 'default', ['consume'])).token);
    const t = typeBase();
    const stream = `${t}.events`;
    const key = keyOf(prefix, stream);
    const group = 'restart';
    const api = (op, body) => w.post(`${groupsPath(stream)}/${group}/${op}`, body);
    await createGroup(admin, stream, { name: group, start: '$', max_deliveries: 5, ack_timeout_ms: 120000, retry: { strategy: 'fixed', base_delay_ms: 100, jitter: false } });
    const evs = await publishN(admin, `${t}.x`, 20);
    await waitStream(red.url, key, evs[19].position);

    // The worker takes 15, acknowledges the first 10; 5 are in flight when Redis goes.
    const took = [];
    for (let i = 0; took.length < 15 && i < 100; i++) {
      const b = h.assertStatus(await api('fetch', { consumer: 'w1', max: 15 - took.length, wait_ms: 1000 }), 200);
      took.push(...b.messages);
    }
    assert.deepEqual(took.map((m) => [m.event.position, m.event.id, m.attempt]), evs.slice(0, 15).map((e) => [e.position, e.id, 1]));
    const ack = h.assertStatus(await api('ack', { receipts: took.slice(0, 10).map((m) => m.receipt) }), 200);
    assert.deepEqual(ack, { acked: 10, stale: [] });
    const g = await h.waitFor(async () => {
      const x = await groupInfo(admin, stream, group);
      return x.acked_floor !== null && x.acked_floor >= evs[9].position ? x : false;
    }, { timeout: WAIT_MS, interval: 100, what: 'the sweeper to store the acknowledged floor' });
    assert.ok(g.acked_floor < evs[10].position, `the floor (${g.acked_floor}) stays below the messages in flight (from ${evs[10].position})`);
    assert.equal(g.in_redis, true);

    await red.restartEmpty();
    const more = await publishN(admin, `${t}.y`, 10);
    const owed = [...evs.slice(10), ...more]; // never acknowledged: 5 in flight, 5 never fetched, 10 new
    const owedAt = new Map(owed.map((e) => [e.position, e.id]));
    // No fetch yet: the sweeper finds the group missing and recreates it.
    await h.waitFor(async () => (await groupInfo(admin, stream, group)).in_redis === true,
      { timeout: WAIT_MS, interval: 100, what: 'the group listed in Redis again' });
    const warned = s.logJson().filter((l) => /missing in Redis/.test(l.msg));
    assert.equal(warned.length, 1, `sluice logged the lost group once:\n${s.logs.slice(-40).join('\n')}`);
    assert.equal(warned[0].level, 'warn');
    assert.equal(warned[0].group, group);
    assert.equal(warned[0].stream, stream);
    const got = [];
    // A worker retries a call answered 503 (the contract's "unavailable, retry shortly"), as
    // one on a connection sluice opened to the old Redis may be; a few, not forever.
    const refused = [];
    const call = async (op, body) => {
      for (;;) {
        const res = await api(op, body);
        if (res.status !== 503) return h.assertStatus(res, 200);
        refused.push(`${op}: ${res.body && res.body.detail}`);
        assert.ok(refused.length <= 20, `503 after 503 with Redis up: ${JSON.stringify(refused)}`);
        await h.sleep(100);
      }
    };
    const deadline = Date.now() + 120000;
    while (!owed.every((e) => got.some((m) => m.event.position === e.position))) {
      assert.ok(Date.now() < deadline, `every unacknowledged event delivered after the restart within 120 s; got ${JSON.stringify(got.map((m) => m.event.position))}, refused ${JSON.stringify(refused)}`);
      const msgs = (await call('fetch', { consumer: 'w1', max: 50, wait_ms: 1000 })).messages;
      got.push(...msgs);
      if (msgs.length) {
        const a = await call('ack', { receipts: msgs.map((m) => m.receipt) });
        assert.deepEqual(a, { acked: msgs.length, stale: [] }, 'each delivery acknowledged at once');
      }
    }
    if (refused.length) console.error(`workers: calls refused with 503 after the Redis restart: ${JSON.stringify(refused)}`);
    for (const m of got) {
      assert.ok(owedAt.has(m.event.position), `position ${m.event.position} was acknowledged before the restart (floor ${g.acked_floor}) and is delivered again`);
      assert.equal(m.event.id, owedAt.get(m.event.position), 'the stored event at that position');
    }
    await h.waitFor(async () => {
      const x = await groupInfo(admin, stream, group);
      return x.in_redis && x.acked_floor >= more[9].position;
    }, { timeout: WAIT_MS, interval: 100, what: 'the restored group\'s floor to pass every acknowledged event' });
    assert.equal(s.logJson().filter((l) => /missing in Redis/.test(l.msg)).length, 1, 'recreated once');
  } finally {
    if (s) await s.stop().finally(() => s.cleanup());
    await red.stop();
  }
});

test('Redis frozen (SIGSTOP) under consumer-API workers: /health keeps answering, every call ends, and after SIGCONT every event is delivered and acknowledged', { timeout: 300000 }, async () => {
  const red = await PrivateRedis.start();
  const prefix = 'wf:';
  let s;
  let workers = [];
  let stop = false;
  try {
    s = await h.startSluice({ name: 'workers-frozen', env: { SLUICE_REDIS_URL: red.url, SLUICE_REDIS_PREFIX: prefix } });
    const admin = s.client();
    const w = s.client((await h.createKey(s, 'default', ['consume'])).token);
    const t = typeBase();
    const stream = `${t}.events`;
    const key = keyOf(prefix, stream);
    const group = 'frozen';
    const api = (op, body) => w.post(`${groupsPath(stream)}/${group}/${op}`, body, { timeout: 20000 });
    // A short ack timeout: deliveries a frozen Redis ran after sluice gave up on them come back.
    await createGroup(admin, stream, { name: group, start: '$', max_deliveries: 50, ack_timeout_ms: 2000, retry: { strategy: 'fixed', base_delay_ms: 100, jitter: false } });
    const evs = await publishN(admin, `${t}.x`, 300);
    await waitStream(red.url, key, evs[299].position);

    const seen = new Set(); // positions delivered at least once
    const answers = { 200: 0, 503: 0 };
    const other = [];
    // Four workers: fetch 5, ack them; any call may be refused with 503 while Redis hangs.
    workers = [1, 2, 3, 4].map((k) => (async () => {
      while (!stop) {
        const f = await api('fetch', { consumer: `w${k}`, max: 5 });
        if (f.status !== 200) { if (f.status === 503) answers[503]++; else other.push(`fetch ${f.status} ${f.text}`); await h.sleep(20); continue; }
        answers[200]++;
        const msgs = f.body.messages;
        if (!msgs.length) { await h.sleep(20); continue; }
        msgs.forEach((m) => seen.add(m.event.position));
        const a = await api('ack', { receipts: msgs.map((m) => m.receipt) });
        if (a.status === 200) answers[200]++;
        else if (a.status === 503) answers[503]++;
        else other.push(`ack ${a.status} ${a.text}`);
      }
    })());
    await h.waitFor(() => seen.size >= 20, { timeout: WAIT_MS, interval: 20, what: 'the workers to take 20 events' });

    red.freeze();
    // While Redis hangs the workers keep calling; each HTTP thread may hold a call for the
    // short Redis timeout it uses, never for the pool's 2 s one. The bound proves that, with
    // a wide margin for a slow machine; it is not a latency target.
    const slow = [];
    for (let i = 0; i < 20; i++) {
      const t0 = Date.now();
      const res = await s.client().get('/health', { token: null, timeout: 20000 });
      const ms = Date.now() - t0;
      if (res.status !== 200 || ms > 1500) slow.push(`${res.status} in ${ms} ms`);
      await h.sleep(100);
    }
    red.thaw();
    assert.deepEqual(slow, [], '/health answered within 1.5 s while Redis was frozen');

    // Calls that Redis ran after sluice gave up on them: their deliveries time out and come
    // back (attempt 2), their acks took effect. In the end every event was delivered and
    // nothing is pending.
    const r = await Redis.connect(red.url);
    try {
      await h.waitFor(async () => evs.every((e) => seen.has(e.position)) && Object.keys(await pendingByConsumer(r, key, group)).length === 0,
        { timeout: 120000, interval: 200, what: `every event delivered (${seen.size} of 300) and nothing pending after Redis resumed` });
    } finally {
      r.close();
    }
    stop = true;
    await Promise.all(workers);
    assert.deepEqual(other, [], 'every call answered 200 or 503');
    assert.ok(answers[200] > 0, 'calls succeeded');
  } finally {
    stop = true;
    red.thaw();
    await Promise.allSettled(workers);
    if (s) await s.stop().finally(() => s.cleanup());
    await red.stop();
  }
});

// ---------------------------------------------------------------- leader failover

test('kill -9 of the sweeper leader while it dead-letters 200 unacknowledged messages: the other instance takes over and each is dead-lettered exactly once', { timeout: 300000 }, async () => {
  const prefix = newPrefix();
  const db = await h.freshDatabase();
  const adminToken = 'adm_' + h.rand(16);
  const env = { SLUICE_REDIS_URL: redisUrl(), SLUICE_REDIS_PREFIX: prefix };
  const handles = [];
  let w;
  let r;
  try {
    const started = await Promise.allSettled(['workers-fo-a', 'workers-fo-b'].map((name) => h.startSluice({ name, dbUrl: db.url, adminToken, env })));
    for (const x of started) if (x.status === 'fulfilled') handles.push(x.value);
    for (const x of started) if (x.status === 'rejected') throw x.reason;
    const leaders = await h.waitFor(() => {
      const l = handles.filter((x) => x.logs.some((line) => SWEEPER_LINE.test(line)));
      return l.length ? l : false;
    }, { timeout: WAIT_MS, what: 'one instance to take the sweeper lock' });
    assert.equal(leaders.length, 1, 'one sweeper at a time');
    const [leader] = leaders;
    const survivor = handles.find((x) => x !== leader);
    const c = survivor.client();

    const t = typeBase();
    const stream = `${t}.events`;
    const key = keyOf(prefix, stream);
    const group = 'fo';
    await createGroup(c, stream, { name: group, start: '$', max_deliveries: 1, ack_timeout_ms: 300, retry: { strategy: 'fixed', base_delay_ms: 100, jitter: false } });
    const N = 200;
    const evs = await publishN(c, `${t}.x`, N);
    await waitInRedis(key, evs[N - 1].position);
    // one read of all 200: they time out together, and the sweeper dead-letters them as one batch
    w = await new SeedWorker({ key, group, name: 'worker-1', handler: () => false, batchSize: N }).start();
    await h.waitFor(() => w.deliveries.length === N, { timeout: WAIT_MS, what: 'the worker to read the 200 events' });

    r = await Redis.connect();
    const dead = async () => (await pendingByConsumer(r, key, group))['sluice-dead'] || 0;
    await h.waitFor(async () => (await dead()) >= 40, { timeout: WAIT_MS, interval: 1, what: 'the sweeper to be well into the batch' });
    assert.ok(!survivor.logs.some((line) => SWEEPER_LINE.test(line)), 'the survivor is not running the sweeper too');
    await leader.kill9();
    const deadAtKill = await dead();
    assert.ok(deadAtKill < N, `killed in the middle of the sweep (${deadAtKill} of ${N} parked as dead when it died)`);
    await h.waitFor(() => survivor.logs.some((line) => SWEEPER_LINE.test(line)), { timeout: WAIT_MS, what: 'the survivor to take over the sweeper' });

    await waitDeadLetters(c, { stream, group }, N, 120000);
    await h.sleep(1500); // anything dead-lettered twice would show by now
    const rows = await allDeadLetters(c, { stream, group });
    assert.equal(rows.length, N, 'exactly one dead letter per message');
    assert.deepEqual(rows.map((x) => x.event_position).sort((a, b) => a - b), evs.map((e) => e.position), 'one per event position');
    const idAt = new Map(evs.map((e) => [e.position, e.id]));
    for (const x of rows) {
      assert.equal(x.event_id, idAt.get(x.event_position));
      assert.equal(x.source, `group:${group}`);
      assert.equal(x.delivery_count, 1, `position ${x.event_position}: delivered once, failed once: ${JSON.stringify(x)}`);
      assert.ok(x.errors.length <= 1, `position ${x.event_position}: no second failure recorded: ${JSON.stringify(x.errors)}`);
    }
    // the table itself: one row per position, dead-lettered once (one "open" in its history)
    const table = h.psql(db.url, `SELECT event_position, count(*), max(delivery_count), max(jsonb_array_length(history)) FROM dead_letters WHERE source = 'group' AND group_name = '${group}' GROUP BY event_position ORDER BY event_position`)
      .split('\n').filter(Boolean).map((l) => l.split('|').map(Number));
    assert.deepEqual(table, evs.map((e) => [e.position, 1, 1, 1]));
    assert.deepEqual(await pendingByConsumer(r, key, group), { 'sluice-dead': N }, 'every message parked as dead, none with the worker');
    assert.equal(new Set(w.deliveries.map((d) => d.position)).size, N);
    assert.equal(w.deliveries.length, N, 'each read once by the worker');
    assert.deepEqual(w.errors.map(String), [], 'no Redis errors');
  } finally {
    if (w) await w.stop().catch(() => {});
    if (r) r.close();
    // the survivor must exit cleanly (under ASan: no leak); the killed leader is reaped
    let failed = null;
    for (const x of handles) {
      try {
        if (x.exitInfo === null) await x.stop();
      } catch (e) {
        failed = failed || e;
      } finally {
        await x.cleanup();
      }
    }
    db.drop();
    await deletePrefix(prefix);
    if (failed) throw failed;
  }
});
