'use strict';
// bench/webhooks/bench.js — the webhook benchmark's driver (run by bench/webhooks/run.sh,
// which starts sluice and the receivers (bench/webhooks/receiver.js) and passes them in the
// environment: BENCH_URL, BENCH_TOKEN, BENCH_PID (sluice), BENCH_DB (sluice's database),
// optional BENCH_PG_PID (the postmaster), BENCH_RECEIVER_PORTS and BENCH_RECEIVER_PIDS
// (comma-separated, one per receiver process), BENCH_EVENTS, BENCH_HOOKS, BENCH_RATE,
// BENCH_SECONDS, BENCH_LAG_BATCH, BENCH_LAG_PLAN, BENCH_ROWS (a file for make bench's
// summary rows), BENCH_STRICT, BENCH_PERF).
//
// Three phases, the webhooks on one stream (filter: that stream), spread round-robin over
// the receivers, every one answering 204:
//   throughput  BENCH_EVENTS events published first (batches of 1,000, ~640-byte
//               envelopes), then the webhooks created with start "0": HOOKS × EVENTS
//               deliveries owed at once. Deliveries/s from the first arrival to the last (at
//               the receivers), and CPU µs per delivery of sluice (all threads), the
//               receivers, the PostgreSQL backends of sluice's database, the whole cluster,
//               this driver and the rest of the machine (noise), from /proc between the
//               first arrival and the last. Then sluice's own counters (GET /v1/webhooks:
//               delivered, failed, lag) must say the same.
//   baseline    the same receivers, without Sluice: bench/webhooks/sender.js (a plain
//               node:http client, its own process) POSTs the same envelopes (read back as
//               NDJSON: the bytes Sluice sends) to BENCH_HOOKS other paths, each signed per
//               request as Sluice signs, 16 in flight per path as Sluice allows: what the
//               receivers can take. Deliveries/s and CPU µs per delivery measured the same
//               way; the ratio Sluice/baseline is the headline beside the target.
//   lag         for each step of BENCH_LAG_PLAN ("<events/s>x<webhooks>,...", default
//               "1000x1,1000x10": 1,000 events/s to one webhook, the target's case, then the
//               same events fanned out to 10, i.e. 10,000 deliveries/s): new webhooks with
//               start "$" (the earlier ones deleted), one event delivered to each first (so
//               the engine holds them all), then that many events/s
//               for BENCH_SECONDS s in batches of BENCH_LAG_BATCH on up to 8
//               keep-alive connections, on a fixed schedule (a late batch is sent as soon as
//               it can, not skipped). Per delivery: its arrival minus the event's `time`
//               (set by sluice when the event's commit starts: the headline), minus the
//               moment its 201 arrived, minus the moment its publish was sent. p50/p99/max.
// Every (webhook, event) must arrive at least once; duplicates are counted. Exit 1 when one
// is missing or sluice's counters disagree, 3 when BENCH_STRICT=1 and a target is missed.
// BENCH_PERF=<path>: perf record (DWARF call graphs) of sluice during the throughput phase.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const { performance } = require('node:perf_hooks');

