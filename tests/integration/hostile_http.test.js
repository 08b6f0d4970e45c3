'use strict';
// Hostile input, part 1 (issue 8): slow clients and oversized requests, against the real
// binary on both ports.
//   - Slowloris on the HTTP port: hundreds of connections that trickle header bytes faster
//     than any idle timeout would notice are cut off by the request deadline
//     (SLUICE_HTTP_TIMEOUT_MS, set short here), and so are silent connections, a body
//     trickled after complete headers (nothing is stored) and a kept-alive connection that
//     trickles its next request; ordinary publishes and reads are served during the attack.
//   - One 64 KiB header, thousands of headers, a giant URL, a megabyte of header bytes:
//     a 4xx answer or a closed connection, never a crash, and Sluice serves afterwards.
//   - Bodies nested past the JSON depth limit, or holding bytes that are not UTF-8 (or
//     escapes of a NUL or a lone surrogate), sent to every operation of
//     openapi/openapi.yaml that takes a JSON body: 400 invalid_json, every time; an event
//     nested just inside the limit is stored, read back and delivered whole.
//   - The WebSocket port: clients that connect and say nothing or trickle an upgrade request
//     are closed by libwebsockets' timeouts, while a subscriber connects and receives events.
//     Those clients start first and are checked last, so their wait overlaps the HTTP tests.
//     A plain HTTP request there (no Upgrade) is answered, not held: 426 Upgrade Required
//     (`Upgrade: websocket`) at /v1/ws, 404 elsewhere, each with a problem document.
// Bounds on waits only prove "no hang"; nothing here asserts a duration.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const fs = require('node:fs');
const path = require('node:path');
const WebSocket = require('ws');
const YAML = require('yaml');
const h = require('./lib/harness');

const TIMEOUT_MS = 4000;    // SLUICE_HTTP_TIMEOUT_MS for this instance
const TRICKLE_MS = 250;     // a slow client's pace: one byte per TRICKLE_MS, far under the timeout
const CLOSE_BOUND_MS = 90000; // "no hang" bound for a slow connection to be closed
const SLOW_CLIENTS = 200;

// A raw TCP client: `start(sock)` writes what it likes; resolves once the server closed the
// connection, with what it answered. Its trickle stops when the socket closes.
class RawClient {
  constructor(port, start, { trickle = null } = {}) {
    this.data = '';
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.setNoDelay(true);
    this.opened = new Promise((resolve) => this.sock.once('connect', resolve));
    this.closed = new Promise((resolve) => {
      this.sock.on('close', () => { clearInterval(this.timer); resolve(this); });
    });
    this.sock.on('error', () => { /* a reset is a close too */ });
    this.sock.on('data', (d) => { this.data += d.toString('latin1'); });
    this.sock.once('connect', () => {
      if (start) start(this.sock);
      if (trickle) {
        let i = 0;
        this.timer = setInterval(() => {
          if (!this.sock.destroyed && this.sock.writable) this.sock.write(trickle[i++ % trickle.length]);
        }, TRICKLE_MS);
      }
    });
  }

  get open() { return !this.sock.destroyed; }
  get status() { const m = /^HTTP\/1\.[01] (\d{3})/.exec(this.data); return m ? Number(m[1]) : null; }
  destroy() { clearInterval(this.timer); this.sock.destroy(); }
}

async function closedWithin(clients, what) {
  const r = await h.race(Promise.all(clients.map((c) => c.closed)), CLOSE_BOUND_MS, 'timeout');
  const open = clients.filter((c) => c.open).length;
  assert.notEqual(r, 'timeout', `${open} of ${clients.length} ${what} still open after ${CLOSE_BOUND_MS} ms`);
}

// Lines of the "closed connections whose requests arrived too slowly" log, summed.
function cutCount(s) {
  return s.logJson().filter((l) => l.module === 'http' && /arrived too slowly/.test(l.msg))
    .reduce((n, l) => n + l.connections, 0);
}

let s;
let c;
const wsSlow = []; // the WebSocket port's slow clients, started first, checked last
const STREAM = 'hostile.http';
const UPGRADE = 'GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' + 'X-Pad: ' + 'p'.repeat(400);

