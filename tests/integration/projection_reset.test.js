'use strict';
// Live projections reset again and again while events flow. Two instances on one database
// take a continuous publish load (singles and batches, through both, plus events the
// projections' filter excludes); the projections run on one of them (the projections
// leader), and resets arrive through both, at random moments, sometimes twice in a row.
// After the flow stops, each projection must be live at the head and its state must equal
// the reducer over every stored event it matches, recomputed here from PostgreSQL (SQL over
// the events table) — key by key, with each key's position (its last matching event) —
// with no dead letters: a reset never loses, doubles or half-applies a batch. Meanwhile
// a projection just reset (position 0, the head thousands ahead) must not report "live".
// Seed: SLUICE_IT_SEED (printed in the test name).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const f = require('./lib/flow');
const { deletePrefix } = require('../lib/redis.js');

const SEED = Number(process.env.SLUICE_IT_SEED || Date.now() % 1000000);
const KEYS = 13;
const RESET_ROUNDS = 16;
const CATCH_UP_MS = 120000;

function prng(seed) { // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FILTER = { types: ['pr.*'] };
const DEFS = [
  { name: 'pr-count', filter: FILTER, key: '/data/k', reduce: 'count' },
  { name: 'pr-sum', filter: FILTER, key: '/data/k', reduce: 'sum', path: '/data/n' },
  { name: 'pr-latest', filter: FILTER, key: '/data/k', reduce: 'latest', path: '/data/n' },
  { name: 'pr-total', filter: FILTER, reduce: 'count' },
  { name: 'pr-max', filter: FILTER, reduce: 'max', path: '/data/n' },
];

// What each projection must hold, from SQL: Map key → {state, position}.
function expected(dbUrl) {
  const q = (sql) => { const o = h.psql(dbUrl, sql); return o ? o.split('\n').map((l) => l.split('|')) : []; };
  const m = "type LIKE 'pr.%'";
  const perKey = q(`SELECT data->>'k', count(*), sum((data->>'n')::bigint), max(position),
                           (array_agg((data->>'n')::bigint ORDER BY position DESC))[1]
                      FROM events WHERE ${m} GROUP BY 1 ORDER BY 1`);
  const [[total, max, last]] = q(`SELECT count(*), max((data->>'n')::bigint), max(position) FROM events WHERE ${m}`);
  const by = (col) => new Map(perKey.map((r) => [r[0], { state: Number(r[col]), position: Number(r[3]) }]));
  return {
    'pr-count': by(1),
    'pr-sum': by(2),
    'pr-latest': by(4),
    // a global projection's position is its last matching event (the reducer applied each)
    'pr-total': new Map([['', { state: Number(total), position: Number(last) }]]),
    'pr-max': new Map([['', { state: Number(max), position: Number(last) }]]),
  };
}

async function serverStates(c, def) {
  const enc = encodeURIComponent;
  if (!def.key) {
    const r = h.assertStatus(await c.get(`/v1/projections/${enc(def.name)}/state?key=`), 200);
    return new Map([['', { state: r.state, position: r.position }]]);
  }
  const out = new Map();
  let after;
  for (let pages = 0; pages < 1000; pages++) {
    const qs = new URLSearchParams({ limit: '5' });
    if (after !== undefined) qs.set('after', after);
    const r = h.assertStatus(await c.get(`/v1/projections/${enc(def.name)}/state?${qs}`), 200);
    for (const s of r.states) {
      assert.ok(!out.has(s.key), `${def.name}: key ${s.key} listed twice`);
      out.set(s.key, { state: s.state, position: s.position });
    }
    if (!r.has_more) return out;
    after = r.next_after;
  }
  assert.fail(`${def.name}: paging did not end`);
}

test(`projections reset while events flow through two instances end equal to the reducer over every stored event (seed ${SEED})`, { timeout: 300000 }, async (t) => {
  const rnd = prng(SEED);
  const prefix = `itpr${h.rand(4)}:`;
  const db = await h.freshDatabase();
  const adminToken = 'adm_' + h.rand(16);
  const env = { SLUICE_REDIS_PREFIX: prefix };
  const handles = [];
  let load = null;
  let watching = false;
  let watcher = null;
  try {
    for (const name of ['pr-a', 'pr-b']) handles.push(await h.startSluice({ name, dbUrl: db.url, adminToken, env }));
    const [A, B] = handles;
    for (const d of DEFS) h.assertStatus(await A.client().post('/v1/projections', d), 201);

    const wrnd = prng(SEED + 1);
    load = f.startLoad({
      writers: 6,
      target: (w) => (w % 2 ? B : A).client(),
      make: (w, n) => {
        const size = wrnd() < 0.4 ? 1 : 1 + Math.floor(wrnd() * 40);
        return Array.from({ length: size }, (_, j) => {
          const noise = wrnd() < 0.1;
          return {
            type: noise ? 'noise.x' : (wrnd() < 0.5 ? 'pr.a' : 'pr.b'),
            data: { tag: `w${w}-${n}-${j}`, k: 'k' + Math.floor(wrnd() * KEYS), n: Math.floor(wrnd() * 1050) - 50 },
          };
        });
      },
    });

    // What the projections report while they are reset: right after a reset a projection
    // is at position 0 and catching up; "live" at position 0 with the head far ahead is a
    // status that lies (a runner pass of the generation before the reset overwriting it).
    const statusLies = [];
    const watchErrors = [];
    watching = true;
    watcher = (async () => {
      while (watching) {
        try {
          const r = await A.client().get('/v1/projections');
          for (const p of h.assertStatus(r, 200).projections) {
            if (p.status === 'live' && p.position === 0 && p.lag > 1000) statusLies.push(`GET /v1/projections: ${JSON.stringify({ name: p.name, status: p.status, position: p.position, lag: p.lag })}`);
          }
        } catch (e) {
          if (watching) watchErrors.push(e.message.split('\n')[0]);
        }
        await h.sleep(100);
      }
    })();

    // Resets at random moments while the load runs, through either instance.
    await f.waitAcked(load, 500, { what: 'the flow before the first reset' });
    const resets = [];
    for (let round = 0; round < RESET_ROUNDS; round++) {
      await h.sleep(50 + Math.floor(rnd() * 500));
      const via = rnd() < 0.5 ? A : B;
      const chosen = DEFS.filter(() => rnd() < 0.6);
      if (chosen.length === 0) chosen.push(DEFS[round % DEFS.length]);
      const at = f.headOf(db.url);
      for (const d of chosen) {
        const twice = rnd() < 0.4;
        for (let k = 0; k < (twice ? 2 : 1); k++) {
          const r = h.assertStatus(await via.client().post(`/v1/projections/${d.name}/reset`), 200);
          assert.equal(r.name, d.name);
          // (position > 0: the runner applied a first batch between the reset and its answer)
          if (r.position === 0 && r.status !== 'catching_up') statusLies.push(`the answer to reset ${d.name}: ${JSON.stringify({ status: r.status, position: r.position, lag: r.lag })}`);
          if (k === 0) resets.push(`${d.name}${twice ? '×2' : ''}@~${at}`);
        }
      }
    }
    await f.waitAcked(load, 300, { what: 'the flow after the last reset' });
    await load.stop();
    watching = false;
    await watcher;
    assert.deepEqual(watchErrors, [], 'GET /v1/projections answered 200 throughout');
    assert.deepEqual(load.failed.map((x) => `${x.status} ${x.text}`), [], 'every publish answered 201');
    assert.deepEqual(load.lost.map((x) => x.error), [], 'every publish answered');

    // Each projection live at the head, then compared with SQL.
    const head = f.headOf(db.url);
    f.assertStoreSane(f.storedRows(db.url));
    const want = expected(db.url);
    const c = A.client();
    const failures = [];
    for (const d of DEFS) {
      const p = await h.waitFor(async () => {
        const x = h.assertStatus(await c.get('/v1/projections/' + d.name), 200);
        return (x.status === 'failed' || (x.status === 'live' && x.position >= head)) && x;
      }, { timeout: CATCH_UP_MS, interval: 50, what: `${d.name} live at ${head}` });
      try {
        assert.equal(p.status, 'live', `${d.name}: ${JSON.stringify(p)}`);
        assert.equal(p.position, head, `${d.name}: checkpoint at the head`);
        const got = await serverStates(c, d);
        const w = want[d.name];
        assert.deepEqual([...got.keys()].sort(), [...w.keys()].sort(), `${d.name}: keys`);
        for (const [k, v] of w) {
          assert.deepStrictEqual(got.get(k).state, v.state, `${d.name}[${k}]: state`);
          assert.equal(got.get(k).position, v.position, `${d.name}[${k}]: position of the last matching event`);
        }
      } catch (e) {
        failures.push(`${d.name}: ${e.message.split('\n').slice(0, 8).join(' ')}`);
      }
    }
    assert.deepEqual(failures, [], `projections that disagree with the reducer over the stored events (resets: ${resets.join(', ')})`);
    assert.equal(h.psql(db.url, 'SELECT count(*) FROM dead_letters'), '0', 'no dead letters');
    t.diagnostic(`${head} events (${load.acked.size} acknowledged), ${resets.length} resets: ${resets.join(', ')}; every state equals the recomputation`);
    assert.deepEqual(statusLies, [], 'no projection reported "live" at position 0 while the head was far ahead');
    for (const x of handles) await x.stop();
  } finally {
    watching = false;
    if (watcher) await watcher;
    if (load) await load.stop();
    for (const x of handles) await x.cleanup();
    db.drop();
    if (process.env.SLUICE_REDIS_URL) await deletePrefix(process.env.SLUICE_REDIS_URL, prefix);
  }
});
