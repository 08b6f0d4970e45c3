'use strict';
// bench/consumer/bench.js — the consumer-API throughput benchmark's driver (run by
// bench/consumer/run.sh, which starts the servers and sluice and passes them in the
// environment: BENCH_URL, BENCH_TOKEN, BENCH_REDIS_URL, BENCH_PREFIX, BENCH_PID (sluice),
// BENCH_DB (sluice's database), optional BENCH_REDIS_PID and BENCH_PG_PID (the postmaster),
// BENCH_EVENTS, BENCH_ROUNDS, BENCH_ROWS (a file for make bench's summary rows), BENCH_STRICT).
//
// One stream, BENCH_EVENTS events published in batches of 1,000 (~640-byte envelopes), then
// per round two consumer groups created at start 0 on it, so that each reads every event:
//   raw  8 workers, one ioredis connection each, loop XREADGROUP GROUP raw<r> w<k> COUNT 10
//        STREAMS key > , JSON.parse each entry's event, XACK the 10 — until the stream is
//        drained: what a team gets by reading Redis directly;
//   api  8 workers, one keep-alive HTTP connection each (node:http), loop POST
//        …/groups/api<r>/fetch {"consumer":"w<k>","max":10}, JSON.parse the answer, POST
//        …/ack with its 10 receipts — until a fetch answers no message.
// First, unmeasured, both sides read 4,000 events on groups of their own (warmraw, warmapi),
// so that neither pays for V8 compiling its paths or sluice opening its connections. Per
// phase: events/s, the p50/p99 of one worker's round (read + ack), and CPU µs per event of
// sluice (all its threads), redis-server, the PostgreSQL backends serving sluice's database,
// the whole cluster (postmaster + live children, exited ones in its cutime/cstime), this Node
// client (process.cpuUsage) and the rest of the machine (/proc/stat busy time minus those:
// other work on the machine), from /proc, read right before and right after the phase; sluice's
// context switches per event; the Redis commands run meanwhile (INFO commandstats). Rounds
// after the first swap the order (api first in round 2, …) so that neither side always runs
// second.
// Checks that every group got every event exactly once and acknowledged it all (XPENDING
// empty, every ack answered acked = receipts, stale = []). Prints one table; exit 1 when a
// check fails, 3 when BENCH_STRICT=1 and api/raw < 0.50. BENCH_PERF=<path>: perf record (DWARF
// call graphs) of sluice during round 1's api phase, into <path> (perf report -i <path>).
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const redis = require('../../tests/lib/redis.js'); // ioredis, from tests/node_modules

const { env, sleep, pct, statTicks, backendsOf, treeTicks, machineTicks, ctxSwitches, perfStart } = require('../lib.js');
const BASE = new URL(env('BENCH_URL'));
const TOKEN = env('BENCH_TOKEN');
const REDIS_URL = env('BENCH_REDIS_URL');
const PREFIX = env('BENCH_PREFIX');
const PID = Number(env('BENCH_PID'));
const REDIS_PID = Number(env('BENCH_REDIS_PID', '0'));
const PG_PID = Number(env('BENCH_PG_PID', '0'));
const DB = env('BENCH_DB');
const EVENTS = Number(env('BENCH_EVENTS', '40000'));
const ROUNDS = Number(env('BENCH_ROUNDS', '1'));
const ROWS = env('BENCH_ROWS', '');
const STRICT = env('BENCH_STRICT', '0') === '1';
const PERF = env('BENCH_PERF', ''); // a perf.data path (see above)
const WORKERS = 8;
const COUNT = 10;
const BATCH = 1000;
const WARMUP = Math.min(4000, EVENTS);
const TARGET = 0.5;
const STREAM = 'benchconsumer.events';
const TYPE = 'benchconsumer.item';
const KEY = PREFIX + STREAM;
const POLICY = { max_deliveries: 5, ack_timeout_ms: 300000 }; // no timeout inside a run
const CLK_TCK = 100; // Linux USER_HZ

const say = (...a) => console.error('bench/consumer:', ...a);
const posOf = (id) => Number(String(id).split('-')[0]);

// ---------------------------------------------------------------- HTTP (keep-alive)

