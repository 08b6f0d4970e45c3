'use strict';
// Sealed tenants at the edge (issue 13): what Sluice gives, and what it lets a peer cost it,
// before that peer has shown a valid token. Against the real binary on real sockets:
//   1. GET /v1/stats shows the caller's tenant only: tenant B never sees tenant default's
//      streams and types, nor default B's.
//   2. GET /v1/info without a valid token (none, or an unknown one) is version, ports and auth
//      mode only: no head_position, lag, connections or limits; with a token, everything.
//   3. GET /metrics, with SLUICE_METRICS_TOKEN set, asks for that token as a bearer token
//      (no token, an API key, or a wrong token: 401); from loopback without the setting it
//      answers (metrics.test.js scrapes it so; the non-loopback 403 is a unit test of the
//      address check, tests/unit/server/loopback.c, as this machine has no other address to
//      come from).
//   4. Bodies before authentication: a body sent to a route that takes none (GET /health,
//      chunked or with a Content-Length) is refused from the headers with a 413 problem and
//      the connection closed, without the body being read (as is any request answered from its
//      headers, a 404 or a 401, that announced a body); 64 connections that each send
//      3 MB to GET /health grow the server by less than RSS_BOUND_MIB (they grew it by about
//      200 MB when each body was buffered whole), and so do 500 unauthenticated slow bodies
//      (POST headers announcing 4 MB, then trickled bytes), each of which is answered and
//      closed. The RSS bounds are memory bounds, generous for the sanitizer build, not timing.
//   5. A WebSocket that does not authenticate within 5 s is sent an `unauthenticated` error
//      and closed with 1008; one that authenticates by its first message, or by ?token=, stays
//      open past that deadline.
// Waits are bounded only to prove "no hang".
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const WebSocket = require('ws');
const h = require('./lib/harness');

const METRICS_TOKEN = 'mt_' + h.rand(12);
const RSS_BOUND_MIB = 50;     // growth allowed under the body floods (release: a few MiB)
const BIG_BODY = 3 * 1024 * 1024; // what each of the 64 connections sends to GET /health
const BIG_CONNECTIONS = 64;
const SLOW_BODIES = 500;
const TRICKLE_MS = 200;       // a slow body's pace: some bytes every TRICKLE_MS
const WAIT_MS = 60000;        // "no hang" bound for one expected state
const WS_DEADLINE_MS = 5000;  // API.md: authenticate within 5 s

function vmRssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

let s;
let c;
let keyB; // tenant B: publish + read + subscribe

before(async () => {
  s = await h.startSluice({ name: 'unauth-edge', env: { SLUICE_METRICS_TOKEN: METRICS_TOKEN, SLUICE_ACCESS_LOG: 'off' } });
  c = s.client();
  keyB = await h.createKey(s, `tenant-b-${h.rand(3)}`, ['publish', 'read', 'subscribe']);
});

after(async () => {
  if (s) await s.stop().finally(() => s.cleanup());
});

// A raw HTTP exchange: writes `head` (and `body` when given), then `trickle` every TRICKLE_MS
// until the server closes; resolves {status, data, closed} once closed, or after `ms`.
function raw(head, { body = null, trickle = null, ms = WAIT_MS } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(s.httpPort, '127.0.0.1');
    let data = '';
    let timer = null;
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(limit);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      resolve({ status: m ? Number(m[1]) : null, data, closed, sock });
    };
    const limit = setTimeout(() => finish(false), ms);
    sock.setNoDelay(true);
    sock.on('data', (d) => { data += d.toString('latin1'); });
    sock.on('error', () => { /* a reset is a close too */ });
    sock.on('close', () => finish(true));
    sock.on('connect', () => {
      sock.write(head);
      if (body) sock.write(body);
      if (trickle) timer = setInterval(() => { if (sock.writable) sock.write(trickle); }, TRICKLE_MS);
    });
  });
}