const { env, sleep, pct, statTicks, backendsOf, treeTicks, machineTicks, ctxSwitches, perfStart } = require('../lib.js');
const BASE = new URL(env('BENCH_URL'));
const TOKEN = env('BENCH_TOKEN');
const PID = Number(env('BENCH_PID'));
const PG_PID = Number(env('BENCH_PG_PID', '0'));
const DB = env('BENCH_DB');
const RECV_PORTS = env('BENCH_RECEIVER_PORTS').split(',').map(Number);
const RECV_PIDS = env('BENCH_RECEIVER_PIDS').split(',').map(Number);
const EVENTS = Number(env('BENCH_EVENTS', '10000'));
const HOOKS = Number(env('BENCH_HOOKS', '10'));
const RATE = Number(env('BENCH_RATE', '1000'));
const SECONDS = Number(env('BENCH_SECONDS', '10'));
const LAG_BATCH = Number(env('BENCH_LAG_BATCH', '10'));
const LAG_PLAN = env('BENCH_LAG_PLAN', `${RATE}x1,${RATE}x${HOOKS}`).split(',').map((x) => {
  const m = /^([1-9][0-9]*)x([1-9][0-9]*)$/.exec(x.trim());
  if (!m) throw new Error(`BENCH_LAG_PLAN: "${x}" is not <events/s>x<webhooks>`);
  return { rate: Number(m[1]), hooks: Number(m[2]) };
});
const ROWS = env('BENCH_ROWS', '');
const STRICT = env('BENCH_STRICT', '0') === '1';
const PERF = env('BENCH_PERF', '');
const WORKDIR = env('BENCH_WORK', os.tmpdir()); // the baseline's bodies file goes here
const BATCH = 1000;
const PUBLISHERS = 8; // keep-alive connections of the lag phase
const TARGET_DPS = 5000;
const TARGET_P99_MS = 200;
const STREAM = 'benchwebhooks.events';
const TYPE = 'benchwebhooks.item';
const CLK_TCK = 100; // Linux USER_HZ

const say = (...a) => console.error('bench/webhooks:', ...a);
const now = () => performance.timeOrigin + performance.now(); // epoch ms, as the receivers note

// ---------------------------------------------------------------- HTTP

