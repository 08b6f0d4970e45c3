'use strict';
// bench/consumer/bench.js — the consumer-API throughput benchmark's driver (run by
// bench/consumer/run.sh, which starts the servers and sluice and passes them in the
// environment: BENCH_URL, BENCH_WS_URL (ws://host:port/v1/ws), BENCH_TOKEN, BENCH_REDIS_URL,
// BENCH_PREFIX, BENCH_PID (sluice), BENCH_DB (sluice's database), optional BENCH_REDIS_PID and
// BENCH_PG_PID (the postmaster), BENCH_EVENTS, BENCH_ROUNDS, BENCH_ROWS (a file for make
// bench's summary rows), BENCH_STRICT).
//
// One stream, BENCH_EVENTS events published in batches of 1,000 (~640-byte envelopes), then
// per round three consumer groups created at start 0 on it, so that each reads every event:
//   raw  8 workers, one ioredis connection each, loop XREADGROUP GROUP raw<r> w<k> COUNT 10
//        STREAMS key > , JSON.parse each entry's event, XACK the 10 — until the stream is
//        drained: what a team gets by reading Redis directly;
//   api  8 workers, one keep-alive HTTP connection each (node:http), loop POST
//        …/groups/api<r>/fetch {"consumer":"w<k>","max":10}, JSON.parse the answer, POST
//        …/ack with its 10 receipts — until a fetch answers no message;
//   ws   8 workers, one WebSocket each (ws, from tests/node_modules; opened with ?token=
//        before the phase, closed after it), {"op":"consume","id":"ws<r>","group":"ws<r>",
//        "consumer":"w<k>","max_in_flight":10}, JSON.parse each {"op":"message"} frame, and
//        {"op":"ack","receipts":[…]} with up to 10: at once when a worker holds 10, else at the
//        end of the event-loop turn (setImmediate) with whatever came in it — until the
//        "acked" frames have answered for every event. No frame for 15 s fails the phase.
// First, unmeasured, every side reads 4,000 events on groups of its own (warmraw, warmapi,
// warmws), so that none pays for V8 compiling its paths or sluice opening its connections.
// Per phase: events/s, the p50/p99 of one worker's round (raw, api: read + ack; ws: from a
// batch's first message to the "acked" frame answering its ack), and CPU µs per event of
// sluice (all its threads), redis-server, the PostgreSQL backends serving sluice's database,
// the whole cluster (postmaster + live children, exited ones in its cutime/cstime), this Node
// client (process.cpuUsage) and the rest of the machine (/proc/stat busy time minus those:
// other work on the machine), from /proc, read right before and right after the phase; sluice's
// context switches per event; the Redis commands run meanwhile (INFO commandstats). Odd rounds
// run raw, api, ws; even rounds the reverse, so that no side always runs last.
// Checks that every group got every event exactly once (attempt 1) and acknowledged it all
// (XPENDING empty, every ack answered acked = receipts, stale = []). Prints one table, with
// the ratios api/raw (the headline) and ws/raw, both against the 0.50 target; exit 1 when a
// check fails, 3 when BENCH_STRICT=1 and api/raw < 0.50 (ws/raw shows its verdict only).
// BENCH_PERF=<path>: perf record (DWARF call graphs) of sluice during round 1's api phase,
// into <path> (perf report -i <path>).
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const redis = require('../../tests/lib/redis.js'); // ioredis, from tests/node_modules
const WebSocket = require('../../tests/node_modules/ws');

const { env, sleep, pct, statTicks, backendsOf, treeTicks, machineTicks, ctxSwitches, perfStart } = require('../lib.js');
const BASE = new URL(env('BENCH_URL'));
const WS_URL = env('BENCH_WS_URL'); // ws://host:port/v1/ws
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
const WS_STALL_MS = 15000; // a WebSocket phase with no frame for this long has failed
const openSockets = new Set(); // every WebSocket not yet closed: terminated at the end, whatever happened

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