// `n` clients of each slow kind on the WebSocket port, added to wsSlow.
function slowWsClients(n) {
  const added = [];
  for (let i = 0; i < n; i++) {
    added.push({ kind: 'silent', c: new RawClient(s.wsPort, null) });
    added.push({ kind: 'trickling an upgrade', c: new RawClient(s.wsPort, null, { trickle: UPGRADE }) });
    added.push({ kind: 'half an upgrade', c: new RawClient(s.wsPort, (k) => k.write(UPGRADE.slice(0, 120))) });
  }
  wsSlow.push(...added);
  return added;
}

// Once, under heavy load, this file's event loop went empty between two tests (node:test then
// cancels what is left and runs after() at once, stopping sluice under the next test). A ref'd
// timer for the file's life keeps the loop alive; after() clears it, so the file still exits.
let keepAlive;

before(async () => {
  keepAlive = setInterval(() => {}, 60000);
  s = await h.startSluice({ name: 'hostile-http', env: { SLUICE_HTTP_TIMEOUT_MS: String(TIMEOUT_MS), SLUICE_ACCESS_LOG: 'off' } });
  c = s.client();
  h.assertStatus(await c.publish({ type: 'hostile.http', stream: STREAM, data: { warm: true } }), 201);
  slowWsClients(20);
});

after(async () => {
  for (const x of wsSlow) x.c.destroy();
  try {
    if (s) await s.stop().finally(() => s.cleanup());
  } finally {
    clearInterval(keepAlive);
  }
});

// Publishes one event and reads it back by id and through a filtered page.
async function publishAndRead(i) {
  const ack = h.assertStatus(await c.publish({ type: 'hostile.http', stream: STREAM, key: `k-${i}`, data: { i } }), 201);
  const one = h.assertStatus(await c.get('/v1/events/' + ack.id), 200);
  assert.equal(one.position, ack.position);
  const page = h.assertStatus(await c.get(`/v1/events?stream=${STREAM}&key=k-${i}`), 200);
  assert.deepEqual(page.events.map((e) => e.id), [ack.id]);
  return ack;
}