function request(agent, port, method, path, body, auth = true) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const headers = auth ? { Authorization: `Bearer ${TOKEN}` } : {};
    if (payload) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = payload.length;
    }
    const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers, timeout: 60000 }, (res) => {
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
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 60 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

const adminAgent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const recvAgent = new http.Agent({ keepAlive: true, maxSockets: 2 });
async function must(method, path, body, status) {
  const r = await request(adminAgent, BASE.port, method, path, body);
  if (r.status !== status) throw new Error(`${method} ${path} answered ${r.status}, expected ${status}: ${r.text.slice(0, 500)}`);
  return r.json;
}
async function receivers(method, path) {
  return Promise.all(RECV_PORTS.map(async (port) => {
    const r = await request(recvAgent, port, method, path, undefined, false);
    if (r.status !== 200) throw new Error(`receiver :${port} ${method} ${path} answered ${r.status}`);
    return r.json;
  }));
}
async function recvStats() {
  const all = await receivers('GET', '/_stats');
  const firsts = all.map((s) => s.first).filter((x) => x > 0);
  return {
    total: all.reduce((a, s) => a + s.total, 0),
    bytes: all.reduce((a, s) => a + s.bytes, 0),
    first: firsts.length ? Math.min(...firsts) : 0,
    last: Math.max(0, ...all.map((s) => s.last)),
    connections: all.reduce((a, s) => a + s.connections, 0),
  };
}
async function recvRecords() {
  const out = new Map();
  for (const r of await receivers('GET', '/_records')) for (const [k, v] of Object.entries(r)) out.set(k, v);
  return out;
}

// ---------------------------------------------------------------- CPU from /proc

// extra: another process of ours (the baseline sender), its own CPU only.
function cpuMark(extra = 0) {
  const u = process.cpuUsage();
  let recv = 0;
  for (const p of RECV_PIDS) {
    const t = statTicks(`/proc/${p}/stat`, false);
    recv = recv === null || t === null ? null : recv + t;
  }
  return {
    t: now(), cs: ctxSwitches(PID),
    sluice: statTicks(`/proc/${PID}/stat`, true),
    recv,
    sender: extra ? statTicks(`/proc/${extra}/stat`, false) : null,
    pg: PG_PID ? treeTicks(PG_PID) : null,
    backends: PG_PID ? new Map(backendsOf(PG_PID, DB).map((c) => [c, statTicks(`/proc/${c}/stat`, false) || 0])) : null,
    client: (u.user + u.system) / 1e6 * CLK_TCK,
    machine: machineTicks(),
    load: os.loadavg()[0],
  };
}

// µs of CPU per delivery of each process and of the rest of the machine; busy shares.
function cpuPer(a, b, n) {
  const us = (x0, x1) => (x0 === null || x1 === null ? null : ((x1 - x0) * 1e6) / CLK_TCK / n);
  let backends = null;
  if (a.backends && b.backends) {
    backends = 0;
    for (const [c, t] of b.backends) backends += t - (a.backends.get(c) || 0);
  }
  const out = {
    sluice: us(a.sluice, b.sluice), sender: us(a.sender, b.sender), recv: us(a.recv, b.recv), pg: us(a.pg, b.pg),
    backends: backends === null ? null : us(0, backends), client: us(a.client, b.client),
  };
  const busy = us(a.machine.busy, b.machine.busy);
  const ours = ['sluice', 'sender', 'recv', 'pg', 'client'].reduce((s, k) => s + (out[k] || 0), 0);
  out.rest = Math.max(0, busy - ours);
  const secs = (b.t - a.t) / 1000;
  // % of one core over the interval, for the bottleneck question.
  out.pct = {};
  for (const k of ['sluice', 'sender', 'recv', 'client', 'backends', 'rest']) out.pct[k] = out[k] === null ? null : (out[k] * n) / 1e4 / secs;
  out.busyPct = (100 * (b.machine.busy - a.machine.busy)) / (b.machine.total - a.machine.total) * os.cpus().length;
  out.cs = (b.cs - a.cs) / n;
  out.load = [a.load, b.load];
  return out;
}

// ---------------------------------------------------------------- the pieces

// RFC 3339 → epoch ms with the fraction kept (Date.parse stops at ms).
function parseTime(s) {
  const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$/.exec(s);
  if (!m) return NaN;
  return Date.parse(m[1] + m[3]) + (m[2] ? Number(m[2]) * 1000 : 0);
}

const filler = 'x'.repeat(200);
const eventOf = (n) => ({
  type: TYPE, stream: STREAM,
  data: { n, user_id: `user_${n % 97}`, amount_cents: (n * 7) % 10000, note: filler },
});

async function createHooks(prefix, start, count = HOOKS) {
  const names = [];
  for (let k = 0; k < count; k++) {
    const name = `${prefix}${k}`;
    const port = RECV_PORTS[k % RECV_PORTS.length];
    await must('POST', '/v1/webhooks', {
      name, url: `http://127.0.0.1:${port}/h/${name}`, filter: { streams: [STREAM] }, start,
      max_deliveries: 5, timeout_ms: 10000,
    }, 201);
    names.push(name);
  }
  return names;
}

// Every (webhook, event) arrived: missing and duplicated deliveries, against `ids`.
function check(records, names, ids, problems, what) {
  let dups = 0;
  for (const name of names) {
    const got = new Map();
    for (const [id] of records.get(name) || []) got.set(id, (got.get(id) || 0) + 1);
    let missing = 0;
    for (const id of ids) {
      const c = got.get(id) || 0;
      if (!c) missing++;
      else dups += c - 1;
    }
    const extra = [...got.keys()].filter((id) => !ids.has(id));
    if (missing) problems.push(`${what}: webhook ${name} never received ${missing} of ${ids.size} events`);
    if (extra.length) problems.push(`${what}: webhook ${name} received ${extra.length} events it was not owed (${extra.slice(0, 3).join(', ')})`);
  }
  return dups;
}

// Waits until the receivers hold `total` deliveries; calls onFirst at the first one. Fails
// when nothing arrives for `stallMs`.
async function waitDelivered(total, stallMs, onFirst) {
  let last = -1, lastChange = Date.now(), s;
  for (;;) {
    s = await recvStats();
    if (s.total > 0 && onFirst) { onFirst(); onFirst = null; }
    if (s.total >= total) return s;
    if (s.total !== last) { last = s.total; lastChange = Date.now(); }
    if (Date.now() - lastChange > stallMs) throw new Error(`deliveries stalled at ${s.total} of ${total} for ${stallMs / 1000} s`);
    await sleep(20);
  }
}

// sluice's own view: GET /v1/webhooks, until the counters of `names` cover `each` deliveries.
async function sluiceCounters(names, each) {
  const t0 = Date.now();
  let hooks;
  for (;;) {
    const list = (await must('GET', '/v1/webhooks', undefined, 200)).webhooks;
    hooks = list.filter((w) => names.includes(w.name));
    if (hooks.length === names.length && hooks.every((w) => w.delivered >= each && w.lag === 0)) break;
    if (Date.now() - t0 > 10000) break;
    await sleep(100);
  }
  return {
    ms: Date.now() - t0,
    delivered: hooks.reduce((a, w) => a + w.delivered, 0),
    failed: hooks.reduce((a, w) => a + w.failed, 0),
    dead: hooks.reduce((a, w) => a + (w.dead_letters || 0), 0),
    lagged: hooks.filter((w) => w.lag !== 0).length,
    statuses: [...new Set(hooks.map((w) => w.status))].join(','),
  };
}

// ---------------------------------------------------------------- phase 1: throughput

// GET /v1/events?stream= as NDJSON: one stored envelope a line, the bytes a webhook gets.
function exportBodies(file) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port: BASE.port, method: 'GET', agent: adminAgent, timeout: 60000,
      path: `/v1/events?stream=${encodeURIComponent(STREAM)}`,
      headers: { Authorization: `Bearer ${TOKEN}`, Accept: 'application/x-ndjson' },
    }, (res) => {
      if (res.statusCode !== 200) { res.resume(); return reject(new Error(`NDJSON export answered ${res.statusCode}`)); }
      const out = fs.createWriteStream(file);
      res.pipe(out);
      out.on('finish', resolve);
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('NDJSON export: no answer in 60 s')));
    req.on('error', reject);
    req.end();
  });
}