// One WebSocket per worker, open and authenticated (?token=) before a phase starts.
function wsOpen() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${WS_URL}?token=${encodeURIComponent(TOKEN)}`, { handshakeTimeout: 15000, perMessageDeflate: false });
    openSockets.add(ws);
    ws.on('close', () => openSockets.delete(ws));
    ws.once('open', () => { ws.removeAllListeners('error'); ws.on('error', () => {}); resolve(ws); });
    ws.once('error', (e) => { ws.terminate(); reject(new Error(`the WebSocket to ${WS_URL} did not open: ${e.message}`)); });
  });
}

// Closes (1000) and waits for the close, at most 5 s, then terminates.
async function wsClose(ws) {
  if (ws.readyState === WebSocket.CLOSED) return;
  const closed = new Promise((resolve) => ws.once('close', resolve));
  try { ws.close(1000); } catch (_) { ws.terminate(); }
  let timer;
  const late = await Promise.race([closed.then(() => false), new Promise((resolve) => { timer = setTimeout(resolve, 5000, true); })]);
  clearTimeout(timer);
  if (late) { ws.terminate(); await closed; }
}

// The consumer API over WebSocket: each worker sends {"op":"consume","id":<group>,…,
// "max_in_flight":10} and acknowledges what it received in {"op":"ack"} frames of up to 10
// receipts: at once when it holds 10, else at the end of the event-loop turn (setImmediate)
// with whatever came in it. Done when the server has answered receipts for `limit` events
// ("acked" frames, acked + stale); fails (a problem, not a hang) when no frame comes for
// WS_STALL_MS or a socket closes. round = from a batch's first message to the "acked" frame
// answering its ack.
async function wsPhase(r, group, limit = EVENTS) {
  const seen = new Map();
  const problems = [];
  const rounds = [];
  const sockets = [];
  let stall = null;
  try {
    for (let k = 0; k < WORKERS; k++) sockets.push(await wsOpen());
    let answered = 0; // receipts answered by "acked" frames, every worker
    let over = false; // done, or failed: later frames are not looked at
    let finish;
    const finished = new Promise((resolve) => { finish = () => { over = true; resolve(); }; });
    let last = Date.now(); // the last frame, from any worker
    const workers = sockets.map((ws, k) => {
      const w = { k, batch: [], t0: 0n, flushing: false, sent: [], consuming: false, got: 0 };
      const flush = () => {
        w.flushing = false;
        if (!w.batch.length || ws.readyState !== WebSocket.OPEN) return;
        ws.send(JSON.stringify({ op: 'ack', receipts: w.batch }));
        w.sent.push({ n: w.batch.length, t0: w.t0 });
        w.batch = [];
      };
      const frame = (m) => {
        if (m.op === 'message' && m.sub === group) {
          w.got++;
          if (!w.batch.length) w.t0 = process.hrtime.bigint();
          w.batch.push(m.receipt);
          const pos = m.event.position;
          if (m.attempt !== 1) problems.push(`${group}: position ${pos} came with attempt ${m.attempt}`);
          note(seen, [pos], problems, group);
          if (w.batch.length >= COUNT) flush();
          else if (!w.flushing) { w.flushing = true; setImmediate(flush); }
        } else if (m.op === 'acked') {
          const b = w.sent.shift();
          if (!b) { problems.push(`${group}: w${k} got an acked frame for no ack: ${JSON.stringify(m)}`); return; }
          rounds.push(Number(process.hrtime.bigint() - b.t0) / 1e6);
          if (m.acked !== b.n || !Array.isArray(m.stale) || m.stale.length) problems.push(`${group}: ack of ${b.n} answered ${JSON.stringify(m)}`);
          answered += b.n;
          if (answered >= limit) finish();
        } else if (m.op === 'consuming' && m.id === group) {
          w.consuming = true;
        } else {
          problems.push(`${group}: w${k} got ${JSON.stringify(m).slice(0, 300)}`);
          if (m.op === 'error') finish();
        }
      };
      ws.on('message', (data) => {
        if (over) return;
        last = Date.now();
        const text = data.toString('utf8');
        // One message per WebSocket frame (server/ws.c); newline-separated ones are read too.
        try {
          for (const line of text.indexOf('\n') < 0 ? [text] : text.split('\n')) if (line) frame(JSON.parse(line));
        } catch (e) {
          problems.push(`${group}: w${k} got a frame it cannot read (${e.message}): ${text.slice(0, 300)}`);
          finish();
        }
      });
      ws.on('close', (code, reason) => {
        if (!over) problems.push(`${group}: w${k}'s WebSocket closed (${code} ${reason}) with ${answered} of ${limit} answered`);
        finish();
      });
      return w;
    });
    stall = setInterval(() => {
      if (over || Date.now() - last < WS_STALL_MS) return;
      problems.push(`${group}: no frame for ${WS_STALL_MS / 1000} s; ${seen.size} events delivered, ${answered} acknowledgements ` +
        `answered; per worker (messages, batch, acks unanswered, consuming): ${workers.map((w) => `w${w.k} ${w.got}/${w.batch.length}/${w.sent.length}/${w.consuming}`).join(' ')}`);
      finish();
    }, 500);
    const a = await cpuMark(r);
    last = Date.now();
    sockets.forEach((ws, k) => ws.send(JSON.stringify({ op: 'consume', id: group, stream: STREAM, group, consumer: `w${k}`, max_in_flight: COUNT })));
    await finished;
    const b = await cpuMark(r);
    return { a, b, seen, problems, rounds };
  } finally {
    clearInterval(stall);
    await Promise.all(sockets.map(wsClose));
  }
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
    const warm = ['warmraw', 'warmapi', 'warmws'];
    for (const g of warm) await must('POST', `/v1/streams/${STREAM}/groups`, { name: g, start: '0', ...POLICY }, 201);
    await sleep(300);
    say(`warm-up: ${WARMUP} events each way, unmeasured`);
    await rawPhase(r, 'warmraw', conns, WARMUP);
    await apiPhase(r, 'warmapi', agents, WARMUP);
    const w = await wsPhase(r, 'warmws', WARMUP);
    if (w.problems.length) throw new Error(`the WebSocket warm-up failed: ${w.problems.slice(0, 5).join('; ')}`);
    for (const g of warm) await must('DELETE', `/v1/streams/${STREAM}/groups/${g}`, undefined, 204);

    const results = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const raw = ROUNDS === 1 ? 'raw' : `raw${round}`;
      const api = ROUNDS === 1 ? 'api' : `api${round}`;
      const wsg = ROUNDS === 1 ? 'ws' : `ws${round}`;
      const groups = { raw, api, ws: wsg };
      for (const g of [raw, api, wsg]) await must('POST', `/v1/streams/${STREAM}/groups`, { name: g, start: '0', ...POLICY }, 201);
      // The groups exist in Redis before anyone reads.
      const names = (await r.xinfo('GROUPS', KEY)).map((f) => f[f.indexOf('name') + 1]);
      for (const g of [raw, api, wsg]) if (!names.includes(g)) throw new Error(`group ${g} is not in Redis`);
      await sleep(1500); // the cached group definitions and the sweeper settle
      // Odd rounds raw, api, ws; even rounds the reverse: over each pair of rounds every side
      // runs, on average, in the same place.
      const order = round % 2 === 1 ? ['raw', 'api', 'ws'] : ['ws', 'api', 'raw'];
      const res = {};
      for (const side of order) {
        say(`round ${round}: ${side} phase (${WORKERS} workers x ${COUNT})`);
        if (side === 'raw') res.raw = summarise(`raw Redis (${raw})`, await rawPhase(r, raw, conns), positions);
        else if (side === 'ws') res.ws = summarise(`consumer API, WS (${wsg})`, await wsPhase(r, wsg), positions);
        else {
          const perfStop = PERF && round === 1 ? await perfStart(PID, PERF, say) : null;
          res.api = summarise(`consumer API (${api})`, await apiPhase(r, api, agents), positions);
          if (perfStop) await perfStop();
        }
        say(`  ${res[side].events} events in ${res[side].wall.toFixed(2)} s = ${res[side].eps.toFixed(0)}/s`);
        await sleep(500);
      }
      for (const side of ['raw', 'api', 'ws']) {
        const p = await r.xpending(KEY, groups[side]);
        if (Number(p[0]) !== 0) res[side].problems.push(`${groups[side]}: ${p[0]} entries still pending`);
      }
      results.push(res);
    }
    return results;
  } finally {
    for (const ws of openSockets) ws.terminate();
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
  const SIDES = ['raw', 'api', 'ws'];
  out(`\nSluice consumer API (HTTP and WebSocket) vs raw Redis: ${EVENTS} events (${envelopeBytes}-byte envelopes) on one stream, ` +
    `${WORKERS} workers, ${COUNT} per read (WebSocket: ${COUNT} in flight), each read acknowledged; ${os.cpus().length} cores shared by everything\n`);
  out(`  ${''.padEnd(26)} ${''.padStart(7)} ${''.padStart(8)} ${''.padStart(6)} ${''.padStart(17)}   CPU µs per event`);
  out(`  ${'phase'.padEnd(26)} ${'events'.padStart(7)} ${'ev/s'.padStart(8)} ${'ratio'.padStart(6)} ` +
    `${'round p50/p99 ms'.padStart(17)}   ${COLS.map(([, h, w]) => h.padStart(w)).join(' ')}   sluice cs/ev   busy: machine, client; load`);
  let broken = false;
  const ratios = { api: [], ws: [] };
  const sum = { raw: 0, api: 0, ws: 0 };
  const wall = { raw: 0, api: 0, ws: 0 };
  const cpuSum = { raw: {}, api: {}, ws: {} };
  const cmdLines = [];
  for (const res of results) {
    for (const side of SIDES) {
      const s = res[side];
      const ratio = s.eps / res.raw.eps;
      if (side !== 'raw') ratios[side].push(ratio);
      sum[side] += s.events; wall[side] += s.wall;
      for (const [k] of COLS) cpuSum[side][k] = (cpuSum[side][k] || 0) + (s.cpu[k] === null ? NaN : s.cpu[k] * s.events);
      out(`  ${s.name.padEnd(26)} ${String(s.events).padStart(7)} ${s.eps.toFixed(0).padStart(8)} ` +
        `${(side !== 'raw' ? ratio.toFixed(2) : '1').padStart(6)} ${`${s.p50.toFixed(2)} / ${s.p99.toFixed(2)}`.padStart(17)}   ` +
        `${COLS.map(([k, , w]) => f1(s.cpu[k]).padStart(w)).join(' ')}   ${s.cpu.cs.toFixed(2).padStart(12)}   ` +
        `${s.cpu.busyPct.toFixed(0)}%, ${s.cpu.client === null ? '?' : (s.cpu.client * s.eps / 1e4).toFixed(0)}%, ${s.load[0].toFixed(2)}`);
      cmdLines.push(`  ${s.name.padEnd(26)} ${s.cpu.cmds.slice(0, 4).map((x) =>
        `${x.c} ${(x.calls * COUNT / s.events).toFixed(2)} (${(x.usec / x.calls).toFixed(1)} µs)`).join(', ')}`);
      for (const p of s.problems.slice(0, 5)) out(`    PROBLEM ${p}`);
      if (s.problems.length) broken = true;
    }
  }
  const eps = (side) => sum[side] / wall[side];
  const ratio = { api: eps('api') / eps('raw'), ws: eps('ws') / eps('raw') };
  const verdict = { api: ratio.api >= TARGET ? 'PASS' : 'MISS', ws: ratio.ws >= TARGET ? 'PASS' : 'MISS' };
  const headline = (side) => `${ratio[side].toFixed(2)}x` +
    (results.length > 1 ? ` over ${results.length} rounds (each: ${ratios[side].map((x) => x.toFixed(2)).join(', ')})` : '') +
    `   target >= ${TARGET.toFixed(2)}x   ${verdict[side]}`;
  out('');
  out(`  consumer API / raw Redis throughput: ${headline('api')}`);
  out(`  consumer API over WebSocket / raw Redis throughput: ${headline('ws')}`);
  const once = results.every((res) => SIDES.every((side) => !res[side].problems.length));
  out(`  every event delivered once and acknowledged, in every group: ${once ? 'yes' : 'NO'}   ${once ? 'PASS' : 'FAIL'}`);
  out('');
  out('  Redis commands per 10 events (µs per call inside Redis), the costliest four; Redis is shared:');
  for (const l of cmdLines) out(l);
  out('');
  out('  round = one worker\'s read + ack of up to 10 (WS: from a batch\'s first message to the "acked"');
  out('  frame answering its ack). WS acks go out at 10 held or at the end of the event-loop turn.');
  out('  CPU from /proc over the phase: sluice (all its threads), redis-server, pg:db = the PostgreSQL');
  out('  backends of sluice\'s database, pg:all = the whole cluster (postmaster + children), this Node');
  out('  client (all 8 workers); rest = the machine\'s busy time minus sluice, redis, pg:all and client:');
  out('  other work on the machine, i.e. noise. Redis and the cluster are shared: other clients of theirs');
  out('  are counted in redis and pg:all too. sluice cs/ev = context switches of its threads per event.');
  out('  busy: the machine\'s and the client\'s CPU in % of one core (the client is one Node thread: near');
  out('  100% it is the limit).');
  console.log(lines.join('\n'));

  if (ROWS) {
    const per = (side, k) => cpuSum[side][k] / sum[side];
    const cpuCell = (side) => ['sluice', 'redis', 'backends', 'client'].map((k) => f1(per(side, k))).join(' / ');
    const rawCell = `raw Redis XREADGROUP+XACK = ${eps('raw').toFixed(0)} ev/s`;
    const rows = [
      [`${WORKERS} workers x fetch ${COUNT} + ack, consumer API`, `${eps('api').toFixed(0)} ev/s`,
        `${rawCell} (${ratio.api.toFixed(2)}x)`, `>= ${TARGET.toFixed(2)}x`, verdict.api],
      [`${WORKERS} workers x consume ${COUNT} in flight + ack, consumer API over WebSocket`, `${eps('ws').toFixed(0)} ev/s`,
        `${rawCell} (${ratio.ws.toFixed(2)}x)`, `>= ${TARGET.toFixed(2)}x`, verdict.ws],
      ['CPU µs/event: sluice / Redis / its PG backends / client', cpuCell('api'), `raw Redis = ${cpuCell('raw')}`, '-', '-'],
      ['events delivered once and acknowledged', once ? `${EVENTS} x ${results.length * SIDES.length} groups, each once` : 'NO',
        '-', 'all, once', once ? 'PASS' : 'FAIL'],
    ];
    fs.writeFileSync(ROWS, rows.map((r) => r.join('\t')).join('\n') + '\n');
  }
  // BENCH_STRICT gates on the headline (HTTP) only; the WebSocket row shows its verdict.
  return { broken, miss: verdict.api !== 'PASS' };
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
