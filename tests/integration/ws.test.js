'use strict';
// Issue 4: live subscriptions over WebSocket (`ws://…:<wsPort>/v1/ws`, API.md "Live
// subscriptions"): authentication (?token= or the first message, the subscribe scope), the
// JSON protocol (subscribe / subscribed / event / unsubscribe / ping / errors), filters,
// several subscriptions per connection, from_position catch-up with no gap and no duplicate
// at the seam, resume across a reconnect, tenant isolation, a slow subscriber closed 1013 with
// bounded server memory, two instances on one database, and SIGTERM closing sockets 1001.
//
// "No gap, no duplicate" is checked against a model: the positions the server acknowledged
// (201) for the events a subscription's filter matches. A fence event (published last,
// matching the subscription) proves everything before it has been delivered, since events
// arrive in position order.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const WebSocket = require('ws');
const h = require('./lib/harness');

const WAIT_MS = 20000; // "no hang" bound for one expected message

// ---------------------------------------------------------------- a small WebSocket peer

// Collects every message (parsed JSON) in order; expect() waits for the next message matching
// a predicate after the previous expect()'s match, so protocol order is checked.
class Peer {
  constructor(url, opts = {}) {
    this.url = url;
    this.msgs = [];
    this.cursor = 0;
    this.waiters = new Set();
    this.closeInfo = null;
    this.ws = new WebSocket(url, { handshakeTimeout: 15000, perMessageDeflate: false, ...opts });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.ws.on('error', () => { /* surfaced through opened / closed */ });
    this.ws.on('message', (data, isBinary) => {
      let m;
      try { m = JSON.parse(data.toString('utf8')); } catch (_) { m = { __unparsable: data.toString('utf8'), isBinary }; }
      this.msgs.push(m);
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString('utf8') };
        this.wake();
        resolve(this.closeInfo);
      });
    });
  }

  static async open(url, opts) {
    const p = new Peer(url, opts);
    const r = await h.race(p.opened.then(() => 'open', (e) => e), WAIT_MS, 'timeout');
    if (r !== 'open') {
      p.terminate();
      throw new Error(`WebSocket ${url} did not open: ${r instanceof Error ? r.message : r}`);
    }
    return p;
  }

  wake() { for (const w of this.waiters) w(); }

  send(m) { this.ws.send(typeof m === 'string' ? m : JSON.stringify(m)); }

  // Waits until fn() returns a truthy value (re-checked on each message or close).
  async until(fn, what, timeout = WAIT_MS) {
    let v = fn();
    if (v) return v;
    let wake;
    const p = new Promise((resolve) => {
      wake = () => { const x = fn(); if (x || this.closeInfo) resolve(x); };
      this.waiters.add(wake);
    });
    try {
      v = await h.race(p, timeout, undefined);
    } finally {
      this.waiters.delete(wake);
    }
    if (!v) v = fn();
    if (!v) {
      throw new Error(`${this.closeInfo ? 'connection closed ' + JSON.stringify(this.closeInfo) : 'timed out after ' + timeout + ' ms'} waiting for ${what}; last messages: ${JSON.stringify(this.msgs.slice(-5)).slice(0, 2000)}`);
    }
    return v;
  }

  // The next message (after the previous expect()'s) matching pred; advances past it.
  async expect(pred, what = 'a message', timeout) {
    return this.until(() => {
      for (let i = this.cursor; i < this.msgs.length; i++) {
        if (pred(this.msgs[i])) { this.cursor = i + 1; return this.msgs[i]; }
      }
      return null;
    }, what, timeout);
  }

  expectOp(op, extra = {}, timeout) {
    return this.expect((m) => m.op === op && Object.entries(extra).every(([k, v]) => m[k] === v),
      `${op} ${JSON.stringify(extra)}`, timeout);
  }

  async subscribe(sub) {
    this.send({ op: 'subscribe', ...sub });
    const m = await this.expect((x) => (x.op === 'subscribed' || x.op === 'error') && x.id === sub.id, `subscribed ${sub.id}`);
    assert.equal(m.op, 'subscribed', `subscribe ${JSON.stringify(sub)} answered ${JSON.stringify(m)}`);
    assert.ok(Number.isInteger(m.position) && m.position >= 0, `subscribed carries an integer position: ${JSON.stringify(m)}`);
    return m;
  }

  events(sub) { return this.msgs.filter((m) => m.op === 'event' && (sub === undefined || m.sub === sub)).map((m) => m.event); }

  waitEvent(sub, pred, what) {
    return this.until(() => this.events(sub).find(pred), what || `an event on ${sub}`);
  }

  waitEventCount(sub, n, timeout = 60000) {
    return this.until(() => this.events(sub).length >= n, `${n} events on ${sub} (have ${this.events(sub).length})`, timeout);
  }

  async waitClose(timeout = WAIT_MS) {
    const r = await h.race(this.closed, timeout, null);
    if (!r) throw new Error(`${this.url}: not closed within ${timeout} ms; last messages: ${JSON.stringify(this.msgs.slice(-3)).slice(0, 1000)}`);
    return r;
  }

  close() { try { this.ws.close(1000); } catch (_) { /* closed */ } }
  terminate() { try { this.ws.terminate(); } catch (_) { /* closed */ } }
}