describe('the HTTP port under slow clients', () => {
  test(`a slowloris of ${SLOW_CLIENTS}+ trickling connections is cut off by the request deadline while ordinary requests are served`, async (t) => {
    const cutBefore = cutCount(s);
    const slow = [];
    const wave = async (n) => {
      const fresh = [];
      for (let i = 0; i < n; i++) {
        const head = `GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.adminToken}\r\nX-Slow-${slow.length}: `;
        const k = new RawClient(s.httpPort, (sock) => sock.write(head), { trickle: 'abcdefghij' });
        slow.push(k);
        fresh.push(k);
      }
      await Promise.all(fresh.map((k) => k.opened));
    };
    await wave(SLOW_CLIENTS);
    // During the attack (a fresh wave before each request keeps it on): publishes and
    // reads go through.
    let fewestOpen = Infinity;
    for (let i = 0; i < 5; i++) {
      await publishAndRead(i);
      fewestOpen = Math.min(fewestOpen, slow.filter((k) => k.open).length);
      await wave(SLOW_CLIENTS / 4);
    }
    t.diagnostic(`${slow.length} slow connections; at least ${fewestOpen} open as each ordinary request finished`);
    assert.ok(fewestOpen > 0, 'the ordinary requests ran while the attack was on');

    await closedWithin(slow, 'trickling connections');
    for (const k of slow) {
      assert.ok(k.status === null || (k.status >= 400 && k.status < 500), `a trickling client got ${k.data.slice(0, 80)}`);
    }
    // They sent a byte every TRICKLE_MS, so no idle timeout closed them: the deadline did
    // (its log line may trail the closes a little).
    await h.waitFor(() => cutCount(s) - cutBefore >= slow.length, { timeout: 30000, what: `the log of ${slow.length} connections cut by the deadline` });
    await publishAndRead(10);
  });

  test('silent connections are closed', async () => {
    const silent = [];
    for (let i = 0; i < 50; i++) silent.push(new RawClient(s.httpPort, null));
    await Promise.all(silent.map((k) => k.opened));
    await closedWithin(silent, 'silent connections');
    for (const k of silent) assert.equal(k.data, '', 'a silent client got an answer');
  });

  test('a body trickled after complete headers is cut off, and nothing is stored', async () => {
    const id = 'slow-body-' + h.rand(4);
    const body = JSON.stringify({ id, type: 'hostile.slow', stream: STREAM, data: { pad: 'x'.repeat(300) } });
    const head = `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.adminToken}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const chunkedHead = `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.adminToken}\r\n` +
      'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n';
    const chunked = body.split('').map((ch) => `1\r\n${ch}\r\n`).join('');
    const clients = [
      new RawClient(s.httpPort, (k) => k.write(head), { trickle: body }),
      new RawClient(s.httpPort, (k) => k.write(chunkedHead), { trickle: chunked }),
    ];
    await closedWithin(clients, 'slow uploads');
    for (const k of clients) assert.ok(k.status === null || k.status >= 400, `a slow upload was answered ${k.data.slice(0, 80)}`);
    h.assertProblem(await c.get('/v1/events/' + id), 404, 'not_found');
  });

  test('a kept-alive connection that trickles its next request is cut off too', async () => {
    const k = new RawClient(s.httpPort, (sock) => sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'));
    await h.waitFor(() => k.status === 200 && k.data.includes('\r\n\r\n'), { timeout: 30000, what: 'the first answer' });
    const next = 'GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'z'.repeat(500);
    let i = 0;
    k.timer = setInterval(() => { if (k.open) k.sock.write(next[i++ % next.length]); }, TRICKLE_MS);
    await closedWithin([k], 'kept-alive trickling connection');
    assert.equal((k.data.match(/HTTP\/1\.1 /g) || []).length, 1, 'only the first request was answered');
  });
});

describe('the HTTP port under oversized requests', () => {
  const auth = () => `Authorization: Bearer ${s.adminToken}\r\n`;
  // [what, request, statuses allowed besides a closed connection]
  const TOO_BIG = [400, 413, 414, 431];
  const CASES = [
    ['one 64 KiB header', () => `GET /v1/events HTTP/1.1\r\nHost: x\r\n${auth()}X-Big: ${'a'.repeat(65536)}\r\n\r\n`, TOO_BIG],
    ['5,000 headers', () => { let t = `GET /v1/events HTTP/1.1\r\nHost: x\r\n${auth()}`; for (let i = 0; i < 5000; i++) t += `X-H${i}: v\r\n`; return t + '\r\n'; }, TOO_BIG],
    ['a 100 KiB URL', () => `GET /v1/events?key=${'k'.repeat(100 * 1024)} HTTP/1.1\r\nHost: x\r\n${auth()}\r\n`, TOO_BIG],
    ['a 100 KiB path', () => `GET /v1/events/${'i'.repeat(100 * 1024)} HTTP/1.1\r\nHost: x\r\n${auth()}\r\n`, TOO_BIG],
    ['a megabyte of header bytes with no end', () => `GET /health HTTP/1.1\r\nHost: x\r\nX-Endless: ${'e'.repeat(1 << 20)}`, TOO_BIG],
    ['a 64 KiB header name', () => `GET /health HTTP/1.1\r\nHost: x\r\n${'N'.repeat(65536)}: v\r\n\r\n`, TOO_BIG],
    ['a 64 KiB method', () => `${'G'.repeat(65536)} /health HTTP/1.1\r\nHost: x\r\n\r\n`, TOO_BIG],
    ['a 64 KiB Authorization token', () => `GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'t'.repeat(65536)}\r\n\r\n`, TOO_BIG],
    // Inside the 32 KiB header limit: answered as usual.
    ['a 20 KiB Authorization token', () => `GET /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${'t'.repeat(20 * 1024)}\r\n\r\n`, [401]],
    ['a 20 KiB X-Request-Id (replaced by a new id)', () => `GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: ${'r'.repeat(20 * 1024)}\r\n\r\n`, [200]],
  ];

  for (const [what, make, allowed] of CASES) {
    test(`${what}: ${allowed.join('/')} or a closed connection, never a crash`, async () => {
      const k = new RawClient(s.httpPort, (sock) => sock.write(make()));
      await closedWithin([k], what);
      if (k.status !== null) assert.ok(allowed.includes(k.status), `${what}: answered ${k.data.slice(0, 120)}`);
      assert.ok(!/X-Request-Id: r{32}/i.test(k.data), 'an oversized request id is not echoed');
      assert.equal(s.exitInfo, null, 'sluice is still running');
      h.assertStatus(await c.get('/health'), 200);
    });
  }

  test('after all of it, publishing and reading still work', async () => {
    await publishAndRead(20);
  });
});

describe('bodies nested too deep or not UTF-8', () => {
  const DOC = YAML.parse(fs.readFileSync(path.join(h.REPO, 'openapi', 'openapi.yaml'), 'utf8'));
  const nestedArrays = (n) => '['.repeat(n) + ']'.repeat(n);
  const nestedObjects = (n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
  const BODIES = [
    ['arrays nested 100,000 deep', () => Buffer.from(nestedArrays(100000))],
    ['objects nested 2,049 deep', () => Buffer.from(`{"type":"hostile.deep","data":${nestedObjects(2049)}}`)],
    ['a 0xFF byte in a string', () => Buffer.concat([Buffer.from('{"type":"hostile.utf","data":{"s":"'), Buffer.from([0xff]), Buffer.from('"}}')])],
    ['an overlong quote (C0 A7)', () => Buffer.concat([Buffer.from('{"type":"hostile.utf","data":{"s":"'), Buffer.from([0xc0, 0xa7]), Buffer.from('"}}')])],
    ['a surrogate encoded in UTF-8', () => Buffer.concat([Buffer.from('{"type":"hostile.utf","data":{"s":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}}')])],
    ['an escaped NUL', () => Buffer.from('{"type":"hostile.utf","data":{"s":"a\\u0000b"}}')],
    ['an escaped lone surrogate', () => Buffer.from('{"type":"hostile.utf","data":{"s":"\\ud800"}}')],
  ];
  // A valid value for each path parameter of an operation with a body.
  const PATH_VALUES = { stream: () => STREAM, group: () => 'g-none', type: () => schemaType };
  let schemaType;

  before(async () => {
    schemaType = h.assertStatus(await c.get('/v1/schemas'), 200).schemas[0].type;
  });

  test('every operation with a JSON body answers 400 invalid_json, and stores nothing', async () => {
    const ops = [];
    for (const [template, item] of Object.entries(DOC.paths || {})) {
      for (const m of ['post', 'put', 'patch', 'delete']) {
        const op = item[m];
        if (op && op.requestBody && op.requestBody.content && op.requestBody.content['application/json']) ops.push([m.toUpperCase(), template]);
      }
    }
    assert.ok(ops.length >= 8, `only ${ops.length} operations take JSON`);
    const head = h.assertStatus(await c.get('/v1/info'), 200).head_position;
    for (const [method, template] of ops) {
      const url = template.replace(/\{([^}]+)\}/g, (_, name) => {
        assert.ok(PATH_VALUES[name], `${method} ${template}: no value for the path parameter ${name}`);
        return encodeURIComponent(PATH_VALUES[name]());
      });
      for (const [what, body] of BODIES) {
        const res = await c.request(method, url, { body: body(), headers: { 'Content-Type': 'application/json' } });
        assert.equal(res.status, 400, `${method} ${url} with ${what}: ${h.describeRes(res)}`);
        h.assertProblem(res, 400, 'invalid_json');
      }
    }
    assert.equal(h.assertStatus(await c.get('/v1/info'), 200).head_position, head, 'nothing was stored');
    assert.equal(s.exitInfo, null, 'sluice is still running');
  });

  test('an event nested just inside the limit is stored, read back and delivered whole', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${s.wsPort}/v1/ws?token=${s.adminToken}`, { perMessageDeflate: false });
    const got = [];
    ws.on('message', (d) => got.push(JSON.parse(d.toString('utf8'))));
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    try {
      ws.send(JSON.stringify({ op: 'subscribe', id: 'deep', streams: [STREAM], types: ['hostile.deep'] }));
      await h.waitFor(() => got.some((m) => m.op === 'subscribed'), { timeout: 30000, what: 'subscribed' });
      const text = `{"type":"hostile.deep","stream":"${STREAM}","data":{"d":${nestedArrays(2000)}}}`;
      const ack = h.assertStatus(await c.request('POST', '/v1/events', { body: text, headers: { 'Content-Type': 'application/json' } }), 201);
      // Compared as text: assert.deepEqual recurses once per level, past node's stack.
      const want = JSON.stringify(JSON.parse(text).data);
      assert.equal(JSON.stringify(h.assertStatus(await c.get('/v1/events/' + ack.id), 200).data), want, 'read back whole');
      await h.waitFor(() => got.some((m) => m.op === 'event' && m.event.id === ack.id), { timeout: 30000, what: 'the deep event over WebSocket' });
      assert.equal(JSON.stringify(got.find((m) => m.op === 'event' && m.event.id === ack.id).event.data), want, 'delivered whole');
    } finally {
      ws.terminate();
    }
  });
});

