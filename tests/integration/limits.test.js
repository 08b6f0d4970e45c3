'use strict';
// Issue 2: limits answer with codes, never a crash or a hang — body size (413), batch size,
// the appender queue's bound (503 store_unavailable + Retry-After).
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const h = require('./lib/harness');

const MAX_BODY = 4096;
const MAX_BATCH = 5;

// Raw HTTP/1.1 exchange on a new connection; resolves with the status line and the raw text.
function rawRequest(port, head, body, { timeout = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no answer within ${timeout} ms; got: ${data.slice(0, 300)}`)); }, timeout);
    sock.on('connect', () => {
      sock.write(head);
      if (body) sock.write(body);
    });
    sock.on('data', (d) => {
      data += d.toString('utf8');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      const end = data.indexOf('\r\n\r\n');
      if (m && end >= 0) {
        const cl = /content-length:\s*(\d+)/i.exec(data.slice(0, end));
        if (!cl || data.length - end - 4 >= Number(cl[1])) {
          clearTimeout(timer);
          sock.destroy();
          resolve({ status: Number(m[1]), raw: data });
        }
      }
    });
    sock.on('error', (e) => { clearTimeout(timer); if (data) resolve({ status: Number((/^HTTP\/1\.[01] (\d{3})/.exec(data) || [])[1]), raw: data }); else reject(e); });
    sock.on('close', () => { clearTimeout(timer); const m = /^HTTP\/1\.[01] (\d{3})/.exec(data); if (m) resolve({ status: Number(m[1]), raw: data }); else reject(new Error('closed without an answer: ' + data)); });
  });
}

function envelopeOfSize(bytes, extra = {}) {
  const base = { type: 'limit.sized', data: { pad: '' }, ...extra };
  const overhead = JSON.stringify(base).length;
  base.data.pad = 'x'.repeat(Math.max(0, bytes - overhead));
  const s = JSON.stringify(base);
  assert.equal(s.length, bytes);
  return s;
}

describe('body and batch limits', () => {
  let s;
  let c;
  before(async () => {
    s = await h.startSluice({ name: 'limits', env: { SLUICE_MAX_BODY_BYTES: String(MAX_BODY), SLUICE_MAX_BATCH: String(MAX_BATCH) } });
    c = s.client();
  });
  after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

  test('a body at the limit is accepted', async () => {
    const res = await c.request('POST', '/v1/events', { body: envelopeOfSize(MAX_BODY), headers: { 'Content-Type': 'application/json' } });
    h.assertStatus(res, 201);
  });

  test('a body over the limit → 413 payload_too_large, nothing stored', async () => {
    const id = 'big-' + h.rand(4);
    for (const size of [MAX_BODY + 1, MAX_BODY * 3]) {
      const res = await c.request('POST', '/v1/events', { body: envelopeOfSize(size, { id }), headers: { 'Content-Type': 'application/json' } });
      h.assertProblem(res, 413, 'payload_too_large');
    }
    h.assertProblem(await c.get('/v1/events/' + id), 404, 'not_found');
  });

  test('a chunked body over the limit → 413 payload_too_large', async () => {
    const id = 'chunked-' + h.rand(4);
    const text = envelopeOfSize(MAX_BODY * 2, { id });
    const enc = new TextEncoder();
    const stream = new ReadableStream({
      start(ctrl) {
        for (let i = 0; i < text.length; i += 1000) ctrl.enqueue(enc.encode(text.slice(i, i + 1000)));
        ctrl.close();
      },
    });
    const res = await fetch(s.url + '/v1/events', {
      method: 'POST', body: stream, duplex: 'half', signal: AbortSignal.timeout(15000),
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${s.adminToken}` },
    });
    assert.equal(res.status, 413);
    const p = JSON.parse(await res.text());
    assert.equal(p.code, 'payload_too_large');
    h.assertProblem(await c.get('/v1/events/' + id), 404, 'not_found');
  });

  test('a declared Content-Length over the limit is answered 413 at once, without waiting for the body', async () => {
    const head = `POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${s.adminToken}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n`;
    const r = await rawRequest(s.httpPort, head, '{"type":"limit.sized","data":{"pad":"', { timeout: 10000 });
    assert.equal(r.status, 413, r.raw.slice(0, 500));
  });

  test(`a batch of SLUICE_MAX_BATCH (${MAX_BATCH}) is accepted; ${MAX_BATCH + 1} is refused and stores nothing`, async () => {
    const tag = h.rand(4);
    const okBatch = Array.from({ length: MAX_BATCH }, (_, i) => ({ id: `lb-${tag}-${i}`, type: 'limit.batch', data: { i } }));
    const r1 = await c.publish(okBatch);
    h.assertStatus(r1, 201);
    assert.equal(r1.body.events.length, MAX_BATCH);

    const tag2 = h.rand(4);
    const big = Array.from({ length: MAX_BATCH + 1 }, (_, i) => ({ id: `lb-${tag2}-${i}`, type: 'limit.batch', data: { i } }));
    const r2 = await c.publish(big);
    assert.ok(r2.status === 400 || r2.status === 413, h.describeRes(r2));
    assert.match(r2.contentType, /^application\/problem\+json/);
    assert.equal(typeof r2.body.code, 'string');
    for (let i = 0; i <= MAX_BATCH; i++) h.assertProblem(await c.get(`/v1/events/lb-${tag2}-${i}`), 404, 'not_found');
    const r3 = await c.post('/v1/events?atomic=false', big);
    assert.ok(r3.status === 400 || r3.status === 413, `partial batches have the same limit: ${h.describeRes(r3)}`);
  });

  test('the server still serves normally after the refusals', async () => {
    h.assertStatus(await c.get('/health', { token: null }), 200);
    h.assertStatus(await c.publish({ type: 'limit.after', data: {} }), 201);
  });
});

describe('appender queue bound', () => {
  let s;
  let c;
  before(async () => {
    s = await h.startSluice({ name: 'queue', env: { SLUICE_APPENDER_QUEUE: '1' } });
    c = s.client();
  });
  after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

  test('a full appender queue answers 503 store_unavailable + Retry-After; every 201 is stored', async () => {
    const acked = [];
    let rejected = null;
    const other = [];
    for (let round = 0; round < 6 && !rejected; round++) {
      const all = await Promise.all(Array.from({ length: 150 }, (_, i) =>
        c.publish({ id: `q-${round}-${i}-${h.rand(2)}`, type: 'queue.flood', data: { round, i } }, { timeout: 30000 })));
      for (const r of all) {
        if (r.status === 201) acked.push(r.body);
        else if (r.status === 503) rejected = rejected || r;
        else other.push(r);
      }
    }
    assert.deepEqual(other.map(h.describeRes), [], 'only 201 or 503');
    assert.ok(rejected, 'some request met a full queue (queue bound 1, 150 concurrent publishes)');
    h.assertProblem(rejected, 503, 'store_unavailable');
    assert.match(rejected.headers.get('retry-after') || '', /^\d+$/, 'Retry-After in seconds');
    assert.ok(acked.length > 0, 'the queue still admits events');
    for (const a of acked) {
      const ev = h.assertStatus(await c.get('/v1/events/' + a.id), 200);
      assert.equal(ev.position, a.position);
    }
    // and it recovers once the burst is over
    h.assertStatus(await c.publish({ type: 'queue.after', data: {} }), 201);
  });
});