const wsUrl = (s, query = '') => `ws://127.0.0.1:${s.wsPort}/v1/ws${query}`;
const tok = (t) => '?token=' + encodeURIComponent(t);
const openAuthed = (s, token = s.adminToken) => Peer.open(wsUrl(s, tok(token)));

// A type prefix no other test uses: types are `<p>.<action>`, the default stream `<p>.events`.
const prefix = () => 't' + h.rand(4);

// Publishes and returns the 201 body (or the batch's events).
async function pub(c, env) {
  const r = await c.publish(env);
  h.assertStatus(r, 201);
  return Array.isArray(env) ? r.body.events : r.body;
}

const positions = (evs) => evs.map((e) => e.position);

function assertStrictlyIncreasing(ps, what) {
  for (let i = 1; i < ps.length; i++) {
    assert.ok(ps[i] > ps[i - 1], `${what}: position ${ps[i]} after ${ps[i - 1]} (index ${i}) — a duplicate or out of order`);
  }
}

// Exactly the model, in order: no gap, no duplicate.
function assertExactly(got, model, what) {
  assertStrictlyIncreasing(got, what);
  const want = [...model].sort((a, b) => a - b);
  if (got.length !== want.length || got.some((p, i) => p !== want[i])) {
    const gs = new Set(got);
    const ws = new Set(want);
    const missing = want.filter((p) => !gs.has(p));
    const extra = got.filter((p) => !ws.has(p));
    assert.fail(`${what}: got ${got.length} events, expected ${want.length}; missing ${JSON.stringify(missing.slice(0, 20))}${missing.length > 20 ? '…' : ''}, unexpected ${JSON.stringify(extra.slice(0, 20))}${extra.length > 20 ? '…' : ''}`);
  }
}

const ENVELOPE_FIELDS = ['position', 'id', 'type', 'stream', 'key', 'version', 'data', 'metadata', 'correlation_id',
  'causation_id', 'user_id', 'source', 'schema_version', 'tenant_id', 'time'];

function vmRssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

// ---------------------------------------------------------------- the shared instance

let s;
let c;
before(async () => { s = await h.startSluice({ name: 'ws' }); c = s.client(); });
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

test('the listening line and /v1/info name a WebSocket port', async () => {
  assert.ok(s.wsPort > 0, 'ws_port in the listening line is a port');
  assert.notEqual(s.wsPort, s.httpPort);
  const info = h.assertStatus(await c.get('/v1/info'), 200);
  assert.ok(JSON.stringify(info).includes(String(s.wsPort)), `/v1/info names ${s.wsPort}: ${JSON.stringify(info)}`);
});

