'use strict';
// Integration-test harness: starts the real `sluice` binary against a real PostgreSQL.
//
// - freshDatabase() creates an empty database `t_<random>` on the server named by
//   SLUICE_DATABASE_URL (a superuser role) and returns its URL and a drop() function.
// - startSluice() starts one sluice on free ports (SLUICE_HTTP_PORT=0, SLUICE_WS_PORT=0)
//   with a random admin token, waits for the JSON log line `"msg":"listening"` and
//   returns a handle: {url, httpPort, wsPort, adminToken, dbUrl, proc, logs, stop(), kill9()}.
//   stop() sends SIGTERM and asserts exit code 0 (under AddressSanitizer a leak makes the
//   exit code nonzero, so this also catches leaks); failures carry the stderr tail.
// - Every child process is killed (SIGKILL) when the test process exits, whatever happened,
//   and its pid is written to $SLUICE_IT_TMP/pids so run.sh can reap it if node itself dies.
// - Every HTTP answer from a sluice started here (through Client, or a test's own fetch()) is
//   checked against openapi/openapi.yaml by lib/contract.js: an undocumented status or content
//   type, or a JSON body that does not validate, fails the request (and so the test) with the
//   operation, the status and ajv's errors. Streams (NDJSON, SSE): status and content type.
//   SLUICE_IT_CONTRACT=0 turns the check off (to see a test's own failure first).