function problemOf(data) {
  const i = data.indexOf('\r\n\r\n');
  assert.ok(i > 0, `an answer with a head: ${JSON.stringify(data.slice(0, 300))}`);
  assert.match(data.slice(0, i), /^content-type: application\/problem\+json\r?$/im, data.slice(0, 400));
  return JSON.parse(data.slice(i + 4));
}

// ------------------------------------------------------------------ 1. /v1/stats

test('GET /v1/stats shows the caller\'s tenant only', async () => {
  const mine = { stream: `sealed.default.${h.rand(3)}`, type: `sealed.secret_${h.rand(3)}` };
  const theirs = { stream: `sealed.b.${h.rand(3)}`, type: `sealed.mine_${h.rand(3)}` };
  h.assertStatus(await c.publish({ type: mine.type, stream: mine.stream, data: { x: 1 } }), 201);
  const b = s.client(keyB.token);
  h.assertStatus(await b.publish({ type: theirs.type, stream: theirs.stream, data: { y: 2 } }), 201);

  const statsB = h.assertStatus(await b.get('/v1/stats'), 200).stats;
  const statsA = h.assertStatus(await c.get('/v1/stats'), 200).stats;
  const names = (rows) => rows.flatMap((r) => [r.stream, r.type]);
  assert.ok(statsB.some((r) => r.stream === theirs.stream && r.type === theirs.type && r.published === 1),
    `B sees its own series: ${JSON.stringify(statsB)}`);
  for (const n of [mine.stream, mine.type]) {
    assert.ok(!names(statsB).includes(n), `tenant B's /v1/stats names tenant default's ${n}: ${JSON.stringify(statsB)}`);
  }
  assert.ok(statsA.some((r) => r.stream === mine.stream && r.type === mine.type), `default sees its own: ${JSON.stringify(statsA)}`);
  for (const n of [theirs.stream, theirs.type]) {
    assert.ok(!names(statsA).includes(n), `tenant default's /v1/stats names tenant B's ${n}`);
  }
});

// ------------------------------------------------------------------ 2. /v1/info

test('GET /v1/info without a valid token: version and ports only; with one, everything', async () => {
  const revealing = ['head_position', 'relay_lag', 'relay_leader', 'ws_connections', 'limits', 'redis_prefix'];
  for (const token of [null, 'sk_not_a_key']) {
    const info = h.assertStatus(await c.get('/v1/info', { token }), 200);
    assert.equal(info.name, 'sluice');
    assert.equal(typeof info.version, 'string');
    assert.equal(info.http_port, s.httpPort);
    assert.equal(info.ws_port, s.wsPort);
    assert.equal(info.auth, 'on');
    for (const k of revealing) assert.ok(!(k in info), `${token ? 'a wrong token' : 'no token'}: /v1/info shows ${k}: ${JSON.stringify(info)}`);
  }
  for (const client of [c, s.client(keyB.token)]) {
    const info = h.assertStatus(await client.get('/v1/info'), 200);
    assert.ok(Number.isInteger(info.head_position) && info.head_position >= 1, JSON.stringify(info));
    assert.ok('relay_lag' in info && 'limits' in info && 'ws_connections' in info, JSON.stringify(info));
  }
});

// ------------------------------------------------------------------ 3. /metrics