describe('authentication', () => {
  test('?token= with a valid token: subscribe works at once', async () => {
    const p = await openAuthed(s);
    try {
      await p.subscribe({ id: 's1' });
      p.send({ op: 'ping' });
      await p.expectOp('pong');
    } finally { p.close(); }
  });

  test('?token= with a bad token: closed with 1008', async () => {
    for (const bad of ['nope', s.adminToken + 'x', '']) {
      const p = new Peer(wsUrl(s, tok(bad)));
      // the server may answer the handshake first; either way the connection ends with 1008
      p.opened.then(() => p.send({ op: 'subscribe', id: 's1' }), () => {});
      const info = await p.waitClose();
      if (bad === '') {
        // an empty token is no token: the first message must authenticate, and this one cannot
        assert.equal(info.code, 1008, `empty ?token=: ${JSON.stringify(info)}`);
      } else {
        assert.equal(info.code, 1008, `?token=${bad.slice(0, 8)}…: ${JSON.stringify(info)}`);
      }
      assert.ok(!p.msgs.some((m) => m.op === 'subscribed'), 'never subscribed');
    }
  });

  test('first message {"op":"auth"} → authenticated, then the protocol works', async () => {
    const p = await Peer.open(wsUrl(s));
    try {
      p.send({ op: 'auth', token: s.adminToken });
      await p.expectOp('authenticated');
      await p.subscribe({ id: 'a1' });
      p.send({ op: 'ping' });
      await p.expectOp('pong');
    } finally { p.close(); }
  });

  test('a token on the first subscribe is accepted', async () => {
    const pfx = prefix();
    const p = await Peer.open(wsUrl(s));
    try {
      p.send({ op: 'subscribe', id: 'first', token: s.adminToken, types: [`${pfx}.*`] });
      const m = await p.expect((x) => x.id === 'first', 'an answer to the subscribe');
      assert.equal(m.op, 'subscribed', JSON.stringify(m));
      const e = await pub(c, { type: `${pfx}.x`, data: { n: 1 } });
      const got = await p.waitEvent('first', (x) => x.id === e.id);
      assert.equal(got.position, e.position);
    } finally { p.close(); }
  });

  const refusedFirst = [
    ['a subscribe without a token', { op: 'subscribe', id: 's1' }],
    ['a ping without a token', { op: 'ping' }],
    ['auth with a bad token', { op: 'auth', token: 'not-a-token' }],
    ['auth without a token', { op: 'auth' }],
    ['subscribe with a bad token', { op: 'subscribe', id: 's1', token: 'bad' }],
  ];
  for (const [what, msg] of refusedFirst) {
    test(`first message ${what} → error unauthenticated, then close 1008`, async () => {
      const p = await Peer.open(wsUrl(s));
      p.send(msg);
      const info = await p.waitClose();
      assert.equal(info.code, 1008, JSON.stringify(info));
      const err = p.msgs.find((m) => m.op === 'error');
      assert.ok(err, `an error message before the close: ${JSON.stringify(p.msgs)}`);
      assert.equal(err.code, 'unauthenticated', JSON.stringify(err));
      assert.equal(typeof err.message, 'string');
      assert.ok(!p.msgs.some((m) => m.op === 'subscribed' || m.op === 'pong' || m.op === 'authenticated'), JSON.stringify(p.msgs));
    });
  }

  test('unparsable first message before authentication → closed 1008', async () => {
    const p = await Peer.open(wsUrl(s));
    p.send('{not json');
    const info = await p.waitClose();
    assert.equal(info.code, 1008, JSON.stringify(info));
  });

  test('the subscribe scope is required: read-only and publish-only keys are refused, a subscribe key works', async () => {
    const ro = await h.createKey(s, 'default', ['read']);
    const po = await h.createKey(s, 'default', ['publish', 'read']);
    const sub = await h.createKey(s, 'default', ['subscribe']);
    for (const k of [ro, po]) {
      const q = new Peer(wsUrl(s, tok(k.token)));
      q.opened.then(() => q.send({ op: 'subscribe', id: 's1' }), () => {});
      assert.equal((await q.waitClose()).code, 1008, `?token= of a ${k.scopes} key`);
      assert.ok(!q.msgs.some((m) => m.op === 'subscribed'));

      const p = await Peer.open(wsUrl(s));
      p.send({ op: 'auth', token: k.token });
      assert.equal((await p.waitClose()).code, 1008, `auth with a ${k.scopes} key`);
      assert.equal(p.msgs.find((m) => m.op === 'error')?.code, 'unauthenticated', JSON.stringify(p.msgs));
      assert.ok(!p.msgs.some((m) => m.op === 'authenticated'));
    }
    const ok = await openAuthed(s, sub.token);
    try { await ok.subscribe({ id: 'x' }); } finally { ok.close(); }
  });

  test('a deleted key can no longer connect', async () => {
    const k = await h.createKey(s, 'default', ['subscribe']);
    const before = await openAuthed(s, k.token);
    try { await before.subscribe({ id: 'x' }); } finally { before.close(); }
    const del = await c.del('/v1/keys/' + encodeURIComponent(k.id));
    assert.ok(del.status === 204 || del.status === 200, h.describeRes(del));
    const p = new Peer(wsUrl(s, tok(k.token)));
    p.opened.then(() => p.send({ op: 'subscribe', id: 's1' }), () => {});
    assert.equal((await p.waitClose()).code, 1008, 'a deleted key is refused');
    assert.ok(!p.msgs.some((m) => m.op === 'subscribed'));
  });

  test('other paths than /v1/ws are refused at the handshake', async () => {
    for (const p of ['/', '/v1/wsx', '/v1/ws/extra', '/v1/events', '/ws', '/v1/WS']) {
      const peer = new Peer(`ws://127.0.0.1:${s.wsPort}${p}${tok(s.adminToken)}`);
      const r = await h.race(peer.opened.then(() => 'open', (e) => e), WAIT_MS, 'timeout');
      peer.terminate();
      assert.ok(r instanceof Error, `${p}: the handshake must fail, got ${r}`);
    }
  });
});