const { spawn, execFile, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const assert = require('node:assert/strict');
const { contract, isStream } = require('./contract');

const REPO = path.resolve(__dirname, '..', '..', '..');
const SLUICE_BIN = process.env.SLUICE_BIN || path.join(REPO, 'build', 'sluice');
// run.sh makes one directory per run (logs, pid and database markers) and reaps it; a test
// file run on its own makes and removes its own.
const OWN_TMP = !process.env.SLUICE_IT_TMP;
const TMP = process.env.SLUICE_IT_TMP || fs.mkdtempSync('/tmp/sluice-it-');
for (const d of ['pids', 'dbs', 'logs']) fs.mkdirSync(path.join(TMP, d), { recursive: true });

// Slow builds (ASan/UBSan) start and stop more slowly: bounds are generous, they only
// prove "no hang".
const START_TIMEOUT_MS = Number(process.env.SLUICE_IT_START_TIMEOUT_MS || 60000);
const STOP_TIMEOUT_MS = Number(process.env.SLUICE_IT_STOP_TIMEOUT_MS || 30000);
const REQUEST_TIMEOUT_MS = 30000;

const live = new Set();      // child processes not yet seen exiting
const liveDbs = new Map();   // database name → base URL, not yet dropped

// Last resort when a test failed before its cleanup: children are unref'd (a leaked sluice
// never keeps the test process alive), and here they are killed and their databases dropped.
function killAllSync() {
  for (const p of live) {
    try { p.kill('SIGKILL'); } catch (_) { /* already gone */ }
  }
  for (const [name, base] of liveDbs) {
    try { psql(base, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`); } catch (_) { /* best effort */ }
    try { fs.rmSync(path.join(TMP, 'dbs', name), { force: true }); } catch (_) { /* best effort */ }
  }
  liveDbs.clear();
  if (OWN_TMP) { try { fs.rmSync(TMP, { recursive: true, force: true }); } catch (_) { /* best effort */ } }
}
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => { killAllSync(); process.exit(130); });
}

// ---------------------------------------------------------------- the OpenAPI contract

const CHECK_CONTRACT = process.env.SLUICE_IT_CONTRACT !== '0';
const sluiceOrigins = new Set(); // http://127.0.0.1:<port> of every sluice started here
const rawFetch = globalThis.fetch;

function checkAnswer(a) {
  if (CHECK_CONTRACT) contract().assertAnswer(a);
}

// Tests that use fetch() directly (SSE readers, long polls, raw bodies) get the same check:
// a JSON answer is read whole, checked, and handed back as an equivalent Response; a stream
// is checked by status and content type and handed back untouched.
globalThis.fetch = async function checkedFetch(input, init = {}) {
  const res = await rawFetch(input, init);
  const u = new URL(input instanceof Request ? input.url : String(input));
  if (!CHECK_CONTRACT || !sluiceOrigins.has(u.origin)) return res;
  const method = String(init.method || (input instanceof Request ? input.method : 'GET')).toUpperCase();
  const contentType = res.headers.get('content-type') || '';
  const a = { method, path: u.pathname, status: res.status, contentType, headers: res.headers };
  if (isStream(contentType)) {
    checkAnswer(a);
    return res;
  }
  const text = await res.text();
  checkAnswer({ ...a, text });
  const empty = [101, 204, 205, 304].includes(res.status) || method === 'HEAD';
  return new Response(empty ? null : text, { status: res.status, statusText: res.statusText, headers: res.headers });
};

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// Resolves like `promise`, or with `onTimeout` after ms; the timer never outlives the race.
function race(promise, ms, onTimeout) {
  let t;
  return Promise.race([promise, new Promise((r) => { t = setTimeout(() => r(onTimeout), ms); })])
    .finally(() => clearTimeout(t));
}

function rand(n = 8) { return crypto.randomBytes(n).toString('hex'); }

// Poll fn until it returns a truthy value (which is returned); throws after timeoutMs with
// the last value or error in the message.
async function waitFor(fn, { timeout = 10000, interval = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${
        last instanceof Error ? last.stack : JSON.stringify(last)}`);
    }
    await sleep(interval);
  }
}

// ---------------------------------------------------------------- PostgreSQL

function baseDatabaseUrl() {
  const u = process.env.SLUICE_DATABASE_URL;
  if (!u) throw new Error('SLUICE_DATABASE_URL must name a PostgreSQL superuser connection');
  return u;
}

function withDatabase(url, dbname) {
  const u = new URL(url);
  u.pathname = '/' + dbname;
  return u.toString();
}

function psql(url, sql) {
  return execFileSync('psql', [url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000,
  }).trim();
}

// Creates an empty database on the server of `base` (default SLUICE_DATABASE_URL).
async function freshDatabase(base = baseDatabaseUrl()) {
  const name = 't_' + rand(6);
  psql(base, `CREATE DATABASE ${name}`);
  const marker = path.join(TMP, 'dbs', name);
  fs.writeFileSync(marker, base + '\n');
  liveDbs.set(name, base);
  let dropped = false;
  return {
    name,
    url: withDatabase(base, name),
    drop() {
      if (dropped) return;
      dropped = true;
      liveDbs.delete(name);
      psql(base, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      fs.rmSync(marker, { force: true });
    },
  };
}

// ---------------------------------------------------------------- sluice

function tail(lines, n = 60) { return lines.slice(-n).join('\n'); }

function parseLogLine(line) {
  if (!line.startsWith('{')) return null;
  try { return JSON.parse(line); } catch (_) { return null; }
}

// Starts sluice. opts.env overrides the environment; opts.dbUrl names its database (default:
// a fresh one, dropped by stop()/kill9() unless opts.keepDb).
async function startSluice(opts = {}) {
  let db = null;
  let dbUrl = opts.dbUrl;
  if (!dbUrl) {
    db = await freshDatabase();
    dbUrl = db.url;
  }
  const adminToken = opts.adminToken || 'adm_' + rand(16);
  const env = {
    ...process.env,
    SLUICE_DATABASE_URL: dbUrl,
    SLUICE_HTTP_PORT: '0',
    SLUICE_WS_PORT: '0',
    SLUICE_BIND: '127.0.0.1',
    SLUICE_ADMIN_TOKEN: adminToken,
    SLUICE_AUTH: 'on',
    SLUICE_LOG_LEVEL: 'info',
    // The publish-path tests use free-form types; the schema tests pass '0'.
    SLUICE_ALLOW_UNKNOWN_TYPES: '1',
    // Instances of one database share their Redis keys; those of another never see them, so
    // test files may run side by side on the one Redis.
    SLUICE_REDIS_PREFIX: `sluice:${new URL(dbUrl).pathname.slice(1)}:`,
    // A replica in the shared run dir is another database's: a test that wants one says so.
    SLUICE_READ_DATABASE_URL: undefined,
    ...(opts.env || {}),
  };
  for (const k of Object.keys(env)) if (env[k] === undefined || env[k] === null) delete env[k];
  if (!fs.existsSync(SLUICE_BIN)) throw new Error(`sluice binary not found at ${SLUICE_BIN}`);

  const label = (opts.name || 'sluice') + '-' + rand(3);
  const logPath = path.join(TMP, 'logs', label + '.log');
  const logFile = fs.openSync(logPath, 'a');
  const proc = spawn(SLUICE_BIN, opts.args || [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  proc.unref();
  proc.stdout.unref();
  proc.stderr.unref();
  const pidFile = path.join(TMP, 'pids', String(proc.pid));
  fs.writeFileSync(pidFile, SLUICE_BIN + '\n');

  const logs = [];       // raw stderr lines
  const stdout = [];
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      live.delete(proc);
      fs.rmSync(pidFile, { force: true });
      resolve({ code, signal });
    });
  });
  let exitInfo = null;
  exited.then((e) => { exitInfo = e; });

  let pending = '';
  let onListening;
  const listening = new Promise((r) => { onListening = r; });
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => {
    fs.writeSync(logFile, chunk);
    pending += chunk;
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      logs.push(line);
      const j = parseLogLine(line);
      if (j && j.msg === 'listening') onListening(j);
    }
  });
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (c) => { stdout.push(c); fs.writeSync(logFile, c); });
  const streamsClosed = Promise.all([
    new Promise((r) => proc.stderr.on('close', r)),
    new Promise((r) => proc.stdout.on('close', r)),
  ]).then(() => { try { fs.closeSync(logFile); } catch (_) { /* closed */ } });

  const first = await race(Promise.race([listening, exited.then(() => 'exited')]), START_TIMEOUT_MS, 'timeout');
  if (first === 'exited' || first === 'timeout') {
    proc.ref();
    if (first === 'timeout') { proc.kill('SIGKILL'); await exited; }
    await streamsClosed;
    if (db && !opts.keepDb) { try { db.drop(); } catch (_) { /* best effort */ } }
    throw new Error(`sluice did not start (${first === 'timeout' ? 'no "listening" within ' +
      START_TIMEOUT_MS + ' ms' : 'exited ' + JSON.stringify(exitInfo)}); stderr:\n${tail(logs)}`);
  }
  const httpPort = Number(first.http_port);
  const wsPort = Number(first.ws_port);
  // ws_port is 0 while there is no WebSocket server (before the live-subscriptions issue).
  if (!(Number.isInteger(httpPort) && httpPort > 0) || !(Number.isInteger(wsPort) && wsPort >= 0)) {
    proc.ref();
    proc.kill('SIGKILL');
    await exited;
    if (db && !opts.keepDb) { try { db.drop(); } catch (_) { /* best effort */ } }
    throw new Error(`the listening line lacks integer http_port/ws_port: ${JSON.stringify(first)}`);
  }

  const url = `http://127.0.0.1:${httpPort}`;
  sluiceOrigins.add(url);
  // While a test waits for this process to end, it must keep the event loop alive.
  const holdLoop = () => {
    proc.ref();
    try { proc.stdout.ref(); proc.stderr.ref(); } catch (_) { /* closed */ }
  };
  const handle = {
    url, httpPort, wsPort, adminToken, dbUrl, db, proc, logs, stdout, logPath, label,
    output() { return stdout.join('') + '\n' + logs.join('\n'); },
    get exitInfo() { return exitInfo; },
    exited,
    // SIGTERM; resolves when it exited with code 0, rejects (with the stderr tail) otherwise.
    async stop({ expectCode = 0, timeout = STOP_TIMEOUT_MS } = {}) {
      holdLoop();
      if (exitInfo === null) proc.kill('SIGTERM');
      const r = await race(exited, timeout, null);
      try {
        if (r === null) {
          proc.kill('SIGKILL');
          await exited;
          await streamsClosed;
          throw new Error(`sluice did not exit within ${timeout} ms of SIGTERM; stderr:\n${tail(logs)}`);
        }
        await streamsClosed;
        if (expectCode !== null && (r.code !== expectCode || r.signal !== null)) {
          throw new Error(`sluice exited with ${JSON.stringify(r)} after SIGTERM, expected code ${
            expectCode}; stderr:\n${tail(logs, 120)}`);
        }
        return r;
      } finally {
        if (db && !opts.keepDb) db.drop();
      }
    },
    async kill9({ dropDb = false } = {}) {
      holdLoop();
      if (exitInfo === null) proc.kill('SIGKILL');
      const r = await exited;
      await streamsClosed;
      if (dropDb && db) db.drop();
      return r;
    },
    // Cleanup for after(): never throws if stop() already ran; kills if it is still running.
    async cleanup() {
      holdLoop();
      if (exitInfo === null) { proc.kill('SIGKILL'); await exited; }
      await streamsClosed;
      if (db && !opts.keepDb) { try { db.drop(); } catch (_) { /* best effort */ } }
    },
    client(token = adminToken) { return new Client(url, token); },
    logJson() { return logs.map(parseLogLine).filter(Boolean); },
  };
  return handle;
}

