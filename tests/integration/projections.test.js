'use strict';
// Issue 5: projections (API.md "Projections"). Every route; after a randomised sequence of
// publishes (several concurrent producers, singles and batches), every projection's state —
// the seven reducers, keyed and global, defined before (live) and after (catch-up) the
// publishes — equals a recomputation from the raw events read back over NDJSON, key by key,
// with each key's position; values a reducer cannot apply are dead letters (table
// dead_letters, source 'projection:<name>') and the projection goes on; reset rebuilds the
// same state; kill -9 during the catch-up of 50,000 events and a failover of the leader
// never double-count; read-your-writes with min_position; tenant isolation of every route;
// the README's projections (user preferences, AI cost per user, events per type).
// Seed: SLUICE_IT_SEED (printed in the test names).
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const util = require('node:util');
const h = require('./lib/harness');

const SEED = Number(process.env.SLUICE_IT_SEED || Date.now() % 1000000);
const CATCH_UP_MS = 120000;

// ---------------------------------------------------------------- a seeded PRNG (mulberry32)

function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n) => Math.floor(next() * n), pick: (xs) => xs[Math.floor(next() * xs.length)] };
}

// ---------------------------------------------------------------- the reference reducers

// JSON Pointer into the stored envelope; undefined when it names nothing.
function resolvePointer(doc, ptr) {
  const segs = ptr.slice(1).split('/').map((x) => x.replace(/~1/g, '/').replace(/~0/g, '~'));
  let v = doc;
  for (const seg of segs) {
    if (v === null || typeof v !== 'object') return undefined;
    if (Array.isArray(v)) {
      if (!/^(0|[1-9]\d*)$/.test(seg) || Number(seg) >= v.length) return undefined;
      v = v[Number(seg)];
    } else {
      if (!Object.prototype.hasOwnProperty.call(v, seg)) return undefined;
      v = v[seg];
    }
  }
  return v;
}

function typeMatches(types, type) {
  return types.some((t) => t === '*' || (t.endsWith('.*') ? type.startsWith(t.slice(0, -1)) : t === type));
}

function matches(def, ev) {
  const f = def.filter || {};
  if (f.streams && f.streams.length && !f.streams.includes(ev.stream)) return false;
  if (f.types && f.types.length && !typeMatches(f.types, ev.type)) return false;
  return true;
}

// The key as text, as the server groups it; null: not grouped. (The tests only key by
// strings, so the text of a value is the string itself.)
function keyOf(def, ev) {
  if (!def.key) return '';
  const v = resolvePointer(ev, def.key);
  if (v === undefined || v === null) return null;
  if (Number.isInteger(v)) return String(v);
  assert.equal(typeof v, 'string', `test keys are strings or integers (${def.key} of ${ev.id})`);
  return v;
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// Applies one value; returns the reason it cannot, or null.
function reduceOne(reduce, cur, value) {
  switch (reduce) {
    case 'count': return { state: (cur === undefined ? 0 : cur) + 1 };
    case 'latest': return { state: value === undefined ? null : value };
    case 'merge':
      if (!isObject(value)) return { dead: 'merge needs an object at the path' };
      return { state: { ...(cur || {}), ...value } };
    case 'set': {
      if (value === undefined) return { dead: 'set needs a value at the path' };
      const s = cur || [];
      return { state: s.some((x) => util.isDeepStrictEqual(x, value)) ? s : [...s, value] };
    }
    default: {
      if (typeof value !== 'number') return { dead: 'expected a number at the path' };
      if (cur === undefined) return { state: value };
      if (reduce === 'sum') return { state: cur + value };
      if (reduce === 'min') return { state: value < cur ? value : cur };
      return { state: value > cur ? value : cur };
    }
  }
}

// → {states: Map key → {state, position}, dead: [{position, reason}], last: position of the
// last event the filter matches}
function recompute(def, events) {
  const states = new Map();
  const dead = [];
  let last = 0;
  for (const ev of events) {
    if (!matches(def, ev)) continue;
    last = ev.position;
    const k = keyOf(def, ev);
    if (k === null) continue;
    const value = def.reduce === 'count' ? undefined : resolvePointer(ev, def.path || '/data');
    const cur = states.get(k);
    const r = reduceOne(def.reduce, cur ? cur.state : undefined, value);
    if (r.dead) { dead.push({ position: ev.position, reason: r.dead }); continue; }
    states.set(k, { state: r.state, position: ev.position });
  }
  return { states, dead, last };
}

// ---------------------------------------------------------------- Redis clean-up

// The relay writes every event under the instance's SLUICE_REDIS_PREFIX: remove those keys
// at the end (SCAN + UNLINK over a plain socket; best effort).
function redisCmd(...args) {
  const u = new URL(process.env.SLUICE_REDIS_URL);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: u.hostname, port: Number(u.port || 6379) });
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('redis timed out')); }, 10000);
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
    sock.on('data', (d) => {
      buf += d;
      // Only SCAN (*2 [cursor, *n keys]) and UNLINK (:n) are sent: parse just those.
      if (buf[0] === ':' && buf.includes('\r\n')) { clearTimeout(timer); sock.destroy(); resolve(Number(buf.slice(1, buf.indexOf('\r\n')))); return; }
      if (buf[0] === '-') { clearTimeout(timer); sock.destroy(); reject(new Error(buf.trim())); return; }
      const lines = buf.split('\r\n');
      if (lines.length < 5) return;
      const n = Number(lines[3].slice(1));
      if (lines.length < 5 + 2 * n) return;
      const keys = [];
      for (let i = 0; i < n; i++) keys.push(lines[5 + 2 * i]);
      clearTimeout(timer);
      sock.destroy();
      resolve([lines[2], keys]);
    });
    sock.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join(''));
  });
}

const prefixes = [];
function newPrefix(tag) {
  const p = `${tag}${h.rand(4)}:`;
  prefixes.push(p);
  return p;
}
after(async () => {
  for (const prefix of prefixes) {
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redisCmd('SCAN', cursor, 'MATCH', prefix + '*', 'COUNT', 1000);
        for (const k of keys) await redisCmd('UNLINK', k);
        cursor = next;
      } while (cursor !== '0');
    } catch (_) { /* best effort */ }
  }
});

// ---------------------------------------------------------------- HTTP helpers

const enc = encodeURIComponent;

async function pub(client, envs) {
  const res = await client.publish(envs);
  h.assertStatus(res, 201);
  return Array.isArray(envs) ? res.body.events : [res.body];
}

async function ndjsonAll(client) {
  const res = await client.get('/v1/events', { headers: { Accept: 'application/x-ndjson' }, timeout: 120000 });
  h.assertStatus(res, 200);
  return res.text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// Every state of a projection, paged by key (`limit`), checking the paging fields.
async function allStates(client, name, limit = 100) {
  const out = new Map();
  let after;
  for (let pages = 0; ; pages++) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (after !== undefined) q.set('after', after);
    const res = h.assertStatus(await client.get(`/v1/projections/${enc(name)}/state?${q}`), 200);
    assert.ok(Array.isArray(res.states), `${name}: states[]`);
    assert.equal(typeof res.has_more, 'boolean');
    assert.equal(typeof res.position, 'number');
    assert.ok(res.states.length <= limit);
    for (const st of res.states) {
      assert.ok(!out.has(st.key), `${name}: key ${st.key} listed twice`);
      out.set(st.key, { state: st.state, position: st.position });
    }
    if (res.states.length) assert.equal(res.next_after, res.states[res.states.length - 1].key);
    if (!res.has_more) return out;
    after = res.next_after;
    assert.ok(pages < 10000);
  }
}

async function getProjection(client, name) {
  return h.assertStatus(await client.get('/v1/projections/' + enc(name)), 200);
}