describe('the WebSocket port under slow clients', () => {
  test('a subscriber connects and receives events while slow clients hold connections', async () => {
    // those of before() may have been closed by now (10 s): a fresh batch
    const fresh = slowWsClients(20);
    await Promise.all(fresh.map((x) => x.c.opened));
    assert.ok(fresh.some((x) => x.c.open), 'slow WebSocket clients are connected');
    const ws = new WebSocket(`ws://127.0.0.1:${s.wsPort}/v1/ws?token=${s.adminToken}`, { perMessageDeflate: false });
    const msgs = [];
    ws.on('message', (d) => msgs.push(JSON.parse(d.toString('utf8'))));
    const opened = await h.race(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); }).then(() => 'open'), 30000, 'timeout');
    assert.equal(opened, 'open', 'the subscriber connected');
    try {
      ws.send(JSON.stringify({ op: 'subscribe', id: 's1', streams: [STREAM] }));
      await h.waitFor(() => msgs.some((m) => m.op === 'subscribed'), { timeout: 30000, what: 'subscribed' });
      const ack = await publishAndRead(30);
      await h.waitFor(() => msgs.some((m) => m.op === 'event' && m.event.id === ack.id), { timeout: 30000, what: 'the event over WebSocket' });
    } finally {
      ws.terminate();
    }
  });

  test('a plain HTTP request is answered and closed: 426 with Upgrade: websocket at /v1/ws, 404 elsewhere', async () => {
    const cases = [
      ['GET /v1/ws HTTP/1.1\r\nHost: x\r\n\r\n', 426],
      [`GET /v1/ws?token=${s.adminToken} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n`, 426],
      ['POST /v1/ws HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}', 426],
      ['GET / HTTP/1.1\r\nHost: x\r\n\r\n', 404],
      ['GET /v1/events HTTP/1.0\r\n\r\n', 404],
      ['GET /v1/wsx HTTP/1.1\r\nHost: x\r\n\r\n', 404],
    ];
    for (const [request, status] of cases) {
      const k = new RawClient(s.wsPort, (sock) => sock.write(request));
      await closedWithin([k], `a plain request ${JSON.stringify(request.split('\r\n')[0])}`);
      const what = `${JSON.stringify(request.split('\r\n')[0])} answered ${JSON.stringify(k.data.slice(0, 300))}`;
      assert.equal(k.status, status, what);
      const [head, body] = [k.data.slice(0, k.data.indexOf('\r\n\r\n')), k.data.slice(k.data.indexOf('\r\n\r\n') + 4)];
      assert.match(head, /^content-type: application\/problem\+json\r?$/im, what);
      if (status === 426) assert.match(head, /^upgrade: websocket\r?$/im, what);
      const problem = JSON.parse(body);
      assert.equal(problem.status, status, what);
      assert.equal(problem.code, status === 426 ? 'upgrade_required' : 'not_found', what);
    }
  });

  test('silent and trickling clients are closed by libwebsockets, none upgraded', async () => {
    for (const kind of new Set(wsSlow.map((x) => x.kind))) {
      const group = wsSlow.filter((x) => x.kind === kind).map((x) => x.c);
      await closedWithin(group, `WebSocket clients (${kind})`);
      for (const k of group) assert.ok(!/^HTTP\/1\.1 101/.test(k.data), `a client (${kind}) was upgraded: ${k.data.slice(0, 80)}`);
    }
    assert.equal(s.exitInfo, null, 'sluice is still running');
  });
});
