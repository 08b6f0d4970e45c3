'use strict';
// Nothing a request carries is dropped for want of room: every percent-encoded query value is
// decoded and honoured, however many a request has; every header an answer sets goes out with
// it; and a full PostgreSQL work queue (SLUICE_POOL_QUEUE) answers 503 overloaded with
// Retry-After — a long poll included, which must not answer 204 as though nothing were stored.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const h = require('./lib/harness');

// Every byte as %XX, so every value goes through Sluice's decoding.
const enc = (s) => [...Buffer.from(String(s), 'utf8')].map((b) => '%' + b.toString(16).toUpperCase().padStart(2, '0')).join('');
const query = (q) => Object.entries(q).map(([k, v]) => `${k}=${enc(v)}`).join('&');
// Arguments no route reads, percent-encoded too: they must change nothing.
const junk = () => Array.from({ length: 24 }, (_, i) => `x${i}=${enc('junk value ' + i)}`).join('&');

// One raw HTTP/1.1 exchange on a new connection; resolves with the status and the head's lines.
function rawRequest(port, text, { timeout = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    const done = (fn) => { clearTimeout(timer); sock.destroy(); fn(); };
    const timer = setTimeout(() => done(() => reject(new Error('no answer: ' + data.slice(0, 300)))), timeout);
    sock.on('connect', () => sock.write(text));
    sock.on('data', (d) => {
      data += d.toString('utf8');
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = data.slice(0, end).split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0]);
      done(() => resolve({ status: m ? Number(m[1]) : 0, head }));
    });
    sock.on('error', (e) => done(() => reject(e)));
    sock.on('close', () => done(() => reject(new Error('closed without an answer: ' + data.slice(0, 300)))));
  });
}

describe('query values', () => {
  let s;
  let c;
  before(async () => { s = await h.startSluice({ name: 'caps-query' }); c = s.client(); });
  after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

  test('every percent-encoded filter of a read is honoured, whatever else the query holds', async () => {
    const tag = h.rand(4);
    const base = { type: `cap${tag}.target`, stream: `caps-${tag}`, key: `k-${tag}`, correlation_id: `corr ${tag}/1`, user_id: `user ${tag}`, data: {} };
    const pub = async (env) => { const r = await c.publish(env); h.assertStatus(r, 201); return r.body; };
    const early = await pub(base);
    await h.sleep(30);
    // One decoy per string filter: each differs from the target in that field alone.
    for (const [field, value] of [['type', `cap${tag}.other`], ['stream', `caps-${tag}-b`], ['key', `k-${tag}-b`],
      ['correlation_id', `corr ${tag}/2`], ['user_id', `user ${tag} b`]]) {
      await pub({ ...base, [field]: value });
    }
    await h.sleep(30);
    const target = await pub(base);
    await h.sleep(30);
    const late = await pub(base);
    assert.ok(early.time < target.time && target.time < late.time, 'the three copies have distinct times');

    const strings = { type: base.type, stream: base.stream, key: base.key, correlation_id: base.correlation_id, user_id: base.user_id };
    const read = async (q) => {
      const r = await c.get(`/v1/events?${junk()}&${query(q)}&${junk().replace(/x/g, 'y')}`);
      h.assertStatus(r, 200);
      return r.body.events.map((e) => e.id);
    };
    // after and until (exclusive) leave the target alone; a dropped filter lets a decoy or a copy in.
    assert.deepEqual(await read({ ...strings, after: early.position, until: late.time, limit: 100 }), [target.id]);
    // since (inclusive) in place of after.
    assert.deepEqual(await read({ ...strings, since: target.time, until: late.time }), [target.id]);
    // limit, encoded too: two of the three copies.
    assert.deepEqual(await read({ ...strings, limit: 2 }), [early.id, target.id]);
    // Without the string filters every decoy is there: they were excluded by the values above.
    const all = await read({ after: early.position, until: late.time, limit: 100 });
    assert.equal(all.length, 6, `5 decoys and the target: ${all}`);
  });

  test('a long poll decodes its correlation id and timeout', async () => {
    const cid = `wait ${h.rand(4)}/é`;
    const r = await c.publish({ type: 'cap.reply', data: {}, correlation_id: cid });
    h.assertStatus(r, 201);
    const w = await c.get(`/v1/events/wait?${junk()}&${query({ correlation_id: cid, timeout_ms: 5000 })}`);
    h.assertStatus(w, 200);
    assert.equal(w.body.id, r.body.id);
    assert.equal(w.body.correlation_id, cid);
  });
});

describe('answer headers', () => {
  let s;
  before(async () => { s = await h.startSluice({ name: 'caps-headers' }); });
  after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

  test('an answer carries every header it set: Allow, Connection: close, Content-Type, X-Request-Id', async () => {
    const r = await rawRequest(s.httpPort, 'DELETE /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: caps-1\r\n' +
      'Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}');
    assert.equal(r.status, 405, r.head.join('\n'));
    const has = (re) => assert.ok(r.head.some((l) => re.test(l)), `${re} in:\n${r.head.join('\n')}`);
    has(/^allow: .*GET/i);
    has(/^connection: close$/i);
    has(/^content-type: application\/problem\+json/i);
    has(/^x-request-id: caps-1$/i);
  });
});

describe('a full PostgreSQL work queue (SLUICE_POOL_QUEUE=1, SLUICE_DB_POOL=1)', () => {
  let s;
  let c;
  before(async () => {
    s = await h.startSluice({ name: 'caps-pool', env: { SLUICE_POOL_QUEUE: '1', SLUICE_DB_POOL: '1' } });
    c = s.client();
  });
  after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

  test('reads and long polls answer 503 overloaded + Retry-After, never a wrong answer', async () => {
    const cid = 'pool-' + h.rand(4);
    const stored = await c.publish({ type: 'cap.pool', data: {}, correlation_id: cid });
    h.assertStatus(stored, 201);
    const refused = { read: null, wait: null };
    const other = [];
    for (let round = 0; round < 8 && !(refused.read && refused.wait); round++) {
      const waits = Array.from({ length: 60 }, () => c.get(`/v1/events/wait?correlation_id=${cid}&timeout_ms=0`, { timeout: 30000 }));
      const reads = Array.from({ length: 60 }, () => c.get('/v1/events?limit=1000', { timeout: 30000 }));
      for (const r of await Promise.all(waits)) {
        if (r.status === 200) assert.equal(r.body.id, stored.body.id, 'a stored match is the answer');
        else if (r.status === 503) refused.wait = refused.wait || r;
        else other.push(r); // a 204 would say nothing is stored: the lookup was dropped
      }
      for (const r of await Promise.all(reads)) {
        if (r.status === 503) refused.read = refused.read || r;
        else if (r.status !== 200) other.push(r);
      }
    }
    assert.deepEqual(other.map(h.describeRes), [], 'only 200 or 503');
    for (const [what, r] of Object.entries(refused)) {
      assert.ok(r, `some ${what} met the full queue`);
      const p = h.assertProblem(r, 503, 'overloaded');
      assert.match(p.detail, /SLUICE_POOL_QUEUE/, 'the answer names the limit');
      assert.match(r.headers.get('retry-after') || '', /^\d+$/, 'Retry-After in seconds');
    }
    // The queue drains: the same requests succeed again.
    h.assertStatus(await c.get(`/v1/events/wait?correlation_id=${cid}&timeout_ms=0`), 200);
    h.assertStatus(await c.get('/v1/events?limit=10'), 200);
  });
});