// Waits until the projection is live at `position` (or beyond).
async function waitLive(client, name, position, timeout = CATCH_UP_MS) {
  const p = await h.waitFor(async () => {
    const x = await getProjection(client, name);
    return x.status === 'failed' || (x.status === 'live' && x.position >= position) ? x : false;
  }, { timeout, interval: 50, what: `${name} live at ${position}` });
  assert.notEqual(p.status, 'failed', `projection ${name} failed: ${JSON.stringify(p)}`);
  return p;
}

// The states the server holds (global projections are read by ?key=, see the listing test).
async function serverStates(client, def, limit) {
  if (def.key) return allStates(client, def.name, limit);
  const res = await client.get(`/v1/projections/${enc(def.name)}/state?key=`);
  if (res.status === 404) return new Map();
  h.assertStatus(res, 200);
  assert.equal(res.body.key, '', h.describeRes(res));
  return new Map([['', { state: res.body.state, position: res.body.position }]]);
}

function assertStatesEqual(got, want, name) {
  const gk = [...got.keys()].sort();
  const wk = [...want.keys()].sort();
  assert.deepEqual(gk, wk, `${name}: the keys`);
  for (const k of wk) {
    assert.deepStrictEqual(got.get(k).state, want.get(k).state, `${name}[${JSON.stringify(k)}]: state`);
    assert.equal(got.get(k).position, want.get(k).position, `${name}[${JSON.stringify(k)}]: position of the last event applied`);
  }
}

function deadLetters(dbUrl, tenant, name) {
  const out = h.psql(dbUrl, `SELECT event_position || '|' || (errors->0->>'error') FROM dead_letters WHERE tenant_id = '${tenant}' AND source = 'projection:${name}' ORDER BY event_position`);
  return out ? out.split('\n').map((l) => { const [p, e] = l.split('|'); return { position: Number(p), reason: e }; }) : [];
}

// Checks one projection against the raw events (read after the last publish): states,
// each key's position, dead letters.
async function verify(s, client, tenant, def, events, { limit = 100 } = {}) {
  const want = recompute(def, events);
  // The checkpoint reaches at least the last event the filter matches; once caught up it
  // moves on to the head it has read, matched or not (lag 0, read-your-writes). The head
  // counts every tenant's events.
  const head = h.assertStatus(await client.get('/v1/info'), 200).head_position;
  assert.ok(head >= want.last);
  const p = await waitLive(client, def.name, head);
  assert.equal(p.position, head, `${def.name}: a caught-up projection's checkpoint is the head (the last event its filter matches: ${want.last})`);
  assert.equal(p.lag, 0, `${def.name}: lag of a caught-up projection`);
  assertStatesEqual(await serverStates(client, def, limit), want.states, def.name);
  assert.deepEqual(deadLetters(s.dbUrl, tenant, def.name), want.dead, `${def.name}: dead letters`);
  return want;
}

// verify() for each definition; one failure does not hide the others' results.
async function verifyAll(s, client, tenant, defs, events, opts) {
  const failed = [];
  for (const def of defs) {
    try {
      await verify(s, client, tenant, def, events, opts);
    } catch (e) {
      failed.push(`${def.name} (${JSON.stringify(def)}):\n  ${String(e.message).split('\n').slice(0, 12).join('\n  ')}`);
    }
  }
  assert.ok(failed.length === 0, `${failed.length} of ${defs.length} projections disagree with the recomputation:\n${failed.join('\n')}`);
}

// ---------------------------------------------------------------- the randomised sequence

const USERS = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
const MODELS = ['claude', 'gpt', 'llama', 'mistral'];
const PREF_KEYS = ['theme', 'lang', 'tz', 'notify', 'font'];
const PREF_VALUES = ['dark', 'light', 'en', 'fr', 'UTC', true, false, null, 12, { size: 3 }];

function randomEvent(rnd, tag) {
  const r = rnd.next();
  if (r < 0.3) { // AI cost: numbers, sometimes a string (dead for sum) or nothing
    const data = { tokens: rnd.int(5000) };
    const u = rnd.next();
    if (u < 0.9) data.user_id = rnd.pick(USERS); else if (u < 0.95) data.user_id = null;
    const c = rnd.next();
    if (c < 0.45) data.cost_usd = rnd.int(10);
    else if (c < 0.9) data.cost_usd = Math.round(rnd.next() * 1e6) / 1e4;
    else if (c < 0.95) data.cost_usd = 'n/a';
    if (rnd.next() < 0.85) data.model = rnd.pick(MODELS);
    return { type: rnd.next() < 0.9 ? 'ai.cost' : 'ai.request.sent', stream: 'ai.events', data, user_id: rnd.next() < 0.5 ? rnd.pick(USERS) : undefined };
  }
  if (r < 0.5) { // the catalog type: valid data
    const n = 1 + rnd.int(3);
    const newValues = {};
    for (let i = 0; i < n; i++) newValues[rnd.pick(PREF_KEYS)] = rnd.pick(PREF_VALUES);
    return { type: 'user.preferences.updated', key: undefined,
      data: { user_id: rnd.pick(USERS), changed_fields: Object.keys(newValues), old_values: {}, new_values: newValues } };
  }
  if (r < 0.85) { // shop orders: keys, amounts, metadata with a "/" in a field name
    const type = rnd.pick(['shop.order.placed', 'shop.order.paid', 'shop.order.cancelled']);
    const data = { status: type.split('.')[2] };
    const a = rnd.next();
    if (a < 0.85) data.amount = rnd.int(2000) - 500; else if (a < 0.93) data.amount = 'free';
    if (rnd.next() < 0.2) delete data.status;
    const w = rnd.next();
    if (w < 0.25) data['we~ird'] = rnd.pick(['a', 'b', 7, true, null]);
    else if (w < 0.45) data['we~ird'] = rnd.pick([{ x: 1, y: [1, 2] }, { y: [1, 2], x: 1 }, [1, 'two'], { x: 2 }]);
    const e = { type, stream: 'shop.events', data, metadata: { 'a/b': rnd.pick(['eu', 'us', 'apac']) } };
    if (rnd.next() < 0.85) e.key = 'ord-' + rnd.int(12);
    if (rnd.next() < 0.7) e.user_id = rnd.pick(USERS);
    if (rnd.next() < 0.3) e.data.tags = [rnd.pick(['vip', 'new', 'promo']), 'x'];
    return e;
  }
  return { type: rnd.pick(['audit.logged', 'audit.login.failed']), stream: 'audit.trail', data: { by: tag },
    metadata: rnd.next() < 0.5 ? { 'a/b': 'eu' } : undefined };
}

// Publishes `count` events from `producers` concurrent clients, singles and batches.
async function publishRandom(client, seed, count, producers = 3, tag = 'a') {
  await Promise.all(Array.from({ length: producers }, async (_, w) => {
    const rnd = prng(seed * 31 + w);
    let n = 0;
    while (n < count / producers) {
      const size = rnd.next() < 0.3 ? 1 : 1 + rnd.int(60);
      const envs = Array.from({ length: size }, () => randomEvent(rnd, tag));
      await pub(client, size === 1 ? envs[0] : envs);
      n += size;
    }
  }));
}