async function throughput(problems) {
  say(`publishing ${EVENTS} events to ${STREAM} in batches of ${BATCH}`);
  const ids = new Set();
  for (let b = 0; b < EVENTS; b += BATCH) {
    const n = Math.min(BATCH, EVENTS - b);
    const res = await must('POST', '/v1/events', Array.from({ length: n }, (_, i) => eventOf(b + i)), 201);
    for (const e of res.events) ids.add(e.id);
  }
  const total = HOOKS * EVENTS;
  await receivers('POST', '/_reset');
  const perfStop = PERF ? await perfStart(PID, PERF, say) : null;
  let a = null;
  const tCreate = now();
  say(`creating ${HOOKS} webhooks at start "0": ${total} deliveries owed`);
  const names = await createHooks('tp', '0');
  const s = await waitDelivered(total, 30000, () => { a = cpuMark(); });
  const b = cpuMark();
  if (perfStop) await perfStop();
  const wall = (s.last - s.first) / 1000;
  const res = {
    total: s.total, bytes: s.bytes, wall, dps: (s.total - 1) / wall,
    fromCreate: s.total / ((s.last - tCreate) / 1000),
    cpu: cpuPer(a, b, s.total), firstMs: s.first - tCreate, connections: s.connections,
  };
  say(`  ${s.total} deliveries in ${wall.toFixed(2)} s = ${res.dps.toFixed(0)}/s`);
  const records = await recvRecords();
  res.dups = check(records, names, ids, problems, 'throughput');
  res.counters = await sluiceCounters(names, EVENTS);
  if (res.counters.delivered !== total) problems.push(`throughput: sluice counts ${res.counters.delivered} delivered, the receivers ${s.total}`);
  if (res.counters.failed) problems.push(`throughput: sluice counts ${res.counters.failed} failed attempts (the receivers answer 204)`);
  for (const name of names) await must('DELETE', `/v1/webhooks/${name}`, undefined, 204);
  return { res, ids };
}

// ---------------------------------------------------------------- phase 2: the baseline