// Runs `sluice <args>` to completion (for the CLI subcommands).
function runSluiceCli(args, { env = {}, timeout = 60000 } = {}) {
  return new Promise((resolve) => {
    execFile(SLUICE_BIN, args, { env: { ...process.env, ...env }, timeout, encoding: 'utf8' },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0,
          signal: err ? err.signal : null, stdout, stderr });
      });
  });
}

// ---------------------------------------------------------------- HTTP

// Thin fetch wrapper. Returns {status, headers, text, body, contentType}; body is the parsed
// JSON when the answer is JSON (application/json, application/problem+json).
class Client {
  constructor(url, token) { this.url = url; this.token = token; }

  withToken(token) { return new Client(this.url, token); }

  async request(method, p, { body, json, headers = {}, token, timeout = REQUEST_TIMEOUT_MS } = {}) {
    const h = { ...headers };
    const tok = token === undefined ? this.token : token;
    if (tok !== null && tok !== undefined && !('authorization' in lower(h))) h.Authorization = `Bearer ${tok}`;
    let b = body;
    if (json !== undefined) {
      b = JSON.stringify(json);
      if (!('content-type' in lower(h))) h['Content-Type'] = 'application/json';
    }
    const res = await rawFetch(this.url + p, { method, headers: h, body: b, signal: AbortSignal.timeout(timeout) });
    const text = await res.text();
    const contentType = res.headers.get('content-type') || '';
    checkAnswer({ method, path: p, status: res.status, contentType, text, headers: res.headers });
    let parsed;
    if (/json/.test(contentType) && !/ndjson/.test(contentType) && text.length) {
      try { parsed = JSON.parse(text); } catch (e) { parsed = undefined; }
    }
    return { status: res.status, headers: res.headers, text, body: parsed, contentType };
  }