const DEFS_LIVE = [ // defined before any publish: they follow live
  { name: 'prefs', filter: { types: ['user.preferences.updated'] }, key: '/data/user_id', reduce: 'merge', path: '/data/new_values' },
  { name: 'cost', filter: { types: ['ai.cost'] }, key: '/data/user_id', reduce: 'sum', path: '/data/cost_usd' },
  { name: 'per-type', key: '/type', reduce: 'count' },
  { name: 'shop-count', filter: { streams: ['shop.events'] }, reduce: 'count' },
  { name: 'cost-total', filter: { types: ['ai.*'] }, reduce: 'sum', path: '/data/cost_usd' },
];
const DEFS_CATCH_UP = [ // defined after the first half: they catch up, then follow
  { name: 'order-status', filter: { types: ['shop.*'] }, key: '/key', reduce: 'latest', path: '/data/status' },
  { name: 'min-amount', filter: { streams: ['shop.events'] }, key: '/user_id', reduce: 'min', path: '/data/amount' },
  { name: 'max-amount', filter: { types: ['shop.order.placed', 'shop.order.paid'] }, reduce: 'max', path: '/data/amount' },
  { name: 'models', filter: { types: ['ai.cost'] }, key: '/data/user_id', reduce: 'set', path: '/data/model' },
  { name: 'weird-set', filter: { streams: ['shop.events'] }, key: '/stream', reduce: 'set', path: '/data/we~0ird' },
  { name: 'by-region', filter: { streams: ['shop.events', 'audit.trail'] }, key: '/metadata/a~1b', reduce: 'latest', path: '/data' },
  { name: 'region-merge', filter: { types: ['shop.order.*'] }, key: '/metadata/a~1b', reduce: 'merge' },
  { name: 'first-tag', key: '/data/tags/0', reduce: 'count' },
  { name: 'user-max-cost', filter: { types: ['ai.cost'] }, key: '/user_id', reduce: 'max', path: '/data/cost_usd' },
  { name: 'everything', reduce: 'count' },
  { name: 'placed-by-region', filter: { streams: ['shop.events'], types: ['shop.order.placed'] }, key: '/metadata/a~1b', reduce: 'sum', path: '/data/amount' },
  { name: 'star-by-stream', filter: { types: ['*'] }, key: '/stream', reduce: 'count' },
  { name: 'by-version', filter: { streams: ['shop.events'] }, key: '/version', reduce: 'count' },
];
const ALL_DEFS = [...DEFS_LIVE, ...DEFS_CATCH_UP];

// ---------------------------------------------------------------- the shared instance

let s;
let A;
let B;
let Bread;

before(async () => {
  s = await h.startSluice({ name: 'projections', env: { SLUICE_REDIS_PREFIX: newPrefix('itp') } });
  A = s.client();
  B = s.client((await h.createKey(s, 'tenant-b', ['read', 'publish', 'admin'], 'b')).token);
  Bread = s.client((await h.createKey(s, 'tenant-b', ['read'], 'b-read')).token);
});
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

describe(`randomised publishes: every projection equals a recomputation from the raw events (seed ${SEED})`, () => {
  let events;
  test('define, publish (concurrently with catch-up and with tenant B), recompute, compare', async () => {
    for (const def of DEFS_LIVE) {
      const res = await A.post('/v1/projections', def);
      const p = h.assertStatus(res, 201);
      assert.equal(p.name, def.name);
      assert.equal(p.reduce, def.reduce);
      assert.ok(['catching_up', 'live'].includes(p.status));
      assert.equal(p.position, 0);
      assert.equal(typeof p.lag, 'number');
    }
    await publishRandom(A, SEED, 1500);
    const createCatchUp = (async () => {
      for (const def of DEFS_CATCH_UP) h.assertStatus(await A.post('/v1/projections', def), 201);
    })();
    await Promise.all([
      publishRandom(A, SEED + 1, 1500),
      publishRandom(B, SEED + 2, 300, 1, 'b'), // tenant B, the same types: never in A's states
      createCatchUp,
    ]);
    events = await ndjsonAll(A);
    assert.ok(events.length >= 3000);
    assert.ok(events.every((e) => e.tenant_id === 'default'));
    await verifyAll(s, A, 'default', ALL_DEFS, events, { limit: 7 });
  });

  test('the recomputation exercised every reducer, keyed and global, and dead letters', () => {
    const want = Object.fromEntries(ALL_DEFS.map((d) => [d.name, recompute(d, events)]));
    for (const name of ['cost', 'cost-total', 'min-amount', 'max-amount', 'models', 'weird-set', 'user-max-cost']) {
      assert.ok(want[name].dead.length > 0, `${name} has dead letters`);
    }
    for (const name of ['prefs', 'per-type', 'order-status', 'by-region', 'region-merge', 'first-tag', 'min-amount', 'user-max-cost']) {
      assert.ok(want[name].states.size >= 2, `${name} has several keys`);
    }
    assert.equal(want['weird-set'].states.get('shop.events').state.filter((v) => isObject(v) && v.x === 1).length, 1,
      '{x:1,y:[1,2]} in either key order is one member of the set');
  });

  test('after more live publishes the states still agree (projections follow live)', async () => {
    await publishRandom(A, SEED + 3, 300, 2);
    events = await ndjsonAll(A);
    await verifyAll(s, A, 'default', ALL_DEFS, events);
  });

  test('reset rebuilds every projection from history to the same state, without duplicate dead letters', async () => {
    for (const def of ALL_DEFS) {
      const r = h.assertStatus(await A.post(`/v1/projections/${def.name}/reset`), 200);
      assert.equal(r.name, def.name);
      assert.equal(r.status, 'catching_up');
      assert.equal(r.position, 0);
    }
    await verifyAll(s, A, 'default', ALL_DEFS, events, { limit: 1000 });
  });

  test('reset while events are being published: still exact', async () => {
    const publishing = publishRandom(A, SEED + 4, 600, 2);
    await h.sleep(50);
    for (const name of ['cost', 'per-type', 'models']) h.assertStatus(await A.post(`/v1/projections/${name}/reset`), 200);
    await publishing;
    events = await ndjsonAll(A);
    await verifyAll(s, A, 'default', ALL_DEFS, events);
  });

  test("tenant B's projection of the same name sees only B's events", async () => {
    const def = { name: 'per-type', key: '/type', reduce: 'count' };
    h.assertStatus(await B.post('/v1/projections', def), 201);
    await pub(B, { type: 'tenantb.only', stream: 'b.events', data: {} });
    const bEvents = await ndjsonAll(Bread);
    assert.ok(bEvents.length > 100 && bEvents.every((e) => e.tenant_id === 'tenant-b'));
    await verify(s, Bread, 'tenant-b', def, bEvents);
    const cost = { name: 'cost', filter: { types: ['ai.cost'] }, key: '/data/user_id', reduce: 'sum', path: '/data/cost_usd' };
    h.assertStatus(await B.post('/v1/projections', cost), 201);
    await verify(s, Bread, 'tenant-b', cost, bEvents);
    // and A's are unchanged by B's events
    h.assertProblem(await A.get('/v1/projections/per-type/state?key=tenantb.only'), 404, 'not_found');
  });
});

// ---------------------------------------------------------------- routes