async function baseline(problems, ids) {
  const file = `${WORKDIR}/bodies.ndjson`;
  await exportBodies(file);
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length).length;
  if (lines !== EVENTS) throw new Error(`baseline: the NDJSON export has ${lines} envelopes, expected ${EVENTS}`);
  const names = Array.from({ length: HOOKS }, (_, k) => `base${k}`);
  const urls = names.map((n, k) => `http://127.0.0.1:${RECV_PORTS[k % RECV_PORTS.length]}/h/${n}`);
  await receivers('POST', '/_reset');
  const child = spawn(process.execPath, [`${__dirname}/sender.js`, file, urls.join(','), '16'], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const done = new Promise((resolve, reject) => {
    child.stdout.on('data', (c) => { out += c; if (out.includes('\n')) resolve(JSON.parse(out)); });
    child.on('exit', (code) => reject(new Error(`baseline sender exited ${code} before finishing`)));
  });
  done.catch(() => {});
  await sleep(500); // it has read its bodies
  say(`baseline: node:http sender (pid ${child.pid}), the same ${EVENTS} envelopes to ${HOOKS} paths, 16 in flight each`);
  const a = cpuMark(child.pid);
  child.stdin.write('go\n');
  const s = await waitDelivered(HOOKS * EVENTS, 30000);
  const result = await done;
  const b = cpuMark(child.pid);
  child.stdin.end();
  const wall = (s.last - s.first) / 1000;
  const res = {
    total: s.total, bytes: s.bytes, wall, dps: (s.total - 1) / wall, senderMs: result.ms,
    cpu: cpuPer(a, b, s.total), connections: s.connections, failed: result.failed,
  };
  say(`  ${s.total} deliveries in ${wall.toFixed(2)} s = ${res.dps.toFixed(0)}/s`);
  if (result.failed) problems.push(`baseline: ${result.failed} posts failed`);
  res.dups = check(await recvRecords(), names, ids, problems, 'baseline');
  return res;
}

// ---------------------------------------------------------------- phase 3: lag

async function lag(problems, step) {
  const { rate, hooks } = step;
  const names = await createHooks(`lag${rate}x${hooks}_`, '$', hooks);
  // One event delivered to every one of them first: the engine holds them all before the
  // clock starts (and has dropped the deleted earlier webhooks, which would take it too).
  await receivers('POST', '/_reset');
  await must('POST', '/v1/events', eventOf(-1), 201);
  const t0w = Date.now();
  for (;;) {
    const by = Object.assign({}, ...(await receivers('GET', '/_stats')).map((x) => x.by));
    if (names.every((k) => by[k] >= 1)) break;
    if (Date.now() - t0w > 15000) throw new Error('lag: the first event did not reach every webhook in 15 s');
    await sleep(20);
  }
  await sleep(300);
  await receivers('POST', '/_reset');

  const pubAgent = new http.Agent({ keepAlive: true, maxSockets: PUBLISHERS });
  const batch = Math.min(LAG_BATCH, rate);
  const batches = Math.round((rate * SECONDS) / batch);
  const every = (batch * 1000) / rate; // ms between batches
  const sent = new Map(); // id → { sent, ack, time }
  const pubLat = [];
  let late = 0, inFlight = 0, maxInFlight = 0;
  say(`lag: ${rate} events/s for ${SECONDS} s (${batches} batches of ${batch}, every ${every} ms) to ${hooks} webhook(s)`);
  const a = cpuMark();
  const t0 = now();
  const pending = [];
  let n = 0;
  for (let k = 0; k < batches; k++) {
    const due = t0 + k * every;
    const wait = due - now();
    if (wait > 1) await sleep(wait);
    else if (wait < -every) late++;
    const body = Array.from({ length: batch }, () => eventOf(n++));
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const ts = now();
    pending.push(request(pubAgent, BASE.port, 'POST', '/v1/events', body).then((r) => {
      const ack = now();
      inFlight--;
      if (r.status !== 201) throw new Error(`publish answered ${r.status}: ${r.text.slice(0, 300)}`);
      pubLat.push(ack - ts);
      for (const e of r.json.events) sent.set(e.id, { sent: ts, ack, time: parseTime(e.time) });
    }));
  }
  await Promise.all(pending);
  const tPub = now();
  const published = sent.size;
  const s = await waitDelivered(hooks * published, 30000);
  const b = cpuMark();
  pubAgent.destroy();
  const records = await recvRecords();
  const dups = check(records, names, new Set(sent.keys()), problems, `lag ${rate}x${hooks}`);
  const fromTime = [], fromAck = [], fromSent = [];
  for (const name of names) {
    for (const [id, t] of records.get(name) || []) {
      const e = sent.get(id);
      if (!e) continue;
      fromTime.push(t - e.time);
      fromAck.push(t - e.ack);
      fromSent.push(t - e.sent);
    }
  }
  for (const x of [fromTime, fromAck, fromSent, pubLat]) x.sort((p, q) => p - q);
  const stat = (x) => ({ p50: pct(x, 0.5), p99: pct(x, 0.99), max: x[x.length - 1] });
  const counters = await sluiceCounters(names, published);
  if (counters.failed) problems.push(`lag ${rate}x${hooks}: sluice counts ${counters.failed} failed attempts`);
  for (const name of names) await must('DELETE', `/v1/webhooks/${name}`, undefined, 204);
  return {
    rate: rate, hooks, published, pubRate: published / ((tPub - t0) / 1000), deliveries: s.total,
    dps: s.total / ((s.last - t0) / 1000), late, maxInFlight, batch,
    time: stat(fromTime), ack: stat(fromAck), sent: stat(fromSent), pub: stat(pubLat), dups, connections: s.connections,
    cpu: cpuPer(a, b, s.total), counters,
  };
}