test('GET /metrics asks for SLUICE_METRICS_TOKEN when it is set', async () => {
  for (const [what, token] of [['no token', null], ['the admin API token', s.adminToken], ['a wrong token', METRICS_TOKEN + 'x']]) {
    const r = await c.get('/metrics', { token });
    h.assertProblem(r, 401, 'unauthenticated');
    assert.match(r.headers.get('www-authenticate') || '', /^Bearer /, `${what}: WWW-Authenticate`);
  }
  const ok = await c.get('/metrics', { token: METRICS_TOKEN });
  h.assertStatus(ok, 200);
  assert.match(ok.contentType, /^text\/plain; version=0\.0\.4/);
  assert.match(ok.text, /^sluice_build_info\{/m);
});

// ------------------------------------------------------------------ 4. bodies

test('a body is refused from the headers on a route that takes none, and no unauthenticated peer can make Sluice keep one', async (t) => {
  // (a) A body on GET /health (or any route without one): 413 problem, connection closed,
  // with the body announced but not sent.
  for (const [what, head, status, code] of [
    ['Content-Length', `GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: ${BIG_BODY}\r\n\r\n`, 413, 'payload_too_large'],
    ['chunked', 'GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', 413, 'payload_too_large'],
    ['Content-Length, /v1/info', 'GET /v1/info HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n', 413, 'payload_too_large'],
    ['Content-Length, with a token', `GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.adminToken}\r\nContent-Length: 10\r\n\r\n`, 413, 'payload_too_large'],
    ['Content-Length, no such route', `GET /no/such/route HTTP/1.1\r\nHost: x\r\nContent-Length: ${BIG_BODY}\r\n\r\n`, 404, 'not_found'],
    ['Content-Length, no token', `POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: ${BIG_BODY}\r\n\r\n`, 401, 'unauthenticated'],
  ]) {
    const r = await raw(head, { body: what === 'chunked' ? '5\r\nab' : 'ab' });
    assert.ok(r.closed, `${what}: the connection is closed after the answer, not held for the body: ${JSON.stringify(r.data.slice(0, 300))}`);
    assert.equal(r.status, status, `${what}: ${JSON.stringify(r.data.slice(0, 300))}`);
    const p = problemOf(r.data);
    assert.equal(p.code, code);
    assert.equal(p.status, status);
    if (status === 413) assert.match(p.detail, /takes no body/);
  }
  // A GET with Content-Length: 0 is no body.
  const zero = await raw('GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  assert.equal(zero.status, 200, zero.data.slice(0, 200));

  const pid = s.proc.pid;
  // (b) 64 connections that each send 3 MB to GET /health: their bodies are not kept.
  const rss0 = vmRssKiB(pid);
  let peak = rss0;
  const sampler = setInterval(() => { try { peak = Math.max(peak, vmRssKiB(pid)); } catch (_) { /* exited */ } }, 50);
  const chunk = Buffer.alloc(BIG_BODY, 'a');
  try {
    const big = await Promise.all(Array.from({ length: BIG_CONNECTIONS }, () => raw(
      `GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: ${BIG_BODY}\r\n\r\n`, { body: chunk, ms: WAIT_MS })));
    peak = Math.max(peak, vmRssKiB(pid));
    for (const r of big) r.sock.destroy();
    assert.ok(big.every((r) => r.closed), `${big.filter((r) => !r.closed).length} of ${BIG_CONNECTIONS} big-body connections still open after ${WAIT_MS} ms`);
    assert.ok(big.every((r) => r.status === null || r.status === 413), `answers: ${[...new Set(big.map((r) => r.status))]}`);
  } finally {
    clearInterval(sampler);
  }
  const growBig = (peak - rss0) / 1024;
  t.diagnostic(`${BIG_CONNECTIONS} x ${BIG_BODY} B to GET /health: RSS ${(rss0 / 1024).toFixed(1)} MiB -> peak ${(peak / 1024).toFixed(1)} MiB (+${growBig.toFixed(1)} MiB)`);
  assert.ok(growBig < RSS_BOUND_MIB, `RSS grew by ${growBig.toFixed(1)} MiB under ${BIG_CONNECTIONS} bodies of ${BIG_BODY} B to GET /health (bound ${RSS_BOUND_MIB} MiB)`);

  // (c) 500 unauthenticated slow bodies: POST headers announcing 4 MB (no token, or a wrong
  // one), then trickled bytes; and GET /health ones. Each is answered from its headers and
  // closed; together they pin less than the bound.
  const rss1 = vmRssKiB(pid);
  peak = rss1;
  const sampler2 = setInterval(() => { try { peak = Math.max(peak, vmRssKiB(pid)); } catch (_) { /* exited */ } }, 50);
  const heads = [
    'POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n',
    'POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk_wrong\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n',
    'POST /v1/schemas HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n',
    'GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n',
  ];
  let slow;
  try {
    slow = await Promise.all(Array.from({ length: SLOW_BODIES }, (_, i) => raw(heads[i % heads.length],
      { body: '[{"type":"x",', trickle: '"data":{"pad":"' + 'p'.repeat(64) + '"}},{"type":"x",', ms: WAIT_MS })));
    peak = Math.max(peak, vmRssKiB(pid));
  } finally {
    clearInterval(sampler2);
  }
  for (const r of slow) r.sock.destroy();
  const open = slow.filter((r) => !r.closed).length;
  assert.equal(open, 0, `${open} of ${SLOW_BODIES} slow unauthenticated bodies still open after ${WAIT_MS} ms`);
  const answered = slow.filter((r) => r.status !== null);
  assert.ok(answered.every((r) => r.status === 401 || r.status === 413), `answers: ${[...new Set(answered.map((r) => r.status))]}`);
  const growSlow = (peak - rss1) / 1024;
  t.diagnostic(`${SLOW_BODIES} slow unauthenticated bodies: ${answered.length} answered (401/413) before the close; RSS ${(rss1 / 1024).toFixed(1)} MiB -> peak ${(peak / 1024).toFixed(1)} MiB (+${growSlow.toFixed(1)} MiB)`);
  assert.ok(growSlow < RSS_BOUND_MIB, `RSS grew by ${growSlow.toFixed(1)} MiB under ${SLOW_BODIES} slow bodies (bound ${RSS_BOUND_MIB} MiB)`);

  // Sluice serves afterwards.
  h.assertStatus(await c.get('/health', { token: null }), 200);
  h.assertStatus(await c.publish({ type: 'sealed.after', data: { ok: true } }), 201);
});

// ------------------------------------------------------------------ 5. WebSocket deadline

// Opens a WebSocket; resolves {ws, messages, closed: Promise<{code, reason, ms}>} once open.
async function openWs(query = '') {
  const ws = new WebSocket(`ws://127.0.0.1:${s.wsPort}/v1/ws${query}`, { perMessageDeflate: false, handshakeTimeout: 30000 });
  const messages = [];
  const opened = Date.now();
  ws.on('message', (d) => messages.push(JSON.parse(d.toString('utf8'))));
  ws.on('error', () => { /* the close reports it */ });
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString(), ms: Date.now() - opened })));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return { ws, messages, closed };
}