describe('POST /v1/projections', () => {
  test('answers 201 with the definition and status; GET list and GET one show it', async () => {
    const def = { name: 'route.one_2', filter: { streams: ['x.events'], types: ['x.*', 'y.z'] }, key: '/data/id', reduce: 'latest', path: '/data/v' };
    const created = h.assertStatus(await A.post('/v1/projections', def), 201);
    for (const [k, v] of Object.entries(def)) assert.deepEqual(created[k], v, k);
    assert.ok(['catching_up', 'live'].includes(created.status));
    assert.equal(created.error, null);
    const one = await waitLive(A, def.name, 0);
    for (const [k, v] of Object.entries(def)) assert.deepEqual(one[k], v, k);
    assert.equal(one.lag >= 0, true);
    const list = h.assertStatus(await A.get('/v1/projections'), 200).projections;
    const names = list.map((p) => p.name);
    assert.deepEqual(names, [...names].sort(), 'sorted by name');
    assert.ok(names.includes(def.name));
    for (const p of list) assert.ok(['catching_up', 'live', 'failed'].includes(p.status) && typeof p.position === 'number' && typeof p.lag === 'number');
  });

  test('a name that exists: 409 conflict', async () => {
    h.assertStatus(await A.post('/v1/projections', { name: 'dup', reduce: 'count' }), 201);
    h.assertProblem(await A.post('/v1/projections', { name: 'dup', reduce: 'sum', path: '/data/x' }), 409, 'conflict');
    assert.equal((await getProjection(A, 'dup')).reduce, 'count', 'the first definition stays');
  });

  test('invalid definitions: 400 invalid_request naming each field; bad JSON 400; wrong media type 415', async () => {
    const cases = [
      [{ reduce: 'count' }, '/name'],
      [{ name: 'Upper', reduce: 'count' }, '/name'],
      [{ name: '-dash', reduce: 'count' }, '/name'],
      [{ name: 'x'.repeat(65), reduce: 'count' }, '/name'],
      [{ name: 'a b', reduce: 'count' }, '/name'],
      [{ name: 'ok1' }, '/reduce'],
      [{ name: 'ok1', reduce: 'avg' }, '/reduce'],
      [{ name: 'ok1', reduce: 'sum' }, '/path'],
      [{ name: 'ok1', reduce: 'min' }, '/path'],
      [{ name: 'ok1', reduce: 'max', path: 'data/x' }, '/path'],
      [{ name: 'ok1', reduce: 'count', key: 'data/user_id' }, '/key'],
      [{ name: 'ok1', reduce: 'count', key: '/nope' }, '/key'],
      [{ name: 'ok1', reduce: 'count', key: 5 }, '/key'],
      [{ name: 'ok1', reduce: 'count', filter: 'x' }, '/filter'],
      [{ name: 'ok1', reduce: 'count', filter: { types: 'a.b' } }, '/filter/types'],
      [{ name: 'ok1', reduce: 'count', filter: { types: ['Not A Type'] } }, '/filter/types'],
      [{ name: 'ok1', reduce: 'count', filter: { streams: ['bad stream!'] } }, '/filter/streams'],
      [{ name: 'ok1', reduce: 'count', filter: { keys: ['a'] } }, '/filter/keys'],
      [{ name: 'ok1', reduce: 'count', extra: true }, '/extra'],
    ];
    for (const [body, path] of cases) {
      const p = h.assertProblem(await A.post('/v1/projections', body), 400, 'invalid_request');
      assert.ok(Array.isArray(p.errors) && p.errors.some((e) => e.path === path), `${JSON.stringify(body)} → an error at ${path}: ${JSON.stringify(p.errors)}`);
    }
    const many = h.assertProblem(await A.post('/v1/projections', { name: 'BAD', reduce: 'avg', key: 'x' }), 400, 'invalid_request');
    assert.ok(many.errors.length >= 3, 'every violation, not the first');
    h.assertProblem(await A.request('POST', '/v1/projections', { body: '{"name":', headers: { 'Content-Type': 'application/json' } }), 400, 'invalid_json');
    h.assertProblem(await A.request('POST', '/v1/projections', { body: 'name=x', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } }), 415, 'unsupported_media_type');
    h.assertProblem(await A.get('/v1/projections/ok1'), 404, 'not_found');
  });
});

describe('GET /v1/projections/{name}/state', () => {
  before(async () => {
    h.assertStatus(await A.post('/v1/projections', { name: 'rw-count', filter: { types: ['rw.*'] }, key: '/key', reduce: 'count' }), 201);
    h.assertStatus(await A.post('/v1/projections', { name: 'rw-global', filter: { types: ['rw.*'] }, reduce: 'count' }), 201);
  });

  test('read your writes: min_position answers once the projection applied that position', async () => {
    for (let i = 0; i < 20; i++) {
      const ack = (await pub(A, { type: 'rw.written', stream: 'rw.events', key: 'rw-1', data: { i } }))[0];
      const res = h.assertStatus(await A.get(`/v1/projections/rw-count/state?key=rw-1&min_position=${ack.position}&timeout_ms=10000`), 200);
      assert.equal(res.state, i + 1, 'the write just made is in the state');
      assert.equal(res.position, ack.position);
      assert.ok(res.projection_position >= ack.position);
      assert.equal(res.key, 'rw-1');
    }
  });

  test('min_position waits for a write that arrives during the wait', async () => {
    const info = h.assertStatus(await A.get('/v1/info'), 200);
    const waiting = A.get(`/v1/projections/rw-count/state?key=rw-2&min_position=${info.head_position + 1}&timeout_ms=15000`);
    await h.sleep(300);
    const ack = (await pub(A, { type: 'rw.written', stream: 'rw.events', key: 'rw-2', data: {} }))[0];
    const res = await waiting;
    h.assertStatus(res, 200);
    assert.equal(res.body.state, 1);
    assert.equal(res.body.position, ack.position);
  });

  test('min_position not reached within timeout_ms: 409 conflict with Retry-After, after about timeout_ms', async () => {
    const t0 = Date.now();
    const res = await A.get('/v1/projections/rw-count/state?key=rw-1&min_position=999999999&timeout_ms=400');
    const took = Date.now() - t0;
    h.assertProblem(res, 409, 'conflict');
    assert.ok(res.headers.get('retry-after'), 'Retry-After');
    assert.ok(took >= 350 && took < 5000, `answered after ${took} ms`);
  });

  test('read your writes when your last write is not one the projection matches', async () => {
    const mine = (await pub(A, { type: 'rw.written', stream: 'rw.events', key: 'rw-3', data: {} }))[0];
    const other = (await pub(A, { type: 'unrelated.thing', stream: 'rw.events', data: {} }))[0];
    // The projection has applied everything up to `other` (it does not match): no wait needed.
    const res = await A.get(`/v1/projections/rw-count/state?key=rw-3&min_position=${other.position}&timeout_ms=3000`);
    h.assertStatus(res, 200);
    assert.equal(res.body.state, 1);
    assert.equal(res.body.position, mine.position);
  });

  test('a live projection that has applied everything it matches reports lag 0', async () => {
    await pub(A, { type: 'rw.written', stream: 'rw.events', key: 'rw-4', data: {} });
    await pub(A, { type: 'unrelated.thing', stream: 'rw.events', data: {} });
    await pub(B, { type: 'rw.written', stream: 'rw.events', key: 'rw-4', data: {} }); // another tenant's
    await h.sleep(1000);
    const p = await getProjection(A, 'rw-count');
    assert.equal(p.status, 'live');
    assert.equal(p.lag, 0, `lag of a caught-up projection: ${JSON.stringify(p)}`);
  });

  test('a global projection: ?key= reads the one state, and the listing includes it (key "")', async () => {
    await waitLive(A, 'rw-global', 1);
    const one = h.assertStatus(await A.get('/v1/projections/rw-global/state?key='), 200);
    assert.equal(one.key, '');
    assert.ok(one.state >= 20);
    const list = h.assertStatus(await A.get('/v1/projections/rw-global/state'), 200);
    assert.deepEqual(list.states.map((x) => x.key), [''], `the listing of a global projection: ${JSON.stringify(list)}`);
    assert.equal(list.states[0].state, one.state);
  });

  test('paging by key: limit, after, next_after, has_more; position is the projection position', async () => {
    const keys = Array.from({ length: 23 }, (_, i) => `pg-${String(i).padStart(2, '0')}`);
    const acks = await pub(A, keys.map((key) => ({ type: 'rw.paged', stream: 'rw.events', key, data: {} })));
    await waitLive(A, 'rw-count', acks[acks.length - 1].position);
    const seen = [];
    let after;
    let pages = 0;
    for (;;) {
      const q = new URLSearchParams({ limit: '5' });
      if (after !== undefined) q.set('after', after);
      const res = h.assertStatus(await A.get('/v1/projections/rw-count/state?' + q), 200);
      pages++;
      assert.ok(res.states.length <= 5);
      assert.ok(res.position >= acks[acks.length - 1].position);
      seen.push(...res.states.map((x) => x.key));
      if (!res.has_more) break;
      assert.equal(res.states.length, 5);
      assert.equal(res.next_after, res.states[4].key);
      after = res.next_after;
    }
    assert.equal(new Set(seen).size, seen.length, 'no key twice');
    for (const k of keys) assert.ok(seen.includes(k), `${k} listed`);
    const deflt = h.assertStatus(await A.get('/v1/projections/rw-count/state'), 200);
    assert.equal(deflt.states.length, Math.min(100, seen.length), 'limit defaults to 100');
    const last = h.assertStatus(await A.get(`/v1/projections/rw-count/state?after=${enc(seen[seen.length - 1])}`), 200);
    assert.deepEqual(last.states, []);
    assert.equal(last.has_more, false);
    assert.ok(pages >= 5);
  });

  test('404 for an unknown projection or key; 400 invalid_query for bad parameters', async () => {
    h.assertProblem(await A.get('/v1/projections/no-such/state'), 404, 'not_found');
    h.assertProblem(await A.get('/v1/projections/no-such/state?key=x'), 404, 'not_found');
    h.assertProblem(await A.get('/v1/projections/rw-count/state?key=nobody'), 404, 'not_found');
    h.assertProblem(await A.get('/v1/projections/no-such'), 404, 'not_found');
    for (const q of ['limit=0', 'limit=1001', 'limit=x', 'min_position=-1', 'min_position=abc', 'timeout_ms=60001', 'timeout_ms=-1']) {
      h.assertProblem(await A.get('/v1/projections/rw-count/state?' + q), 400, 'invalid_query');
    }
  });
});