// ---------------------------------------------------------------- the report

function report(tp, base, lags, problems) {
  const f1 = (x) => (x === null || x === undefined || Number.isNaN(x) ? '?' : x.toFixed(1));
  const f2 = (x) => (x === null || x === undefined || Number.isNaN(x) ? '?' : x.toFixed(2));
  const f0 = (x) => (x === null || x === undefined || Number.isNaN(x) ? '?' : x.toFixed(0));
  const lines = [];
  const out = (s) => lines.push(s);
  const cols = [['sluice', 'sluice'], ['sender', 'sender'], ['recv', 'recv'], ['backends', 'pg:db'], ['pg', 'pg:all'], ['client', 'driver'], ['rest', 'rest']];
  const cpuRow = (c) => cols.map(([k]) => (k === 'sender' && c[k] === null ? '-' : f1(c[k])).padStart(7)).join(' ');
  const pctRow = (c, keys) => keys.map((k) => `${k === 'backends' ? 'pg:db' : k} ${f0(c.pct[k])}%`).join(', ');
  const ratio = tp.dps / base.dps;
  const head = lags[0];
  const dpsVerdict = tp.dps >= TARGET_DPS ? 'PASS' : 'MISS';
  const lagVerdict = head.time.p99 < TARGET_P99_MS ? 'PASS' : 'MISS';
  const ok = !problems.length;
  const row = (label, n, rate, c) =>
    `  ${label.padEnd(50)} ${String(n).padStart(10)} ${f0(rate).padStart(7)}   ${cpuRow(c)}   ${(c.cs === undefined ? '-' : f2(c.cs)).padStart(9)}   ${f0(c.busyPct)}%; ${c.load.map((x) => x.toFixed(2)).join(' → ')}`;
  out(`\nSluice webhooks: ${HOOKS} webhooks, ${RECV_PORTS.length} receiver process(es) answering 204 (node:http), ` +
    `${Math.round(tp.bytes / tp.total)}-byte bodies; ${os.cpus().length} cores shared by everything\n`);
  out(`  ${'phase'.padEnd(50)} ${'deliveries'.padStart(10)} ${'per s'.padStart(7)}   ${cols.map(([, h]) => h.padStart(7)).join(' ')}   sluice cs   machine busy; load`);
  out(`  ${''.padEnd(50)} ${''.padStart(10)} ${''.padStart(7)}   ${'CPU µs per delivery'.padEnd(55)}   per dlv`);
  out(row(`sluice, ${HOOKS} webhooks, ${EVENTS} events owed at start "0"`, tp.total, tp.dps, tp.cpu));
  out(row(`baseline: node:http sender, same bodies, ${HOOKS}x16`, base.total, base.dps, base.cpu));
  for (const l of lags) out(row(`lag: ${l.rate} events/s x ${l.hooks} webhook(s), ${SECONDS} s`, l.deliveries, l.dps, l.cpu));
  out('');
  out(`  throughput: first delivery ${f0(tp.firstMs)} ms after the first webhook was created (definitions are read every second);`);
  out(`    ${f0(tp.fromCreate)} deliveries/s counting from the creation; % of a core while delivering: ${pctRow(tp.cpu, ['sluice', 'recv', 'backends', 'client', 'rest'])}`);
  out(`    sluice's counters (GET /v1/webhooks) after ${tp.counters.ms} ms: delivered ${tp.counters.delivered}, failed ${tp.counters.failed}, ` +
    `dead letters ${tp.counters.dead}, webhooks with lag ${tp.counters.lagged}; duplicates at the receivers ${tp.dups}; ` +
    `connections accepted ${tp.connections}`);
  out(`  baseline: ${base.total} deliveries in ${f2(base.wall)} s; % of a core: ${pctRow(base.cpu, ['sender', 'recv', 'sluice', 'client', 'rest'])}; ` +
    `failed posts ${base.failed}; duplicates ${base.dups}; connections accepted ${base.connections}`);
  out(`    sluice / baseline: deliveries/s ${f2(ratio)}x; CPU per delivery of the sender: sluice ${f1(tp.cpu.sluice)} µs + its PostgreSQL ` +
    `backends ${f1(tp.cpu.backends)} µs vs node:http ${f1(base.cpu.sender)} µs; the receiver's ${f1(tp.cpu.recv)} vs ${f1(base.cpu.recv)} µs`);
  for (const l of lags) {
    out(`  lag ${l.rate} events/s x ${l.hooks}: published ${l.published} events at ${f0(l.pubRate)}/s (publish p50/p99 ${f1(l.pub.p50)}/${f1(l.pub.p99)} ms, ` +
      `${l.late} batches of ${l.batch} late by more than one interval, at most ${l.maxInFlight} publishes in flight)`);
    out(`    delivery arrival minus the event's time:  p50 ${f1(l.time.p50)} ms, p99 ${f1(l.time.p99)} ms, max ${f1(l.time.max)} ms`);
    out(`    delivery arrival minus the publish's 201: p50 ${f1(l.ack.p50)} ms, p99 ${f1(l.ack.p99)} ms, max ${f1(l.ack.max)} ms`);
    out(`    delivery arrival minus the publish sent:  p50 ${f1(l.sent.p50)} ms, p99 ${f1(l.sent.p99)} ms, max ${f1(l.sent.max)} ms`);
    out(`    % of a core: ${pctRow(l.cpu, ['sluice', 'recv', 'backends', 'client', 'rest'])}; sluice's counters: delivered ${l.counters.delivered}, ` +
      `failed ${l.counters.failed}; duplicates ${l.dups}; connections ${l.connections}`);
  }
  out('');
  out(`  deliveries/s, ${HOOKS} webhooks (first to last arrival)         ${f0(tp.dps).padStart(8)}/s   baseline ${f0(base.dps)}/s (${f2(ratio)}x)   target >= ${TARGET_DPS}/s   ${dpsVerdict}`);
  out(`  lag p99 at ${head.rate} events/s x ${head.hooks} webhook(s) (from the event's time)   ${f1(head.time.p99).padStart(8)} ms   target < ${TARGET_P99_MS} ms   ${lagVerdict}`);
  for (const l of lags.slice(1)) {
    out(`  lag p99 at ${l.rate} events/s x ${l.hooks} webhook(s) (${l.rate * l.hooks} deliveries/s)    ${f1(l.time.p99).padStart(8)} ms   (informative)`);
  }
  out(`  every delivery arrived, sluice's counters agree                 ${ok ? 'yes' : 'NO'}   ${ok ? 'PASS' : 'FAIL'}`);
  for (const p of problems.slice(0, 10)) out(`    PROBLEM ${p}`);
  out('');
  out('  CPU from /proc/<pid>/stat: sluice (all threads), sender = the baseline\'s node:http process,');
  out('  recv = the receiver processes, pg:db = the PostgreSQL backends of sluice\'s database,');
  out('  pg:all = the whole cluster (shared: other clients count too), driver = this Node process');
  out('  (publishing, polling the receivers), rest = the machine\'s busy time minus all of those:');
  out('  other work on the machine, i.e. noise. Throughput and baseline CPU are counted from the');
  out('  first arrival to the last; lag CPU over the publishing and its deliveries.');
  console.log(lines.join('\n'));

  if (ROWS) {
    const cpuCell = (c) => ['sluice', 'recv', 'backends'].map((k) => f1(c[k])).join(' / ');
    const rows = [
      [`deliveries/s to a 204 receiver, ${HOOKS} webhooks, ${EVENTS} events owed each`, `${f0(tp.dps)}/s`,
        `node:http sender, same bodies = ${f0(base.dps)}/s (${f2(ratio)}x)`, `>= ${TARGET_DPS}/s`, dpsVerdict],
      [`lag p99 (event time → receiver), ${head.rate} events/s x ${head.hooks} webhook(s)`, `${f1(head.time.p99)} ms (p50 ${f1(head.time.p50)}, max ${f1(head.time.max)})`, '-', `< ${TARGET_P99_MS} ms`, lagVerdict],
      ...lags.slice(1).map((l) => [`lag p99, ${l.rate} events/s x ${l.hooks} webhooks (${l.rate * l.hooks} deliveries/s)`, `${f1(l.time.p99)} ms (p50 ${f1(l.time.p50)})`, '-', '-', '-']),
      ['CPU µs/delivery: sluice / receiver / its PG backends', cpuCell(tp.cpu), `sender / receiver = ${f1(base.cpu.sender)} / ${f1(base.cpu.recv)}`, '-', '-'],
      ['every delivery arrived, counters agree', ok ? `${tp.total + lags.reduce((x, l) => x + l.deliveries, 0)} deliveries, ${tp.dups + lags.reduce((x, l) => x + l.dups, 0)} duplicates` : 'NO', '-', 'all', ok ? 'PASS' : 'FAIL'],
    ];
    fs.writeFileSync(ROWS, rows.map((r) => r.join('\t')).join('\n') + '\n');
  }
  return { broken: !ok, miss: dpsVerdict !== 'PASS' || lagVerdict !== 'PASS' };
}

async function main() {
  if (!(EVENTS >= 1 && HOOKS >= 1 && RATE >= 1 && SECONDS >= 1 && LAG_BATCH >= 1 && LAG_BATCH <= 1000)) {
    throw new Error('bad BENCH_EVENTS / BENCH_HOOKS / BENCH_RATE / BENCH_SECONDS / BENCH_LAG_BATCH');
  }
  const problems = [];
  try {
    const { res: tp, ids } = await throughput(problems);
    const base = await baseline(problems, ids);
    await sleep(1500); // the engine reads definitions every second: the deleted ones go
    const lags = [];
    for (const step of LAG_PLAN) {
      lags.push(await lag(problems, step));
      await sleep(1500);
    }
    return report(tp, base, lags, problems);
  } finally {
    adminAgent.destroy();
    recvAgent.destroy();
  }
}

main().then(({ broken, miss }) => {
  if (broken) process.exit(1);
  if (miss && STRICT) { say('a target was missed (BENCH_STRICT=1)'); process.exit(3); }
  process.exit(0);
}, (e) => {
  say(e.stack || String(e));
  process.exit(1);
});