// One request on `agent` (one socket per worker: maxSockets 1) → { status, json, text }.
function request(agent, method, path, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const headers = { Authorization: `Bearer ${TOKEN}` };
    if (payload) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = payload.length;
    }
    const req = http.request({ host: BASE.hostname, port: BASE.port, method, path, agent, headers, timeout: 30000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch (_) { json = undefined; }
        resolve({ status: res.statusCode, json, text });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 30 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

const adminAgent = new http.Agent({ keepAlive: true, maxSockets: 4 });
async function must(method, path, body, status) {
  const r = await request(adminAgent, method, path, body);
  if (r.status !== status) throw new Error(`${method} ${path} answered ${r.status}, expected ${status}: ${r.text.slice(0, 500)}`);
  return r.json;
}

// ---------------------------------------------------------------- CPU from /proc

// Redis's INFO commandstats: command → { calls, usec }.
async function commandStats(r) {
  const out = new Map();
  for (const m of (await r.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    out.set(m[1], { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return out;
}

async function cpuMark(r) {
  const cmds = await commandStats(r);
  const u = process.cpuUsage();
  return {
    cmds, cs: ctxSwitches(PID),
    t: process.hrtime.bigint(),
    sluice: statTicks(`/proc/${PID}/stat`, true),
    redis: REDIS_PID ? treeTicks(REDIS_PID) : null,
    pg: PG_PID ? treeTicks(PG_PID) : null,
    backends: PG_PID ? new Map(backendsOf(PG_PID, DB).map((c) => [c, statTicks(`/proc/${c}/stat`, false) || 0])) : null,
    client: (u.user + u.system) / 1e6 * CLK_TCK, // in ticks, like the others
    machine: machineTicks(),
    load: os.loadavg()[0],
  };
}

// µs of CPU per event for each process, the rest of the machine, and its busy share.
function cpuPerEvent(a, b, events) {
  const us = (x0, x1) => (x0 === null || x1 === null ? null : ((x1 - x0) * 1e6) / CLK_TCK / events);
  let backends = null; // per backend: a backend gone by the end loses its share (rare: a pool)
  if (a.backends && b.backends) {
    backends = 0;
    for (const [c, t] of b.backends) backends += t - (a.backends.get(c) || 0);
  }
  const out = {
    sluice: us(a.sluice, b.sluice), redis: us(a.redis, b.redis), pg: us(a.pg, b.pg),
    backends: backends === null ? null : us(0, backends), client: us(a.client, b.client),
  };
  const busy = us(a.machine.busy, b.machine.busy);
  const ours = ['sluice', 'redis', 'pg', 'client'].reduce((s, k) => s + (out[k] || 0), 0);
  out.rest = Math.max(0, busy - ours);
  out.busyPct = (100 * (b.machine.busy - a.machine.busy)) / (b.machine.total - a.machine.total) * os.cpus().length;
  out.cs = (b.cs - a.cs) / events;
  // Redis commands run meanwhile (by anyone: Redis is shared), the costliest first.
  out.cmds = [];
  for (const [c, v] of b.cmds) {
    const v0 = a.cmds.get(c) || { calls: 0, usec: 0 };
    if (v.calls > v0.calls) out.cmds.push({ c, calls: v.calls - v0.calls, usec: v.usec - v0.usec });
  }
  out.cmds.sort((x, y) => y.usec - x.usec);
  return out;
}

// ---------------------------------------------------------------- the phases


// seen: Map position → deliveries, per group, for the exactly-once check.
function note(seen, positions, problems, what) {
  for (const p of positions) {
    const n = (seen.get(p) || 0) + 1;
    seen.set(p, n);
    if (n === 2) problems.push(`${what}: position ${p} delivered twice`);
  }
}

async function rawPhase(r, group, conns, limit = Infinity) {
  const seen = new Map();
  const problems = [];
  const rounds = [];
  const worker = async (k) => {
    const c = conns[k];
    while (seen.size < limit) {
      const t0 = process.hrtime.bigint();
      const rep = await c.xreadgroup('GROUP', group, `w${k}`, 'COUNT', COUNT, 'STREAMS', KEY, '>');
      if (!rep || !rep[0][1].length) return;
      const entries = rep[0][1];
      const ids = new Array(entries.length);
      const positions = new Array(entries.length);
      for (let i = 0; i < entries.length; i++) {
        const [id, fields] = entries[i];
        ids[i] = id;
        let ev;
        for (let j = 0; j + 1 < fields.length; j += 2) if (fields[j] === 'event') ev = JSON.parse(fields[j + 1]);
        if (!ev) problems.push(`${group}: entry ${id} has no event field`);
        positions[i] = ev ? ev.position : posOf(id);
      }
      const acked = await c.xack(KEY, group, ...ids);
      if (acked !== ids.length) problems.push(`${group}: XACK of ${ids.length} answered ${acked}`);
      rounds.push(Number(process.hrtime.bigint() - t0) / 1e6);
      note(seen, positions, problems, group);
    }
  };
  const a = await cpuMark(r);
  await Promise.all(conns.map((_, k) => worker(k)));
  const b = await cpuMark(r);
  return { a, b, seen, problems, rounds };
}

async function apiPhase(r, group, agents, limit = Infinity) {
  const seen = new Map();
  const problems = [];
  const rounds = [];
  const base = `/v1/streams/${STREAM}/groups/${group}`;
  const worker = async (k) => {
    const agent = agents[k];
    const fetchBody = { consumer: `w${k}`, max: COUNT };
    while (seen.size < limit) {
      const t0 = process.hrtime.bigint();
      const f = await request(agent, 'POST', `${base}/fetch`, fetchBody);
      if (f.status !== 200 || !f.json || !Array.isArray(f.json.messages)) throw new Error(`fetch answered ${f.status}: ${f.text.slice(0, 300)}`);
      const msgs = f.json.messages;
      if (!msgs.length) return;
      const receipts = new Array(msgs.length);
      const positions = new Array(msgs.length);
      for (let i = 0; i < msgs.length; i++) {
        receipts[i] = msgs[i].receipt;
        positions[i] = msgs[i].event.position;
        if (msgs[i].attempt !== 1) problems.push(`${group}: position ${positions[i]} came with attempt ${msgs[i].attempt}`);
      }
      const ack = await request(agent, 'POST', `${base}/ack`, { receipts });
      if (ack.status !== 200 || !ack.json) throw new Error(`ack answered ${ack.status}: ${ack.text.slice(0, 300)}`);
      if (ack.json.acked !== receipts.length || ack.json.stale.length) problems.push(`${group}: ack of ${receipts.length} answered ${ack.text}`);
      rounds.push(Number(process.hrtime.bigint() - t0) / 1e6);
      note(seen, positions, problems, group);
    }
  };
  const a = await cpuMark(r);
  await Promise.all(agents.map((_, k) => worker(k)));
  const b = await cpuMark(r);
  return { a, b, seen, problems, rounds };
}

function summarise(name, ph, expected) {
  const events = ph.seen.size;
  const wall = Number(ph.b.t - ph.a.t) / 1e9;
  const rounds = ph.rounds.slice().sort((x, y) => x - y);
  const missing = expected.filter((p) => !ph.seen.has(p)).length;
  if (missing) ph.problems.push(`${name}: ${missing} of ${expected.length} events never delivered`);
  return {
    name, events, wall, eps: events / wall, p50: pct(rounds, 0.5), p99: pct(rounds, 0.99),
    cpu: cpuPerEvent(ph.a, ph.b, Math.max(1, events)), load: [ph.a.load, ph.b.load], problems: ph.problems,
  };
}

// ---------------------------------------------------------------- the run

let envelopeBytes = 0; // the stored envelope of one event, as Redis holds it

async function main() {
  const r = await redis.connect(REDIS_URL, { timeoutMs: 0 });
  const conns = [];
  const agents = [];
  try {
    // Events: published once, read by every round's groups (start 0).
    say(`publishing ${EVENTS} events to ${STREAM} in batches of ${BATCH}`);
    const filler = 'x'.repeat(200);
    let lastPos = 0;
    const positions = [];
    for (let b = 0; b < EVENTS; b += BATCH) {
      const n = Math.min(BATCH, EVENTS - b);
      const body = Array.from({ length: n }, (_, i) => ({
        type: TYPE, stream: STREAM,
        data: { n: b + i, user_id: `user_${(b + i) % 97}`, amount_cents: (b + i) * 7 % 10000, note: filler },
      }));
      const res = await must('POST', '/v1/events', body, 201);
      for (const e of res.events) positions.push(e.position);
      lastPos = res.events[res.events.length - 1].position;
    }
    const t0 = Date.now();
    for (;;) {
      const top = await r.xrevrange(KEY, '+', '-', 'COUNT', 1);
      if (top.length && posOf(top[0][0]) >= lastPos) break;
      if (Date.now() - t0 > 120000) throw new Error('the relay did not write every event to Redis in 120 s');
      await sleep(50);
    }
    const xlen = await r.xlen(KEY);
    if (xlen !== EVENTS) throw new Error(`the stream holds ${xlen} entries, expected ${EVENTS}`);
    say(`${EVENTS} events in Redis (${Date.now() - t0} ms after the last 201)`);
    const [[, fields]] = await r.xrange(KEY, '-', '+', 'COUNT', 1);
    envelopeBytes = Buffer.byteLength(fields[fields.indexOf('event') + 1]);

    for (let k = 0; k < WORKERS; k++) {
      conns.push(await redis.connect(REDIS_URL, { timeoutMs: 30000 }));
      agents.push(new http.Agent({ keepAlive: true, maxSockets: 1 }));
    }
    // Warm-up, unmeasured: both sides read WARMUP events on groups of their own, so that
    // neither pays for V8 compiling its paths or sluice opening its Redis connections.
    for (const g of ['warmraw', 'warmapi']) await must('POST', `/v1/streams/${STREAM}/groups`, { name: g, start: '0', ...POLICY }, 201);
    await sleep(300);
    say(`warm-up: ${WARMUP} events each way, unmeasured`);
    await rawPhase(r, 'warmraw', conns, WARMUP);
    await apiPhase(r, 'warmapi', agents, WARMUP);
    for (const g of ['warmraw', 'warmapi']) await must('DELETE', `/v1/streams/${STREAM}/groups/${g}`, undefined, 204);

    const results = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const raw = ROUNDS === 1 ? 'raw' : `raw${round}`;
      const api = ROUNDS === 1 ? 'api' : `api${round}`;
      for (const g of [raw, api]) await must('POST', `/v1/streams/${STREAM}/groups`, { name: g, start: '0', ...POLICY }, 201);
      // The groups exist in Redis before anyone reads.
      const names = (await r.xinfo('GROUPS', KEY)).map((f) => f[f.indexOf('name') + 1]);
      for (const g of [raw, api]) if (!names.includes(g)) throw new Error(`group ${g} is not in Redis`);
      await sleep(1500); // the cached group definitions and the sweeper settle
      const order = round % 2 === 1 ? ['raw', 'api'] : ['api', 'raw'];
      const res = {};
      for (const side of order) {
        say(`round ${round}: ${side} phase (${WORKERS} workers x ${COUNT})`);
        if (side === 'raw') res.raw = summarise(`raw Redis (${raw})`, await rawPhase(r, raw, conns), positions);
        else {
          const perfStop = PERF && round === 1 ? await perfStart(PID, PERF, say) : null;
          res.api = summarise(`consumer API (${api})`, await apiPhase(r, api, agents), positions);
          if (perfStop) await perfStop();
        }
        say(`  ${res[side].events} events in ${res[side].wall.toFixed(2)} s = ${res[side].eps.toFixed(0)}/s`);
        await sleep(500);
      }
      for (const g of [raw, api]) {
        const p = await r.xpending(KEY, g);
        if (Number(p[0]) !== 0) res[g === raw ? 'raw' : 'api'].problems.push(`${g}: ${p[0]} entries still pending`);
      }
      results.push(res);
    }
    return results;
  } finally {
    for (const c of conns) c.disconnect();
    for (const a of agents) a.destroy();
    adminAgent.destroy();
    r.disconnect();
  }
}

function report(results) {
  const f1 = (x) => (x === null || x === undefined || Number.isNaN(x) ? '?' : x.toFixed(1));
  const lines = [];
  const out = (s) => lines.push(s);
  // CPU columns: key, heading, width.
  const COLS = [['sluice', 'sluice', 7], ['redis', 'redis', 6], ['backends', 'pg:db', 6], ['pg', 'pg:all', 7],
    ['client', 'client', 7], ['rest', 'rest', 6]];
  out(`\nSluice consumer API vs raw Redis: ${EVENTS} events (${envelopeBytes}-byte envelopes) on one stream, ` +
    `${WORKERS} workers, ${COUNT} per read, each read acknowledged; ${os.cpus().length} cores shared by everything\n`);
  out(`  ${''.padEnd(26)} ${''.padStart(7)} ${''.padStart(8)} ${''.padStart(6)} ${''.padStart(17)}   CPU µs per event`);
  out(`  ${'phase'.padEnd(26)} ${'events'.padStart(7)} ${'ev/s'.padStart(8)} ${'ratio'.padStart(6)} ` +
    `${'round p50/p99 ms'.padStart(17)}   ${COLS.map(([, h, w]) => h.padStart(w)).join(' ')}   sluice cs/ev   busy: machine, client; load`);
  let broken = false;
  const ratios = [];
  let sumRaw = 0, sumApi = 0, wallRaw = 0, wallApi = 0;
  const cpuSum = { raw: {}, api: {} };
  const cmdLines = [];
  for (const res of results) {
    const ratio = res.api.eps / res.raw.eps;
    ratios.push(ratio);
    sumRaw += res.raw.events; wallRaw += res.raw.wall;
    sumApi += res.api.events; wallApi += res.api.wall;
    for (const side of ['raw', 'api']) {
      const s = res[side];
      for (const [k] of COLS) cpuSum[side][k] = (cpuSum[side][k] || 0) + (s.cpu[k] === null ? NaN : s.cpu[k] * s.events);
      out(`  ${s.name.padEnd(26)} ${String(s.events).padStart(7)} ${s.eps.toFixed(0).padStart(8)} ` +
        `${(side === 'api' ? ratio.toFixed(2) : '1').padStart(6)} ${`${s.p50.toFixed(2)} / ${s.p99.toFixed(2)}`.padStart(17)}   ` +
        `${COLS.map(([k, , w]) => f1(s.cpu[k]).padStart(w)).join(' ')}   ${s.cpu.cs.toFixed(2).padStart(12)}   ` +
        `${s.cpu.busyPct.toFixed(0)}%, ${s.cpu.client === null ? '?' : (s.cpu.client * s.eps / 1e4).toFixed(0)}%, ${s.load[0].toFixed(2)}`);
      cmdLines.push(`  ${s.name.padEnd(26)} ${s.cpu.cmds.slice(0, 4).map((x) =>
        `${x.c} ${(x.calls * COUNT / s.events).toFixed(2)} (${(x.usec / x.calls).toFixed(1)} µs)`).join(', ')}`);
      for (const p of s.problems.slice(0, 5)) out(`    PROBLEM ${p}`);
      if (s.problems.length) broken = true;
    }
  }
  const ratio = (sumApi / wallApi) / (sumRaw / wallRaw);
  const verdict = ratio >= TARGET ? 'PASS' : 'MISS';
  out('');
  out(`  consumer API / raw Redis throughput: ${ratio.toFixed(2)}x` +
    (results.length > 1 ? ` over ${results.length} rounds (each: ${ratios.map((x) => x.toFixed(2)).join(', ')})` : '') +
    `   target >= ${TARGET.toFixed(2)}x   ${verdict}`);
  const once = results.every((res) => !res.raw.problems.length && !res.api.problems.length);
  out(`  every event delivered once and acknowledged, in both groups: ${once ? 'yes' : 'NO'}   ${once ? 'PASS' : 'FAIL'}`);
  out('');
  out('  Redis commands per 10 events (µs per call inside Redis), the costliest four; Redis is shared:');
  for (const l of cmdLines) out(l);
  out('');
  out('  round = one worker\'s read + ack of up to 10. CPU from /proc over the phase: sluice (all its');
  out('  threads), redis-server, pg:db = the PostgreSQL backends of sluice\'s database, pg:all = the');
  out('  whole cluster (postmaster + children), this Node client (all 8 workers); rest = the machine\'s');
  out('  busy time minus sluice, redis, pg:all and client: other work on the machine, i.e. noise. Redis');
  out('  and the cluster are shared: other clients of theirs are counted in redis and pg:all too.');
  out('  sluice cs/ev = context switches of its threads per event. busy: the machine\'s and the');
  out('  client\'s CPU in % of one core (the client is one Node thread: near 100% it is the limit).');
  console.log(lines.join('\n'));

  if (ROWS) {
    const per = (side, k) => cpuSum[side][k] / (side === 'raw' ? sumRaw : sumApi);
    const cpuCell = (side) => ['sluice', 'redis', 'backends', 'client'].map((k) => f1(per(side, k))).join(' / ');
    const rows = [
      [`${WORKERS} workers x fetch ${COUNT} + ack, consumer API`, `${(sumApi / wallApi).toFixed(0)} ev/s`,
        `raw Redis XREADGROUP+XACK = ${(sumRaw / wallRaw).toFixed(0)} ev/s (${ratio.toFixed(2)}x)`, `>= ${TARGET.toFixed(2)}x`, verdict],
      ['CPU µs/event: sluice / Redis / its PG backends / client', cpuCell('api'), `raw Redis = ${cpuCell('raw')}`, '-', '-'],
      ['events delivered once and acknowledged', once ? `${EVENTS} x ${results.length * 2} groups, each once` : 'NO',
        '-', 'all, once', once ? 'PASS' : 'FAIL'],
    ];
    fs.writeFileSync(ROWS, rows.map((r) => r.join('\t')).join('\n') + '\n');
  }
  return { broken, miss: verdict !== 'PASS' };
}

if (!(EVENTS >= WORKERS * COUNT) || !(ROUNDS >= 1)) {
  say('BENCH_EVENTS must be at least 80 and BENCH_ROUNDS at least 1');
  process.exit(2);
}
main().then((results) => {
  const { broken, miss } = report(results);
  if (broken) process.exit(1);
  if (miss && STRICT) { say('a target was missed (BENCH_STRICT=1)'); process.exit(3); }
}, (e) => {
  say(e.stack || String(e));
  process.exit(1);
});