describe('dead letters', () => {
  test("a value the reducer cannot apply is a dead letter with its reason; the projection goes on", async () => {
    h.assertStatus(await A.post('/v1/projections', { name: 'dl-sum', filter: { types: ['dl.cost'] }, key: '/data/u', reduce: 'sum', path: '/data/v' }), 201);
    h.assertStatus(await A.post('/v1/projections', { name: 'dl-merge', filter: { types: ['dl.cost'] }, key: '/data/u', reduce: 'merge', path: '/data/v' }), 201);
    const acks = await pub(A, [
      { type: 'dl.cost', stream: 'dl.events', data: { u: 'a', v: 2 } },
      { type: 'dl.cost', stream: 'dl.events', data: { u: 'a', v: 'three' } },
      { type: 'dl.cost', stream: 'dl.events', data: { u: 'a', v: { n: 1 } } },
      { type: 'dl.cost', stream: 'dl.events', data: { u: 'a' } },
      { type: 'dl.cost', stream: 'dl.events', data: { u: 'a', v: 5.5 } },
      { type: 'dl.cost', stream: 'dl.events', data: { u: 'b', v: null } },
    ]);
    await waitLive(A, 'dl-sum', acks[5].position);
    await waitLive(A, 'dl-merge', acks[5].position);
    const sum = h.assertStatus(await A.get('/v1/projections/dl-sum/state?key=a'), 200);
    assert.equal(sum.state, 7.5);
    assert.equal(sum.position, acks[4].position);
    h.assertProblem(await A.get('/v1/projections/dl-sum/state?key=b'), 404, 'not_found'); // nothing applied to b
    assert.deepEqual((await getProjection(A, 'dl-sum')).status, 'live');
    const rows = h.psql(s.dbUrl, "SELECT event_position || ' ' || event_id || ' ' || stream || ' ' || status || ' ' || jsonb_array_length(errors) FROM dead_letters WHERE source = 'projection:dl-sum' ORDER BY event_position").split('\n');
    assert.deepEqual(rows, [1, 2, 3, 5].map((i) => `${acks[i].position} ${acks[i].id} dl.events open 1`));
    assert.deepEqual(deadLetters(s.dbUrl, 'default', 'dl-sum').map((d) => d.reason), Array(4).fill('expected a number at the path'));
    const merge = h.assertStatus(await A.get('/v1/projections/dl-merge/state?key=a'), 200);
    assert.deepEqual(merge.state, { n: 1 });
    assert.deepEqual(deadLetters(s.dbUrl, 'default', 'dl-merge').map((d) => d.position), [0, 1, 3, 4, 5].map((i) => acks[i].position));
  });
});

describe('reducer edge cases', () => {
  test('latest: an event without a value at the path makes the state null; the projection stays live', async () => {
    h.assertStatus(await A.post('/v1/projections', { name: 'edge-latest', filter: { types: ['edge.status'] }, key: '/key', reduce: 'latest', path: '/data/status' }), 201);
    const acks = await pub(A, [
      { type: 'edge.status', stream: 'edge.events', key: 'o1', data: { status: 'placed' } },
      { type: 'edge.status', stream: 'edge.events', key: 'o1', data: {} },
      { type: 'edge.status', stream: 'edge.events', key: 'o2', data: { status: null } },
      { type: 'edge.status', stream: 'edge.events', key: 'o3', data: { status: { code: 7 } } },
    ]);
    await waitLive(A, 'edge-latest', acks[3].position, 15000);
    assert.equal(h.assertStatus(await A.get('/v1/projections/edge-latest/state?key=o1'), 200).state, null);
    assert.equal(h.assertStatus(await A.get('/v1/projections/edge-latest/state?key=o2'), 200).state, null);
    assert.deepEqual(h.assertStatus(await A.get('/v1/projections/edge-latest/state?key=o3'), 200).state, { code: 7 });
  });

  test('set keeps distinct values in first-seen order (objects equal whatever their key order); sum of integers stays an integer', async () => {
    h.assertStatus(await A.post('/v1/projections', { name: 'edge-set', filter: { types: ['edge.tag'] }, reduce: 'set', path: '/data/t' }), 201);
    h.assertStatus(await A.post('/v1/projections', { name: 'edge-sum', filter: { types: ['edge.tag'] }, reduce: 'sum', path: '/data/n' }), 201);
    const vals = ['a', 1, 'a', { x: 1, y: 2 }, { y: 2, x: 1 }, [1, 2], true, null, 1, [2, 1], 'b'];
    const acks = await pub(A, vals.map((t, i) => ({ type: 'edge.tag', stream: 'edge.events', data: { t, n: 1000000000 * (i + 1) } })));
    await waitLive(A, 'edge-set', acks[acks.length - 1].position, 15000);
    await waitLive(A, 'edge-sum', acks[acks.length - 1].position, 15000);
    const set = h.assertStatus(await A.get('/v1/projections/edge-set/state?key='), 200);
    assert.deepEqual(set.state, ['a', 1, { x: 1, y: 2 }, [1, 2], true, null, [2, 1], 'b']);
    const sum = await A.get('/v1/projections/edge-sum/state?key=');
    h.assertStatus(sum, 200);
    assert.match(sum.text, /"state":\s*66000000000[,}]/, 'an exact integer, not a float');
  });

  test('sum, min, max read numbers as JSON does: exact 64-bit integers, doubles; a quoted number is a dead letter', async () => {
    for (const reduce of ['sum', 'min', 'max'])
      h.assertStatus(await A.post('/v1/projections', { name: `edge-num-${reduce}`, filter: { types: ['edge.num'] }, key: '/data/k', reduce, path: '/data/n' }), 201);
    const values = { int: [-5, 2 ** 53, 7], real: [0.1, -2.5e-7, 0.2, 3], bad: [3, '12', -4] };
    const acks = await pub(A, Object.entries(values).flatMap(([k, ns]) => ns.map((n) => ({ type: 'edge.num', stream: 'edge.events', data: { k, n } }))));
    for (const reduce of ['sum', 'min', 'max']) await waitLive(A, `edge-num-${reduce}`, acks[acks.length - 1].position, 15000);
    const state = async (reduce, k) => h.assertStatus(await A.get(`/v1/projections/edge-num-${reduce}/state?key=${k}`), 200);
    const sumInt = await A.get('/v1/projections/edge-num-sum/state?key=int');
    assert.match(sumInt.text, /"state":\s*9007199254740994[,}]/, 'an exact integer, not a float');
    assert.equal((await state('sum', 'real')).state, 0.1 + -2.5e-7 + 0.2 + 3);
    assert.equal((await state('min', 'real')).state, -2.5e-7);
    assert.equal((await state('max', 'real')).state, 3);
    assert.equal((await state('sum', 'bad')).state, -1);
    assert.equal((await state('min', 'bad')).state, -4);
    assert.equal((await state('max', 'bad')).state, 3);
    for (const reduce of ['sum', 'min', 'max']) // "12", a string
      assert.deepEqual(deadLetters(s.dbUrl, 'default', `edge-num-${reduce}`), [{ position: acks[8].position, reason: 'expected a number at the path' }]);
  });
});

