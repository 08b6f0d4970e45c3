'use strict';
// The consumer-group kit shared by groups.test.js and dead_letters.test.js: ioredis
// (tests/lib/redis.js) bound to the suite's Redis, a real worker (XREADGROUP … > and … 0, XACK,
// nacks over HTTP), and helpers for groups and dead letters through the API. Each sluice gets its own SLUICE_REDIS_PREFIX.
const assert = require('node:assert/strict');
const h = require('./harness');
const redis = require('../../lib/redis.js');

const WAIT_MS = 30000; // "no hang" bound for one expected state

// An ioredis client set up by tests/lib/redis.js, connected to the suite's Redis (redisUrl())
// by default. The tests send any command as cmd(name, ...args) (ioredis's call) and end with
// close() (disconnect).
class Redis extends redis.Redis {
  static connect(url = redisUrl(), opts) { return redis.open(new this(redis.connectOptions(url, opts))); }
  cmd(...args) { return this.call(...args); }
  close() { this.disconnect(); }
}

function redisUrl() {
  const u = process.env.SLUICE_REDIS_URL;
  assert.ok(u, 'SLUICE_REDIS_URL names the suite Redis (scripts/services.sh)');
  assert.match(u, /^redis:\/\//, 'these tests speak TCP to Redis');
  return u;
}

async function withRedis(fn) {
  const r = await Redis.connect();
  try { return await fn(r); } finally { r.close(); }
}

async function deletePrefix(prefix) {
  let url;
  try { url = redisUrl(); } catch (_) { return; } // best effort, as the cleanup itself
  await redis.deletePrefix(url, prefix);
}

const posOf = (entryId) => Number(String(entryId).split('-')[0]);
const fieldsOf = (kv) => { const f = {}; for (let i = 0; i < kv.length; i += 2) f[kv[i]] = kv[i + 1]; return f; };

// XPENDING key group - + 10000 [consumer] → [{id, position, consumer, idle, count}]
async function pendingEntries(r, key, group, consumer) {
  const args = [key, group, '-', '+', 10000];
  if (consumer) args.push(consumer);
  const rows = await r.xpending(...args);
  return rows.map(([id, c, idle, count]) => ({ id, position: posOf(id), consumer: c, idle, count }));
}

// Waits until `key` has an entry at `position` or later (the relay is asynchronous).
async function waitInRedis(key, position, timeout = WAIT_MS) {
  await withRedis((r) => h.waitFor(async () => {
    const top = await r.xrevrange(key, '+', '-', 'COUNT', 1);
    return top.length > 0 && posOf(top[0][0]) >= position;
  }, { timeout, interval: 50, what: `${key} to reach position ${position}` }));
}

// ---------------------------------------------------------------- a real worker

// One consumer of a group. Every ~30 ms it reads new messages (XREADGROUP … >) and its
// redeliveries (XREADGROUP … 0), and does with each delivery what decide(msg, n) says
// (n = how many times this worker has received that entry, from 1):
//   'ack' → XACK; 'nack' → POST …/nack retryable; 'fatal' → nack retryable:false;
//   'ignore' → nothing (the delivery times out after ack_timeout_ms).
// An ignored entry stays in the worker's PEL until the sweeper takes it, and every
// XREADGROUP … 0 would deliver it again (and reset its idle time), so while it holds one the
// worker lists its PEL with XPENDING (no side effect) and reads only the entries handed to it
// since it last read them, one at a time by id.
class Worker {
  constructor({ key, group, name, client, stream, decide = () => 'ack', interval = 30 }) {
    Object.assign(this, { key, group, name, client, stream, decide, interval });
    this.deliveries = []; // {id, position, eventId, type, n, at, via}
    this.seen = new Map(); // entry id → deliveries to this worker
    this.held = new Map(); // entry id → when this worker last read it (ignored, unacked)
    this.nacks = [];       // {id, status, body}
    this.errors = [];
    this.stopped = false;
  }

  async start() {
    this.r = await Redis.connect();
    this.loop = (async () => {
      while (!this.stopped) {
        try { await this.poll(); } catch (e) { if (!this.stopped) this.errors.push(e); }
        await h.sleep(this.interval);
      }
    })();
    return this;
  }

  async stop() {
    this.stopped = true;
    if (this.loop) await this.loop;
    if (this.r) this.r.close();
  }

  async read(id, count = 100) {
    const rep = await this.r.xreadgroup('GROUP', this.group, this.name, 'COUNT', count, 'STREAMS', this.key, id);
    if (!rep) return [];
    const out = [];
    for (const [, entries] of rep) for (const [eid, kv] of entries) if (kv) out.push({ id: eid, fields: fieldsOf(kv) });
    return out;
  }

  async poll() {
    // One entry per read, handled before the next read: a delivery's ack timeout starts when
    // it is read, so none waits in a local queue.
    for (let i = 0; i < 200; i++) {
      const [e] = await this.read('>', 1);
      if (!e) break;
      await this.handle({ ...e, via: '>' });
    }
    // Redeliveries: XREADGROUP … 0 answers the first entry of this worker's PEL, which is a
    // redelivery as long as it holds no ignored entry.
    for (let i = 0; i < 200 && this.held.size === 0; i++) {
      const [e] = await this.read('0', 1);
      if (!e) return;
      await this.handle({ ...e, via: '0' });
    }
    if (this.held.size === 0) return;
    const now = Date.now();
    const mine = await pendingEntries(this.r, this.key, this.group, this.name);
    const ids = new Set(mine.map((p) => p.id));
    for (const id of [...this.held.keys()]) if (!ids.has(id)) this.held.delete(id);
    for (const p of mine) {
      const took = this.held.get(p.id);
      // handed back since this worker read it: idle counts from the sweeper's XCLAIM
      if (took !== undefined && !(p.idle + 50 < now - took)) continue;
      // Still here? (The loop may have taken a while.) Then read the first PEL entry after the
      // one before it: this one, or, if the sweeper took it in between, the next one, which
      // Redis counts as delivered all the same, so it is handled like any delivery.
      const still = await this.r.xpending(this.key, this.group, p.id, p.id, 1, this.name);
      if (!still.length) continue;
      const [one] = await this.read(`${p.position - 1}-0`, 1);
      if (one) await this.handle({ ...one, via: 'pel' });
    }
  }

  async handle(e) {
    const n = (this.seen.get(e.id) || 0) + 1;
    this.seen.set(e.id, n);
    const d = { id: e.id, position: posOf(e.id), eventId: e.fields.id, type: e.fields.type, n, at: Date.now(), via: e.via };
    this.deliveries.push(d);
    const what = this.decide(d, n);
    this.held.delete(e.id);
    if (what === 'ack') {
      await this.r.xack(this.key, this.group, e.id);
    } else if (what === 'nack' || what === 'fatal') {
      const res = await this.client.post(`/v1/streams/${encodeURIComponent(this.stream)}/groups/${encodeURIComponent(this.group)}/nack`,
        { event_id: e.fields.id, error: `${this.name} failed delivery ${n}`, retryable: what === 'nack' });
      d.nackedAt = Date.now();
      this.nacks.push({ id: e.id, n, status: res.status, body: res.body, text: res.text });
    } else if (what === 'ignore') {
      this.held.set(e.id, Date.now());
    } else {
      throw new Error(`decide returned ${what}`);
    }
  }

  of(position) { return this.deliveries.filter((d) => d.position === position); }

  assertHealthy({ lateNacks = false } = {}) {
    assert.deepEqual(this.errors.map(String), [], `worker ${this.name}: no Redis errors`);
    const bad = this.nacks.filter((x) => x.status !== 200 && !(lateNacks && x.status === 409));
    assert.deepEqual(bad, [], `worker ${this.name}: every nack answered 200`);
  }
}

// ---------------------------------------------------------------- API helpers

const newPrefix = () => `itg${h.rand(4)}:`;
const typeBase = () => 'g' + h.rand(4);
const keyOf = (prefix, stream, tenant = 'default') => (tenant === 'default' ? `${prefix}${stream}` : `${prefix}${tenant}:${stream}`);
const groupsPath = (stream) => `/v1/streams/${encodeURIComponent(stream)}/groups`;

async function createGroup(c, stream, body) {
  const res = await c.post(groupsPath(stream), body);
  h.assertStatus(res, 201);
  return res.body;
}

async function listGroups(c, stream) {
  return h.assertStatus(await c.get(groupsPath(stream)), 200);
}

async function groupInfo(c, stream, name) {
  const g = (await listGroups(c, stream)).groups.find((x) => x.name === name);
  assert.ok(g, `group ${name} is listed on ${stream}`);
  return g;
}

// Publishes n events of `type` (stream = its default, <prefix>.events) in one batch.
async function publishN(c, type, n, data = (i) => ({ i })) {
  const res = await c.publish(Array.from({ length: n }, (_, i) => ({ type, data: data(i) })));
  h.assertStatus(res, 201);
  return res.body.events;
}

// Every dead letter matching query (all pages).
async function allDeadLetters(c, query = {}) {
  const out = [];
  let after;
  for (let pages = 0; pages < 1000; pages++) {
    const q = new URLSearchParams({ ...query, limit: '1000' });
    if (after !== undefined) q.set('after', String(after));
    const body = h.assertStatus(await c.get('/v1/dead-letters?' + q), 200);
    out.push(...body.dead_letters);
    if (!body.has_more) return out;
    after = body.next_after;
  }
  throw new Error('dead-letter paging did not end');
}

async function waitDeadLetters(c, query, n, timeout = WAIT_MS) {
  return h.waitFor(async () => {
    const all = await allDeadLetters(c, query);
    return all.length >= n ? all : false;
  }, { timeout, interval: 100, what: `${n} dead letters for ${JSON.stringify(query)}` });
}

async function startGroupsSluice(name, opts = {}) {
  const prefix = opts.prefix || newPrefix();
  const s = await h.startSluice({ name, ...opts, env: { SLUICE_REDIS_URL: redisUrl(), SLUICE_REDIS_PREFIX: prefix, ...(opts.env || {}) } });
  return { s, c: s.client(), prefix };
}

// Minimum backoff the sweeper may apply before delivery n+1 (jitter: half of it).
function minBackoff(policy, n) {
  let d = policy.retry.base_delay_ms;
  for (let i = 1; i < n && d < policy.retry.max_delay_ms; i++) d *= 2;
  d = Math.min(d, policy.retry.max_delay_ms);
  return policy.retry.jitter ? Math.floor(d / 2) : d;
}

module.exports = { Redis, redisUrl, withRedis, deletePrefix, posOf, fieldsOf, pendingEntries, waitInRedis, Worker, newPrefix, typeBase, keyOf, groupsPath, createGroup, listGroups, groupInfo, publishN, allDeadLetters, waitDeadLetters, startGroupsSluice, minBackoff };