test('a WebSocket that does not authenticate within 5 s is closed with 1008; authenticated ones stay', async (t) => {
  const silent = await openWs();
  const byMessage = await openWs();
  const byQuery = await openWs(`?token=${keyB.token}`);
  try {
    byMessage.ws.send(JSON.stringify({ op: 'auth', token: keyB.token }));
    await h.waitFor(() => byMessage.messages.some((m) => m.op === 'authenticated'), { timeout: WAIT_MS, what: 'the auth message answered' });

    const r = await h.race(silent.closed, WAIT_MS, null);
    assert.ok(r, `a WebSocket that never authenticated is still open after ${WAIT_MS} ms`);
    t.diagnostic(`the silent WebSocket was closed after ${r.ms} ms with ${r.code} "${r.reason}"`);
    assert.equal(r.code, 1008);
    assert.ok(silent.messages.some((m) => m.op === 'error' && m.code === 'unauthenticated'),
      `an unauthenticated error before the close: ${JSON.stringify(silent.messages)}`);

    // Past the deadline the authenticated ones still answer.
    await h.sleep(Math.max(0, WS_DEADLINE_MS + 1500 - r.ms));
    for (const [what, x] of [['first-message auth', byMessage], ['?token=', byQuery]]) {
      x.ws.send(JSON.stringify({ op: 'ping' }));
      await h.waitFor(() => x.messages.some((m) => m.op === 'pong'), { timeout: WAIT_MS, what: `${what}: a pong after the deadline` });
      assert.equal(x.ws.readyState, WebSocket.OPEN, `${what}: still open`);
    }
  } finally {
    for (const x of [silent, byMessage, byQuery]) x.ws.terminate();
  }
});