describe('the set limit', () => {
  test('a set holds at most 10,000 values; the next new value is a dead letter, a known one is not', async () => {
    h.assertStatus(await A.post('/v1/projections', { name: 'edge-full', filter: { types: ['edge.full'] }, reduce: 'set', path: '/data/v' }), 201);
    for (let b = 0; b < 10; b++) await pub(A, Array.from({ length: 1000 }, (_, i) => ({ type: 'edge.full', stream: 'edge.events', data: { v: b * 1000 + i } })));
    const extra = await pub(A, [{ type: 'edge.full', stream: 'edge.events', data: { v: 'one too many' } }, { type: 'edge.full', stream: 'edge.events', data: { v: 5 } }]);
    await waitLive(A, 'edge-full', extra[1].position, 60000);
    const st = h.assertStatus(await A.get('/v1/projections/edge-full/state?key='), 200);
    assert.equal(st.state.length, 10000);
    assert.equal(st.position, extra[1].position, 'a value already in the set applies');
    const dead = deadLetters(s.dbUrl, 'default', 'edge-full');
    assert.deepEqual(dead.map((d) => d.position), [extra[0].position]);
    assert.match(dead[0].reason, /full/);
  });
});

describe('DELETE /v1/projections/{name} and POST …/reset', () => {
  test('delete: 204, then 404 everywhere, the states are gone; the name can be defined again from scratch', async () => {
    h.assertStatus(await A.post('/v1/projections', { name: 'gone', filter: { types: ['gone.x'] }, key: '/key', reduce: 'count' }), 201);
    const acks = await pub(A, [{ type: 'gone.x', key: 'k', stream: 'g.events', data: { v: 1 } }, { type: 'gone.x', key: 'k', stream: 'g.events', data: { v: 2 } }]);
    await waitLive(A, 'gone', acks[1].position);
    assert.equal(h.assertStatus(await A.get('/v1/projections/gone/state?key=k'), 200).state, 2);
    const del = await A.del('/v1/projections/gone');
    assert.equal(del.status, 204, h.describeRes(del));
    h.assertProblem(await A.get('/v1/projections/gone'), 404, 'not_found');
    h.assertProblem(await A.get('/v1/projections/gone/state?key=k'), 404, 'not_found');
    h.assertProblem(await A.post('/v1/projections/gone/reset'), 404, 'not_found');
    h.assertProblem(await A.del('/v1/projections/gone'), 404, 'not_found');
    assert.ok(!h.assertStatus(await A.get('/v1/projections'), 200).projections.some((p) => p.name === 'gone'));
    assert.equal(h.psql(s.dbUrl, "SELECT count(*) FROM projection_state WHERE name = 'gone'"), '0');
    h.assertStatus(await A.post('/v1/projections', { name: 'gone', filter: { types: ['gone.x'] }, key: '/key', reduce: 'sum', path: '/data/v' }), 201);
    await waitLive(A, 'gone', acks[1].position);
    assert.equal(h.assertStatus(await A.get('/v1/projections/gone/state?key=k'), 200).state, 3);
  });

  test('reset of an unknown projection: 404', async () => {
    h.assertProblem(await A.post('/v1/projections/no-such/reset'), 404, 'not_found');
  });
});

describe('scopes and tenant isolation of every route', () => {
  test('401 without a token; 403 without admin for define, reset, delete; read suffices for reading', async () => {
    h.assertStatus(await A.post('/v1/projections', { name: 'scoped', reduce: 'count' }), 201);
    const reader = s.client((await h.createKey(s, 'default', ['read', 'publish'], 'reader')).token);
    const nothing = s.client((await h.createKey(s, 'default', ['publish'], 'pub')).token);
    for (const [m, p, body] of [['POST', '/v1/projections', { name: 'x1', reduce: 'count' }], ['GET', '/v1/projections'],
      ['GET', '/v1/projections/scoped'], ['GET', '/v1/projections/scoped/state'], ['POST', '/v1/projections/scoped/reset'],
      ['DELETE', '/v1/projections/scoped']]) {
      h.assertProblem(await A.request(m, p, { json: body, token: null }), 401, 'unauthenticated');
    }
    h.assertProblem(await reader.post('/v1/projections', { name: 'x1', reduce: 'count' }), 403, 'forbidden');
    h.assertProblem(await reader.post('/v1/projections/scoped/reset'), 403, 'forbidden');
    h.assertProblem(await reader.del('/v1/projections/scoped'), 403, 'forbidden');
    h.assertStatus(await reader.get('/v1/projections'), 200);
    h.assertStatus(await reader.get('/v1/projections/scoped'), 200);
    h.assertProblem(await nothing.get('/v1/projections'), 403, 'forbidden');
    h.assertProblem(await nothing.get('/v1/projections/scoped/state'), 403, 'forbidden');
    h.assertStatus(await A.get('/v1/projections/scoped'), 200);
  });

  test("tenant B sees, reads, resets and deletes none of A's projections", async () => {
    const bList = h.assertStatus(await Bread.get('/v1/projections'), 200).projections.map((p) => p.name);
    const aList = h.assertStatus(await A.get('/v1/projections'), 200).projections.map((p) => p.name);
    for (const name of aList) {
      if (bList.includes(name)) continue; // B defined one of the same name (see above): its own
      h.assertProblem(await Bread.get('/v1/projections/' + name), 404, 'not_found');
      h.assertProblem(await Bread.get(`/v1/projections/${name}/state`), 404, 'not_found');
      h.assertProblem(await Bread.get(`/v1/projections/${name}/state?key=u1`), 404, 'not_found');
      h.assertProblem(await B.post(`/v1/projections/${name}/reset`), 404, 'not_found');
      h.assertProblem(await B.del('/v1/projections/' + name), 404, 'not_found');
    }
    assert.ok(aList.includes('scoped') && !bList.includes('scoped'));
    const still = await getProjection(A, 'scoped');
    assert.equal(still.name, 'scoped', "B's delete did not touch A's projection");
    // A's state of a key B also has is A's own; B reading the same name reads B's
    if (bList.includes('cost')) {
      const bEvents = await ndjsonAll(Bread);
      const want = recompute({ filter: { types: ['ai.cost'] }, key: '/data/user_id', reduce: 'sum', path: '/data/cost_usd' }, bEvents);
      for (const [k, v] of want.states) {
        assert.deepEqual(h.assertStatus(await Bread.get('/v1/projections/cost/state?key=' + k), 200).state, v.state);
      }
    }
  });
});