  get(p, o) { return this.request('GET', p, o); }
  post(p, json, o = {}) { return this.request('POST', p, { ...o, json }); }
  del(p, o) { return this.request('DELETE', p, o); }
  publish(envelope, o = {}) { return this.post('/v1/events', envelope, o); }
}

function lower(h) {
  const o = {};
  for (const k of Object.keys(h)) o[k.toLowerCase()] = h[k];
  return o;
}

function describeRes(res) {
  return `HTTP ${res.status} ${res.contentType} ${res.text.slice(0, 1500)}`;
}

// Asserts an RFC 9457 problem answer with the given status and code; returns the body.
function assertProblem(res, status, code) {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${describeRes(res)}`);
  assert.match(res.contentType, /^application\/problem\+json/, `problem content type: ${describeRes(res)}`);
  assert.ok(res.body && typeof res.body === 'object', `problem body is JSON: ${describeRes(res)}`);
  assert.equal(res.body.code, code, `problem code: ${describeRes(res)}`);
  assert.equal(res.body.status, status, `problem status field: ${describeRes(res)}`);
  assert.equal(res.body.type, `https://sluice.dev/problems/${code}`, `problem type: ${describeRes(res)}`);
  assert.equal(typeof res.body.title, 'string', `problem title: ${describeRes(res)}`);
  return res.body;
}

function assertStatus(res, status) {
  assert.equal(res.status, status, `expected HTTP ${status}, got ${describeRes(res)}`);
  return res.body;
}

// Creates an API key through POST /v1/keys with the admin token.
async function createKey(sluice, tenant, scopes, name) {
  const res = await sluice.client().post('/v1/keys', { tenant_id: tenant, scopes, name: name || `k-${rand(3)}` });
  assertStatus(res, 201);
  return res.body;
}

const TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ULID_RE = /^[0-9A-HJKMNP-TV-Z]{26}$/;

// Reads every page of GET /v1/events?<query> (query without `after`/`limit` unless given);
// returns {events, pages}.
async function readAllPages(client, query = {}, { limit = 100, maxPages = 10000 } = {}) {
  const events = [];
  let after = query.after;
  let pages = 0;
  for (;;) {
    const q = new URLSearchParams({ ...query, limit: String(limit) });
    if (after !== undefined) q.set('after', String(after));
    const res = await client.get('/v1/events?' + q);
    assertStatus(res, 200);
    assert.ok(Array.isArray(res.body.events), `page has events[]: ${describeRes(res)}`);
    assert.equal(typeof res.body.has_more, 'boolean', `page has has_more: ${describeRes(res)}`);
    assert.ok(res.body.events.length <= limit, 'page respects limit');
    events.push(...res.body.events);
    pages++;
    if (!res.body.has_more) break;
    assert.ok(res.body.events.length > 0, 'has_more with an empty page');
    assert.equal(res.body.next_after, res.body.events[res.body.events.length - 1].position,
      'next_after is the position of the last event of the page');
    after = res.body.next_after;
    assert.ok(pages < maxPages, 'paging terminates');
  }
  return { events, pages };
}

module.exports = {
  REPO, SLUICE_BIN, TMP, sleep, race, rand, waitFor, freshDatabase, withDatabase, psql, baseDatabaseUrl,
  startSluice, runSluiceCli, Client, checkAnswer, assertProblem, assertStatus, describeRes, createKey,
  readAllPages, TIME_RE, ULID_RE,
};