// ---------------------------------------------------------------- the README's projections

describe("the README's projections (seed patterns)", () => {
  let r;
  let c;
  before(async () => {
    r = await h.startSluice({ name: 'readme', env: { SLUICE_REDIS_PREFIX: newPrefix('itq'), SLUICE_ALLOW_UNKNOWN_TYPES: '0' } });
    c = r.client();
  });
  after(async () => { if (r) await r.stop().finally(() => r.cleanup()); });

  const prefs = (user, changes, old = {}) => ({ type: 'user.preferences.updated', user_id: user,
    data: { user_id: user, changed_fields: Object.keys(changes), old_values: old, new_values: changes } });
  // The catalog's ai.content.generation.completed carries cost_usd but no user_id: the
  // producer adds data.user_id (the schema allows more properties), as the README's
  // projection keys by /data/user_id. The request carries user_id but no cost.
  const requested = (user) => ({ type: 'ai.content.generation.requested', data: { request_id: 'req-' + h.rand(4), user_id: user,
    contextual_core_id: 'core-7f3a9c', content_type: 'social_post', prompt_template: 'Write about {{topic}}', ai_provider: 'anthropic', max_tokens: 500 } });
  const completed = (user, cost) => ({ type: 'ai.content.generation.completed', data: { user_id: user,
    request_id: 'req-' + h.rand(4), content_draft_id: 'd-' + h.rand(2), generated_content: 'text', ai_provider: 'anthropic',
    model_used: 'claude-3-5-sonnet', tokens_used: 412, generation_time_ms: 6120, cost_usd: cost } });
  // As README.md "Projections and replays" defines them.
  const defs = [
    { name: 'user-preferences', filter: { types: ['user.preferences.updated'] }, key: '/data/user_id', reduce: 'merge', path: '/data/new_values' },
    { name: 'ai-cost', filter: { types: ['ai.*'] }, key: '/data/user_id', reduce: 'sum', path: '/data/cost_usd' },
    { name: 'events-per-type', key: '/type', reduce: 'count' },
  ];

  test('user preferences (merge of new_values by user_id), AI cost per user (sum of cost_usd), events per type (count by /type)', async () => {
    await pub(c, [prefs('alice', { theme: 'dark', language: 'en' }), requested('alice'), completed('alice', 0.0063)]);
    for (const d of defs) h.assertStatus(await c.post('/v1/projections', d), 201);
    await pub(c, [prefs('alice', { language: 'fr', timezone: 'Europe/Paris' }, { language: 'en' }), prefs('bob', { notifications: { email: false } }),
      requested('alice'), completed('alice', 0.0125), requested('bob'), completed('bob', 1.5)]);
    const last = (await pub(c, prefs('alice', { theme: 'light' }, { theme: 'dark' })))[0];

    const p = h.assertStatus(await c.get(`/v1/projections/user-preferences/state?key=alice&min_position=${last.position}&timeout_ms=10000`), 200);
    assert.deepEqual(p.state, { theme: 'light', language: 'fr', timezone: 'Europe/Paris' });
    assert.equal(p.position, last.position);
    assert.deepEqual(h.assertStatus(await c.get('/v1/projections/user-preferences/state?key=bob'), 200).state, { notifications: { email: false } });

    const events = await ndjsonAll(c);
    assert.equal(events.length, 10);
    for (const d of defs) await verify(r, c, 'default', d, events);
    assert.equal(h.assertStatus(await c.get('/v1/projections/ai-cost/state?key=alice'), 200).state, 0.0063 + 0.0125);
    assert.equal(h.assertStatus(await c.get('/v1/projections/ai-cost/state?key=bob'), 200).state, 1.5);
    // ai.* also matches the requests, which carry no cost: each is a dead letter.
    assert.deepEqual(deadLetters(r.dbUrl, 'default', 'ai-cost').map((d) => d.position),
      events.filter((e) => e.type === 'ai.content.generation.requested').map((e) => e.position));
    const perType = await allStates(c, 'events-per-type');
    assert.deepEqual(Object.fromEntries([...perType].map(([k, v]) => [k, v.state])),
      { 'user.preferences.updated': 4, 'ai.content.generation.requested': 3, 'ai.content.generation.completed': 3 });
  });
});

// ---------------------------------------------------------------- crashes

describe('kill -9 during the catch-up of a large history, and failover', () => {
  const N = 50000;
  const KEYS = 37;
  const defs = [
    { name: 'big-count', key: '/data/k', reduce: 'count' },
    { name: 'big-total', reduce: 'count' },
    { name: 'big-sum', key: '/data/k', reduce: 'sum', path: '/data/n' },
  ];
  const want = { count: new Map(), sum: new Map() };
  const kprefix = newPrefix('itk'); // one for every instance on this database, as in production
  let db;
  const cleanups = [];
  before(async () => { db = await h.freshDatabase(); });
  after(async () => {
    for (const f of cleanups.reverse()) await f();
    if (db) db.drop();
  });

  async function start(name) {
    const x = await h.startSluice({ name, dbUrl: db.url, env: { SLUICE_REDIS_PREFIX: kprefix } });
    cleanups.push(() => x.cleanup());
    return x;
  }
  // What the log holds now, by SQL: {total, count: Map k → n, sum: Map k → Σ n}.
  const truth = () => {
    const rows = h.psql(db.url, "SELECT k || '|' || count(*) || '|' || sum(n) FROM (SELECT data->>'k' AS k, (data->>'n')::int AS n FROM events) e GROUP BY k").split('\n');
    const t = { total: 0, count: new Map(), sum: new Map() };
    for (const r of rows) {
      const [k, n, sm] = r.split('|');
      t.count.set(k, Number(n));
      t.sum.set(k, Number(sm));
      t.total += Number(n);
    }
    return t;
  };
  const checkpoints = () => Object.fromEntries(h.psql(db.url, "SELECT name || '=' || position FROM projections ORDER BY name").split('\n').map((l) => l.split('=')).map(([k, v]) => [k, Number(v)]));

  async function verifyExact(client) {
    for (const d of defs) await waitLive(client, d.name, N);
    const count = await allStates(client, 'big-count', 1000);
    const sum = await allStates(client, 'big-sum', 1000);
    const total = h.assertStatus(await client.get('/v1/projections/big-total/state?key='), 200);
    assert.equal(total.state, N, 'global count = exactly the number of events');
    assert.equal(count.size, KEYS);
    for (const [k, v] of want.count) assert.equal(count.get(k).state, v, `count of ${k}`);
    for (const [k, v] of want.sum) assert.equal(sum.get(k).state, v, `sum of ${k}`);
  }

  test(`kill -9 while catching up on ${N} events, restart: the counts are exact`, async () => {
    let s1 = await start('kill-1');
    const c1 = s1.client();
    for (let b = 0; b < N / 1000; b++) {
      const envs = Array.from({ length: 1000 }, (_, i) => {
        const n = b * 1000 + i;
        const k = 'k' + (n % KEYS);
        want.count.set(k, (want.count.get(k) || 0) + 1);
        want.sum.set(k, (want.sum.get(k) || 0) + (n % 10));
        return { type: 'big.loaded', stream: 'big.events', data: { k, n: n % 10, pad: 'x'.repeat(40) } };
      });
      await pub(c1, envs);
    }
    let killedMidway = false;
    for (let attempt = 0; attempt < 5 && !killedMidway; attempt++) {
      const c = s1.client();
      if (attempt === 0) for (const d of defs) h.assertStatus(await c.post('/v1/projections', d), 201);
      else for (const d of defs) h.assertStatus(await c.post(`/v1/projections/${d.name}/reset`), 200);
      // Kill as soon as the first projection has written a checkpoint but not finished.
      await h.waitFor(async () => {
        const list = h.assertStatus(await c.get('/v1/projections'), 200).projections;
        return list.some((p) => p.position > 0);
      }, { timeout: CATCH_UP_MS, interval: 2, what: 'a first checkpoint' });
      await s1.kill9();
      const cp = checkpoints();
      killedMidway = Object.values(cp).some((p) => p > 0 && p < N);
      s1 = await start('kill-' + (attempt + 2));
      if (!killedMidway) await verifyExact(s1.client());
    }
    assert.ok(killedMidway, 'sluice was killed while a projection was still catching up');
    await verifyExact(s1.client());
    await s1.stop();
  });

  test('failover: the projections run on one instance; when it is killed the other takes over, exactly once', async () => {
    const x1 = await start('fail-1');
    const x2 = await start('fail-2');
    const leaderOf = () => [x1, x2].filter((x) => x.logs.some((l) => /this instance runs the projections/.test(l)));
    const leaders = await h.waitFor(() => leaderOf().length === 1 && leaderOf(), { timeout: 20000, what: 'one projections leader' });
    const leader = leaders[0];
    const other = leader === x1 ? x2 : x1;
    // Reset all three from the follower, then kill the leader mid-way.
    for (const d of defs) h.assertStatus(await other.client().post(`/v1/projections/${d.name}/reset`), 200);
    await h.waitFor(async () => h.assertStatus(await other.client().get('/v1/projections'), 200).projections.some((p) => p.position > 0),
      { timeout: CATCH_UP_MS, interval: 2, what: 'a first checkpoint' });
    await leader.kill9();
    await h.waitFor(() => other.logs.some((l) => /this instance runs the projections/.test(l)), { timeout: 30000, what: 'the survivor to take over' });
    // more events through the survivor while it catches up
    const c = other.client();
    for (let b = 0; b < 3; b++) {
      await pub(c, Array.from({ length: 1000 }, (_, i) => {
        const n = i;
        const k = 'k' + (n % KEYS);
        want.count.set(k, want.count.get(k) + 1);
        want.sum.set(k, want.sum.get(k) + (n % 10));
        return { type: 'big.loaded', stream: 'big.events', data: { k, n: n % 10 } };
      }));
    }
    const total = N + 3000;
    for (const d of defs) await waitLive(c, d.name, total);
    const count = await allStates(c, 'big-count', 1000);
    for (const [k, v] of want.count) assert.equal(count.get(k).state, v, `count of ${k}`);
    const sum = await allStates(c, 'big-sum', 1000);
    for (const [k, v] of want.sum) assert.equal(sum.get(k).state, v, `sum of ${k}`);
    assert.equal(h.assertStatus(await c.get('/v1/projections/big-total/state?key='), 200).state, total);
    await other.stop();
  });

  test('reset while a batch is being applied: the projection starts over, never ends failed, and counts exactly', async () => {
    const x = await start('reset-storm');
    const c = x.client();
    const t = truth();
    const total = t.total;
    h.assertStatus(await c.post('/v1/projections', { name: 'storm', key: '/data/k', reduce: 'count' }), 201);
    // Reset each time the catch-up is under way (a checkpoint written, more to do).
    const seen = [];
    for (let i = 0; i < 3; i++) {
      const x1 = await h.waitFor(async () => {
        const x2 = await getProjection(c, 'storm');
        return (x2.status === 'failed' || (x2.position > 0 && x2.position < total)) && x2;
      }, { timeout: CATCH_UP_MS, interval: 2, what: 'storm catching up' });
      seen.push(`${x1.status}@${x1.position}`);
      if (x1.status === 'failed') break;
      h.assertStatus(await c.post('/v1/projections/storm/reset'), 200);
    }
    const p = await h.waitFor(async () => {
      const x1 = await getProjection(c, 'storm');
      return (x1.status === 'failed' || (x1.status === 'live' && x1.position >= total)) && x1;
    }, { timeout: CATCH_UP_MS, what: 'storm live or failed' });
    assert.equal(p.status, 'live', `after resets during its batches (seen ${seen.join(', ')}): ${JSON.stringify(p)}`);
    const count = await allStates(c, 'storm', 1000);
    for (const [k, v] of t.count) assert.equal(count.get(k).state, v, `count of ${k}`);
    await x.stop();
  });

  test('delete and define again under the same name while a batch is in flight: only the new definition counts', async () => {
    const x = await start('redefine');
    const c = x.client();
    const t = truth();
    const total = t.total;
    const mismatches = [];
    for (let i = 0; i < 6; i++) {
      const name = `redef-${i}`;
      h.assertStatus(await c.post('/v1/projections', { name, key: '/data/k', reduce: 'count' }), 201);
      await h.sleep(10 + 15 * i);
      assert.equal((await c.del('/v1/projections/' + name)).status, 204);
      h.assertStatus(await c.post('/v1/projections', { name, key: '/data/k', reduce: 'sum', path: '/data/n' }), 201);
      try {
        await waitLive(c, name, total);
      } catch (e) {
        mismatches.push(`${name}: ${e.message}`);
        continue;
      }
      const sum = await allStates(c, name, 1000);
      const bad = [...t.sum].filter(([k, v]) => !sum.has(k) || sum.get(k).state !== v);
      if (bad.length) mismatches.push(`${name}: ${bad.length} keys differ, e.g. ${bad[0][0]} = ${JSON.stringify(sum.get(bad[0][0]))}, expected ${bad[0][1]}`);
    }
    assert.deepEqual(mismatches, []);
    await x.stop();
  });
});

// ---------------------------------------------------------------- idle cost

describe('with no projection defined, commits cost the projections runner nothing', () => {
  // The runner LISTENs to commits only while a projection is defined (definitions come on a
  // channel of their own). Before, every commit woke it and it read the projections table
  // again: one query per commit under load. Counted here from pg_stat_user_tables (the
  // runner's own backend flushes its counters at least once a second while it polls).
  let db;
  let x;
  before(async () => { db = await h.freshDatabase(); });
  after(async () => {
    if (x) await x.cleanup();
    if (db) db.drop();
  });

  test('300 commits: the projections table is read about every 200 ms, not once per commit; a definition still wakes the runner', async () => {
    x = await h.startSluice({ name: 'idle-runner', dbUrl: db.url, env: { SLUICE_REDIS_PREFIX: newPrefix('iti') } });
    const c = x.client();
    const reads = () => Number(h.psql(db.url,
      "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'projections'"));
    await h.waitFor(() => reads() > 0, { timeout: 20000, what: 'the projections runner polling' });
    await h.sleep(1500);
    const r0 = reads();
    const t0 = Date.now();
    const COMMITS = 300;
    for (let i = 0; i < COMMITS; i++) // one at a time: each request is a commit of its own
      await pub(c, { type: 'idle.written', stream: 'idle.events', data: { i } });
    await h.sleep(2500); // the counters of the last second reach pg_stat
    const r1 = reads();
    const polls = (Date.now() - t0) / 200;
    assert.ok(r1 - r0 <= polls * 1.5 + 10,
      `${r1 - r0} reads of the projections table during ${COMMITS} commits in ${Date.now() - t0} ms (polling alone: ~${Math.round(polls)})`);
    // A definition made now is picked up and applied at once, and so are the commits after it.
    h.assertStatus(await c.post('/v1/projections', { name: 'idle-count', reduce: 'count' }), 201);
    const [last] = await pub(c, { type: 'idle.written', stream: 'idle.events', data: { i: COMMITS } });
    await waitLive(c, 'idle-count', last.position, 30000);
    const st = h.assertStatus(await c.get('/v1/projections/idle-count/state?key='), 200);
    assert.equal(st.state, COMMITS + 1);
    await x.stop();
  });
});
