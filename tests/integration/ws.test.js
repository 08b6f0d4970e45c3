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
      // (an empty ?token= is no token: then the subscribe, carrying none, is refused the same way)
      assert.equal(info.code, 1008, `?token=${bad.slice(0, 8)}…: ${JSON.stringify(info)}`);
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
      assert.ok(err, `an error message before the close ${JSON.stringify(info)}; got ${JSON.stringify(p.msgs)}`);
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

  test('other paths than /v1/ws are refused at the handshake with 404', async () => {
    for (const p of ['/', '/v1/wsx', '/v1/ws/extra', '/v1/events', '/ws', '/v1/WS']) {
      const peer = new Peer(`ws://127.0.0.1:${s.wsPort}${p}${tok(s.adminToken)}`);
      let status = null;
      peer.ws.once('unexpected-response', (req, res) => { status = res.statusCode; res.resume(); peer.terminate(); });
      const r = await h.race(peer.opened.then(() => 'open', (e) => e), WAIT_MS, 'timeout');
      peer.terminate();
      assert.ok(r !== 'open' && r !== 'timeout', `${p}: the handshake must fail, got ${r}`);
      assert.equal(status, 404, `${p}: answered ${status}`);
    }
  });
});

describe('protocol', () => {
  test('live-only subscribe: position is the head; matching events arrive as stored envelopes', async () => {
    const pfx = prefix();
    const p = await openAuthed(s);
    try {
      await pub(c, { type: `${pfx}.before`, data: { n: 0 } });
      const head = h.assertStatus(await c.get('/v1/info'), 200).head_position;
      const m = await p.subscribe({ id: 's1', types: [`${pfx}.*`] });
      assert.equal(m.position, head, 'a live-only subscription starts at the current head');
      const sent = await pub(c, { type: `${pfx}.created`, data: { a: 1, nested: { b: [1, 'two', null] } }, key: 'k-1',
        correlation_id: 'corr-' + h.rand(3), causation_id: 'cause-1', user_id: 'u-1', source: 'ws-test', metadata: { m: true } });
      const msg = await p.expect((x) => x.op === 'event', 'the event');
      assert.equal(msg.sub, 's1');
      assert.deepEqual(Object.keys(msg).sort(), ['event', 'op', 'sub']);
      const ev = msg.event;
      for (const f of ENVELOPE_FIELDS) assert.ok(f in ev, `event carries ${f}: ${JSON.stringify(ev)}`);
      const stored = h.assertStatus(await c.get('/v1/events/' + encodeURIComponent(sent.id)), 200);
      assert.deepEqual(ev, stored, 'the delivered event is the stored envelope');
      assert.equal(ev.position, sent.position);
      assert.equal(ev.version, 1);
      assert.equal(ev.tenant_id, 'default');
      assert.ok(!p.events('s1').some((e) => e.type === `${pfx}.before`), 'nothing from before the subscription');
    } finally { p.close(); }
  });

  test('filters: streams, types (exact, lists, prefix.* wildcards), key — AND across fields, OR within one', async () => {
    const a = prefix();
    const b = prefix();
    const p = await openAuthed(s);
    try {
      const subs = {
        byStream: { streams: [`${a}.events`] },
        byStreams: { streams: [`${a}.events`, 'custom.' + a] },
        exact: { types: [`${a}.one`] },
        list: { types: [`${a}.one`, `${b}.two`] },
        wild: { types: [`${a}.*`] },
        byKey: { key: 'k1' },
        keyAndType: { types: [`${a}.*`], key: 'k1' },
        streamAndType: { streams: ['custom.' + a], types: [`${b}.*`] },
        nullKey: { types: [`${b}.*`], key: null, streams: null },
        all: {},
      };
      for (const [id, f] of Object.entries(subs)) await p.subscribe({ id, ...f });
      const envs = [
        { type: `${a}.one`, data: {} },
        { type: `${a}.one`, data: {}, key: 'k1' },
        { type: `${a}.two`, data: {}, key: 'k2' },
        { type: `${a}.two.deep`, data: {} },
        { type: `${b}.two`, data: {}, key: 'k1' },
        { type: `${b}.three`, data: {}, stream: 'custom.' + a },
        { type: `${a}x.one`, data: {} }, // shares a prefix string, not the dotted segment
        { type: `${b}.one`, data: {}, stream: `${a}.events` },
      ];
      const sent = [];
      for (const e of envs) sent.push({ env: e, res: await pub(c, e) });
      const fence = await pub(c, { type: `${a}.one`, data: { fence: true }, key: 'k1', stream: `${a}.events` });
      // the fence matches byStream, byStreams, exact, list, wild, byKey, keyAndType, all
      for (const id of ['byStream', 'byStreams', 'exact', 'list', 'wild', 'byKey', 'keyAndType', 'all']) {
        await p.waitEvent(id, (e) => e.id === fence.id, `the fence on ${id}`);
      }
      const stream = (x) => x.env.stream || `${x.env.type.split('.')[0]}.events`;
      const matches = {
        byStream: (x) => stream(x) === `${a}.events`,
        byStreams: (x) => stream(x) === `${a}.events` || stream(x) === 'custom.' + a,
        exact: (x) => x.env.type === `${a}.one`,
        list: (x) => x.env.type === `${a}.one` || x.env.type === `${b}.two`,
        wild: (x) => x.env.type.startsWith(`${a}.`),
        byKey: (x) => x.env.key === 'k1',
        keyAndType: (x) => x.env.key === 'k1' && x.env.type.startsWith(`${a}.`),
        streamAndType: (x) => stream(x) === 'custom.' + a && x.env.type.startsWith(`${b}.`),
        nullKey: (x) => x.env.type.startsWith(`${b}.`),
        all: () => true,
      };
      // nullKey and streamAndType do not match the fence: one more fence for them
      const fence2 = await pub(c, { type: `${b}.fence`, data: {}, stream: 'custom.' + a });
      await p.waitEvent('nullKey', (e) => e.id === fence2.id, 'fence2 on nullKey');
      await p.waitEvent('streamAndType', (e) => e.id === fence2.id, 'fence2 on streamAndType');
      await p.waitEvent('all', (e) => e.id === fence2.id, 'fence2 on all');
      for (const [id, fn] of Object.entries(matches)) {
        const got = p.events(id).filter((e) => e.id !== fence.id && e.id !== fence2.id);
        const want = sent.filter(fn).map((x) => x.res.position);
        assertExactly(positions(got), want, `subscription ${id} ${JSON.stringify(subs[id])}`);
      }
    } finally { p.close(); }
  });

  test('several subscriptions on one connection: an event matching two is delivered once to each', async () => {
    const pfx = prefix();
    const p = await openAuthed(s);
    try {
      await p.subscribe({ id: 'one', types: [`${pfx}.a`] });
      await p.subscribe({ id: 'two', types: [`${pfx}.*`] });
      const e1 = await pub(c, { type: `${pfx}.a`, data: {} });
      const e2 = await pub(c, { type: `${pfx}.b`, data: {} });
      await p.waitEvent('two', (e) => e.id === e2.id);
      await p.waitEvent('one', (e) => e.id === e1.id);
      assert.deepEqual(positions(p.events('one')), [e1.position]);
      assert.deepEqual(positions(p.events('two')), [e1.position, e2.position]);
    } finally { p.close(); }
  });

  test('at most 16 subscriptions per connection; the 17th is an error and the connection stays usable', async () => {
    const p = await openAuthed(s);
    try {
      for (let i = 0; i < 16; i++) await p.subscribe({ id: 'm' + i, types: ['never.happens'] });
      p.send({ op: 'subscribe', id: 'm16' });
      const err = await p.expect((x) => x.id === 'm16' || x.op === 'error', 'an answer to the 17th subscribe');
      assert.equal(err.op, 'error', `the 17th subscription is refused: ${JSON.stringify(err)}`);
      assert.equal(typeof err.code, 'string');
      p.send({ op: 'unsubscribe', id: 'm0' });
      await p.expectOp('unsubscribed', { id: 'm0' });
      await p.subscribe({ id: 'm16' });
      p.send({ op: 'ping' });
      await p.expectOp('pong');
    } finally { p.close(); }
  });

  test('a duplicate subscription id → error conflict; the first subscription keeps working', async () => {
    const pfx = prefix();
    const p = await openAuthed(s);
    try {
      await p.subscribe({ id: 'dup', types: [`${pfx}.a`] });
      p.send({ op: 'subscribe', id: 'dup', types: [`${pfx}.*`] });
      const err = await p.expectOp('error');
      assert.equal(err.code, 'conflict', JSON.stringify(err));
      assert.equal(typeof err.message, 'string');
      const b = await pub(c, { type: `${pfx}.b`, data: {} });
      const a = await pub(c, { type: `${pfx}.a`, data: {} });
      await p.waitEvent('dup', (e) => e.id === a.id);
      assert.deepEqual(positions(p.events('dup')), [a.position], `the original filter still applies (not ${b.position})`);
    } finally { p.close(); }
  });

  test('unsubscribe → unsubscribed and no more events for it; unknown id → not_found', async () => {
    const pfx = prefix();
    const p = await openAuthed(s);
    try {
      await p.subscribe({ id: 'u1', types: [`${pfx}.*`] });
      await p.subscribe({ id: 'u2', types: [`${pfx}.*`] });
      const e1 = await pub(c, { type: `${pfx}.a`, data: {} });
      await p.waitEvent('u1', (e) => e.id === e1.id);
      p.send({ op: 'unsubscribe', id: 'u1' });
      await p.expectOp('unsubscribed', { id: 'u1' });
      const e2 = await pub(c, { type: `${pfx}.a`, data: {} });
      await p.waitEvent('u2', (e) => e.id === e2.id);
      assert.deepEqual(positions(p.events('u1')), [e1.position], 'nothing after unsubscribed');
      p.send({ op: 'unsubscribe', id: 'u1' });
      const err = await p.expectOp('error');
      assert.equal(err.code, 'not_found', JSON.stringify(err));
      p.send({ op: 'unsubscribe', id: 'never-was' });
      assert.equal((await p.expectOp('error')).code, 'not_found');
      // the id is free again
      await p.subscribe({ id: 'u1', types: [`${pfx}.*`] });
    } finally { p.close(); }
  });

  test('ping → pong', async () => {
    const p = await openAuthed(s);
    try {
      for (let i = 0; i < 3; i++) {
        p.send({ op: 'ping' });
        await p.expectOp('pong');
      }
    } finally { p.close(); }
  });

  const bad = [
    ['unparsable JSON', '{"op":'],
    ['a JSON array', '[1,2]'],
    ['a JSON string', '"subscribe"'],
    ['no op', { id: 'x' }],
    ['an unknown op', { op: 'frobnicate' }],
    ['a non-string op', { op: 7 }],
    ['subscribe without id', { op: 'subscribe' }],
    ['subscribe with an empty id', { op: 'subscribe', id: '' }],
    ['subscribe with a numeric id', { op: 'subscribe', id: 5 }],
    ['subscribe with a negative from_position', { op: 'subscribe', id: 'b1', from_position: -1 }],
    ['subscribe with a string from_position', { op: 'subscribe', id: 'b2', from_position: '10' }],
    ['subscribe with streams not an array', { op: 'subscribe', id: 'b3', streams: 'a.events' }],
    ['subscribe with types not an array', { op: 'subscribe', id: 'b4', types: 'a.*' }],
    ['subscribe with a malformed type', { op: 'subscribe', id: 'b5', types: ['Not A Type'] }],
    ['subscribe with a non-string key', { op: 'subscribe', id: 'b6', key: 12 }],
    ['unsubscribe without id', { op: 'unsubscribe' }],
  ];
  for (const [what, msg] of bad) {
    test(`once authenticated, ${what} → {"op":"error"} and the connection stays open`, async () => {
      const p = await openAuthed(s);
      try {
        p.send(msg);
        const err = await p.expect((x) => x.op === 'error' || x.op === 'subscribed', 'an error');
        assert.equal(err.op, 'error', JSON.stringify(err));
        assert.equal(typeof err.code, 'string');
        assert.equal(typeof err.message, 'string');
        p.send({ op: 'ping' });
        await p.expectOp('pong');
        assert.equal(p.closeInfo, null, 'still open');
        if (typeof msg === 'object' && msg.id && typeof msg.id === 'string') {
          // the refused subscription does not exist
          p.send({ op: 'unsubscribe', id: msg.id });
          assert.equal((await p.expectOp('error')).code, 'not_found');
        }
      } finally { p.close(); }
    });
  }
});

describe('messages in pieces (issue 8): reassembled up to 64 KiB', () => {
  // A JSON text of exactly `bytes` bytes: `msg` with an ignored "pad" field filling the rest.
  function sized(msg, bytes) {
    const base = JSON.stringify({ ...msg, pad: '' });
    assert.ok(base.length <= bytes, `${base.length} bytes before padding`);
    const text = JSON.stringify({ ...msg, pad: 'p'.repeat(bytes - base.length) });
    assert.equal(Buffer.byteLength(text), bytes);
    return text;
  }

  // The longest filters a subscription takes: 16 types and 16 streams of 128 characters, a
  // 256-character key; one of each matches `pfx`'s events.
  function longestFilters(pfx, id) {
    const types = [`${pfx}.hit`, ...Array.from({ length: 15 }, (_, i) => `${pfx}.t${i}_`.padEnd(128, 'x'))];
    const streams = [`${pfx}.events`, ...Array.from({ length: 15 }, (_, i) => `${pfx}-s${i}-`.padEnd(128, 'y'))];
    return { op: 'subscribe', id, types, streams, key: 'k'.repeat(256) };
  }

  // Every error message after the previous expect()'s match, up to the pong that answers a ping.
  async function errorsUntilPong(p) {
    p.send({ op: 'ping' });
    const from = p.cursor;
    await p.expectOp('pong');
    return p.msgs.slice(from, p.cursor).filter((m) => m.op === 'error');
  }

  test('a 6 KB subscribe (the longest filters) is read whole, subscribes and delivers', async () => {
    const pfx = prefix();
    const p = await openAuthed(s);
    try {
      const text = sized(longestFilters(pfx, 'long'), 6144);
      p.send(text);
      const m = await p.expect((x) => x.id === 'long' || x.op === 'error', 'an answer to the 6 KB subscribe');
      assert.equal(m.op, 'subscribed', `a ${text.length}-byte subscribe answered ${JSON.stringify(m)}`);
      const e = await pub(c, { type: `${pfx}.hit`, data: {}, key: 'k'.repeat(256) });
      await pub(c, { type: `${pfx}.miss`, data: {}, key: 'k'.repeat(256) });
      const fence = await pub(c, { type: `${pfx}.hit`, data: { fence: true }, key: 'k'.repeat(256) });
      await p.waitEvent('long', (x) => x.id === fence.id, 'the fence');
      assert.deepEqual(positions(p.events('long')), [e.position, fence.position]);
      assert.deepEqual(await errorsUntilPong(p), []);
    } finally { p.close(); }
  });

  test('a first message of 6 KB authenticates and subscribes', async () => {
    const p = await Peer.open(wsUrl(s));
    try {
      p.send(sized({ op: 'subscribe', id: 'first', token: s.adminToken }, 6144));
      const m = await p.expect((x) => x.id === 'first' || x.op === 'error', 'an answer');
      assert.equal(m.op, 'subscribed', JSON.stringify(m));
    } finally { p.close(); }
  });

  test('a message sent as several frames (RFC 6455 fragmentation) is one message', async () => {
    const pfx = prefix();
    const p = await openAuthed(s);
    try {
      const text = JSON.stringify(longestFilters(pfx, 'frag'));
      const cuts = [0, 7, 3000, 3001, text.length]; // frames of 7, 2993, 1 and the rest bytes
      for (let i = 0; i < cuts.length - 1; i++) p.ws.send(text.slice(cuts[i], cuts[i + 1]), { fin: i === cuts.length - 2 });
      p.ws.send('', { fin: false }); // then a message whose first frame is empty
      p.ws.send(JSON.stringify({ op: 'ping' }), { fin: true });
      await p.subscribe({ id: 'after', types: [`${pfx}.*`] }); // in order: frag's answer came first
      const frag = p.msgs.find((x) => x.id === 'frag');
      assert.equal(frag?.op, 'subscribed', JSON.stringify(p.msgs));
      assert.ok(p.msgs.some((x) => x.op === 'pong'), 'the ping sent as an empty frame and a final one');
      const e = await pub(c, { type: `${pfx}.hit`, data: {}, key: 'k'.repeat(256) });
      await p.waitEvent('frag', (x) => x.id === e.id);
      assert.deepEqual(await errorsUntilPong(p), []);
    } finally { p.close(); }
  });

  test('64 KiB is accepted; past it: one payload_too_large error, the rest dropped, the connection usable', async () => {
    const p = await openAuthed(s);
    try {
      p.send(sized({ op: 'subscribe', id: 'at-limit' }, 65536));
      await p.expectOp('subscribed', { id: 'at-limit' });
      for (const [what, send] of [
        ['one byte over', () => p.send(sized({ op: 'subscribe', id: 'over' }, 65537))],
        ['a megabyte', () => p.send(sized({ op: 'subscribe', id: 'over' }, 1 << 20))],
        ['in frames, over the limit in the third', () => {
          const text = sized({ op: 'subscribe', id: 'over' }, 100000);
          for (let i = 0; i < 5; i++) p.ws.send(text.slice(i * 20000, (i + 1) * 20000), { fin: i === 4 });
        }],
      ]) {
        send();
        const errors = await errorsUntilPong(p);
        assert.deepEqual(errors.map((x) => x.code), ['payload_too_large'], `${what}: ${JSON.stringify(errors).slice(0, 500)}`);
        assert.equal(typeof errors[0].message, 'string');
      }
      p.send({ op: 'unsubscribe', id: 'over' });
      assert.equal((await p.expectOp('error')).code, 'not_found', 'no oversized message took effect');
      p.send({ op: 'unsubscribe', id: 'at-limit' });
      await p.expectOp('unsubscribed', { id: 'at-limit' });
      assert.equal(p.closeInfo, null, 'still open');
    } finally { p.close(); }
  });
});

describe('from_position: history, then live, no gap and no duplicate', () => {
  test('history after from_position first, then live events', async () => {
    const pfx = prefix();
    const hist = await pub(c, Array.from({ length: 30 }, (_, i) => ({ type: `${pfx}.h`, data: { i } })));
    await pub(c, { type: 'other.noise', data: {} });
    const from = hist[9].position;
    const p = await openAuthed(s);
    try {
      const m = await p.subscribe({ id: 'h', types: [`${pfx}.*`], from_position: from });
      assert.equal(m.position, from, 'subscribed names from_position');
      await p.waitEventCount('h', 20);
      const live = await pub(c, { type: `${pfx}.live`, data: {} });
      await p.waitEvent('h', (e) => e.id === live.id);
      assertExactly(positions(p.events('h')), [...hist.slice(10).map((x) => x.position), live.position], 'history then live');
      // history events are full stored envelopes too
      const stored = h.assertStatus(await c.get('/v1/events/' + hist[10].id), 200);
      assert.deepEqual(p.events('h')[0], stored);
      // the subscribed answer comes before the first event
      const iSub = p.msgs.findIndex((x) => x.op === 'subscribed' && x.id === 'h');
      const iEv = p.msgs.findIndex((x) => x.op === 'event' && x.sub === 'h');
      assert.ok(iSub < iEv, 'subscribed before the events');
    } finally { p.close(); }
  });

  test('from_position 0 replays the whole history of the tenant; from the head replays nothing', async () => {
    const pfx = prefix();
    const hist = await pub(c, Array.from({ length: 5 }, (_, i) => ({ type: `${pfx}.h`, data: { i } })));
    const p = await openAuthed(s);
    try {
      await p.subscribe({ id: 'zero', types: [`${pfx}.*`], from_position: 0 });
      const head = h.assertStatus(await c.get('/v1/info'), 200).head_position;
      const m = await p.subscribe({ id: 'head', types: [`${pfx}.*`], from_position: head });
      assert.equal(m.position, head);
      const live = await pub(c, { type: `${pfx}.live`, data: {} });
      await p.waitEvent('zero', (e) => e.id === live.id);
      await p.waitEvent('head', (e) => e.id === live.id);
      assertExactly(positions(p.events('zero')), [...positions(hist), live.position], 'from 0');
      assertExactly(positions(p.events('head')), [live.position], 'from the head');
    } finally { p.close(); }
  });

  test('publishing while a subscriber catches up from a big history: exactly the model, in order', { timeout: 300000 }, async () => {
    const pfx = prefix();
    const noise = prefix();
    const HIST_BATCHES = 40; // 20,000 events, 16,000 matching
    const model = [];
    const startHead = h.assertStatus(await c.get('/v1/info'), 200).head_position;
    // history interleaved with noise the filter excludes
    for (let b = 0; b < HIST_BATCHES; b++) {
      const evs = await pub(c, Array.from({ length: 500 }, (_, i) => ({ type: i % 5 === 4 ? `${noise}.n` : `${pfx}.hist`, data: { b, i, pad: 'x'.repeat(200) } })));
      evs.forEach((e, i) => { if (i % 5 !== 4) model.push(e.position); });
    }
    const histCount = model.length;
    const p = await openAuthed(s);
    let writing = true;
    let duringCatchup = 0; // live writes acknowledged while history was still being delivered
    let subscribed = false;
    const writers = Promise.all(Array.from({ length: 3 }, async (_, w) => {
      let i = 0;
      while (writing) {
        const batch = i % 3 === 2;
        const envs = Array.from({ length: batch ? 10 : 1 }, (_, j) => ({ type: j % 4 === 3 ? `${noise}.live` : `${pfx}.live`, data: { w, i, j } }));
        const res = await pub(c, batch ? envs : envs[0]);
        (batch ? res : [res]).forEach((e, j) => { if (j % 4 !== 3) model.push(e.position); });
        if (subscribed && p.events('cu').length < histCount) duringCatchup++;
        i++;
      }
    }));
    try {
      await h.sleep(100);
      subscribed = true;
      await p.subscribe({ id: 'cu', types: [`${pfx}.*`], from_position: startHead });
      // keep publishing until the history has been delivered, and a while after the seam
      await p.waitEventCount('cu', histCount, 120000);
      const n = p.events('cu').length;
      await p.until(() => p.events('cu').length > n + 50, 'live events after the catch-up', 60000);
    } finally {
      writing = false;
      await writers;
    }
    try {
      const fence = await pub(c, { type: `${pfx}.fence`, data: {} });
      model.push(fence.position);
      await p.waitEvent('cu', (e) => e.id === fence.id, 'the fence', 120000);
      assertExactly(positions(p.events('cu')), model, 'catch-up under load');
      assert.ok(p.events('cu').every((e) => e.type.startsWith(`${pfx}.`)), 'only matching events');
      assert.ok(duringCatchup > 0, 'some events were published while the history was being delivered (the seam was crossed under load)');
    } finally { p.close(); }
  });

  test('a live-only subscription made while events are being published misses nothing after its position', async () => {
    const pfx = prefix();
    const acked = [];
    let writing = true;
    const writer = (async () => {
      let i = 0;
      while (writing) acked.push((await pub(c, { type: `${pfx}.a`, data: { i: i++ } })).position);
    })();
    const peers = [];
    try {
      await h.sleep(100);
      for (let k = 0; k < 5; k++) {
        const p = await openAuthed(s);
        peers.push(p);
        p.sub = await p.subscribe({ id: 'live', types: [`${pfx}.*`] });
        await h.sleep(60);
      }
      await h.sleep(200);
    } finally {
      writing = false;
      await writer;
    }
    try {
      const fence = await pub(c, { type: `${pfx}.fence`, data: {} });
      for (const p of peers) {
        await p.waitEvent('live', (e) => e.id === fence.id, 'the fence');
        const want = [...acked.filter((x) => x > p.sub.position), fence.position];
        assertExactly(positions(p.events('live')), want, `subscribed at ${p.sub.position}`);
        const iSub = p.msgs.findIndex((x) => x.op === 'subscribed');
        const iEv = p.msgs.findIndex((x) => x.op === 'event');
        assert.ok(iSub < iEv, `subscribed (message ${iSub}) precedes the first event (message ${iEv})`);
      }
    } finally { for (const p of peers) p.close(); }
  });

  test('a live subscription made after a 201 starts after that event, even before the tail has read it (issue 8)', async () => {
    // "live" starts after the last position this instance knows is committed: its own last
    // commit, not only what its tail has handed to the hub, which may trail a 201 by a moment.
    const pfx = prefix();
    const p = await openAuthed(s);
    try {
      for (let i = 0; i < 40; i++) {
        const ack = await pub(c, { type: `${pfx}.a`, data: { i } });
        const m = await p.subscribe({ id: `l${i}`, types: [`${pfx}.*`] });
        assert.ok(m.position >= ack.position, `subscribed at ${m.position} right after the 201 of position ${ack.position}`);
        p.send({ op: 'unsubscribe', id: `l${i}` });
        await p.expectOp('unsubscribed', { id: `l${i}` });
      }
      p.send({ op: 'ping' });
      await p.expectOp('pong');
      assert.deepEqual(positions(p.events()), [], 'no subscription received the event acknowledged before it was made');
    } finally { p.close(); }
  });

  test('resume across a reconnect from the last position received: no gap, no duplicate', async () => {
    const pfx = prefix();
    const first = await pub(c, Array.from({ length: 20 }, (_, i) => ({ type: `${pfx}.a`, data: { i } })));
    const start = first[0].position - 1;
    const p1 = await openAuthed(s);
    await p1.subscribe({ id: 'r', types: [`${pfx}.*`], from_position: start });
    await p1.waitEventCount('r', 7);
    p1.terminate(); // an abrupt drop, as a network failure would
    await p1.waitClose();
    const got1 = positions(p1.events('r'));
    const last = got1[got1.length - 1];
    const second = [];
    for (let i = 0; i < 10; i++) second.push(await pub(c, { type: `${pfx}.b`, data: { i } }));
    const p2 = await openAuthed(s);
    try {
      await p2.subscribe({ id: 'r', types: [`${pfx}.*`], from_position: last });
      const fence = await pub(c, { type: `${pfx}.fence`, data: {} });
      await p2.waitEvent('r', (e) => e.id === fence.id);
      const all = [...positions(first), ...positions(second), fence.position];
      assertExactly([...got1, ...positions(p2.events('r'))], all, 'first connection + resumed connection');
    } finally { p2.close(); }
  });
});

describe('tenant isolation', () => {
  test("a tenant-B key never receives tenant A's events, live or from history", async () => {
    const pfx = prefix();
    const kb = await h.createKey(s, 'tenant-ws-b', ['publish', 'read', 'subscribe']);
    const B = s.client(kb.token);
    const aHist = await pub(c, { type: `${pfx}.a`, data: { who: 'A' }, key: 'same', correlation_id: 'corr-' + pfx });
    const bHist = await pub(B, { type: `${pfx}.b`, data: { who: 'B' }, key: 'same' });
    const pb = await openAuthed(s, kb.token);
    const pa = await openAuthed(s);
    try {
      await pb.subscribe({ id: 'all', from_position: 0 });
      await pb.subscribe({ id: 'typed', types: [`${pfx}.*`], key: 'same', from_position: aHist.position - 1 });
      await pb.subscribe({ id: 'live', streams: [`${pfx}.events`] });
      await pa.subscribe({ id: 'a', types: [`${pfx}.*`] });
      const aLive = await pub(c, { type: `${pfx}.a`, data: { who: 'A' }, key: 'same' });
      const bLive = await pub(B, { type: `${pfx}.b`, data: { who: 'B' }, key: 'same' });
      const aFence = await pub(c, { type: `${pfx}.afence`, data: {} });
      for (const id of ['all', 'typed', 'live']) await pb.waitEvent(id, (e) => e.id === bLive.id, `B's live event on ${id}`);
      await pa.waitEvent('a', (e) => e.id === aFence.id);
      for (const id of ['all', 'typed', 'live']) {
        const evs = pb.events(id);
        assert.ok(evs.every((e) => e.tenant_id === 'tenant-ws-b'), `${id}: only tenant B: ${JSON.stringify(evs.filter((e) => e.tenant_id !== 'tenant-ws-b')).slice(0, 500)}`);
        assert.ok(!evs.some((e) => e.id === aHist.id || e.id === aLive.id), `${id}: none of A's events`);
      }
      assertExactly(positions(pb.events('typed')), [bHist.position, bLive.position], 'B typed');
      assertExactly(positions(pb.events('live')), [bLive.position], 'B live');
      assert.ok(pb.events('all').some((e) => e.id === bHist.id), "B's history");
      assertExactly(positions(pa.events('a')), [aLive.position, aFence.position], "A sees only A's events");
    } finally { pa.close(); pb.close(); }
  });
});

describe('slow subscriber', () => {
  test('a client that stops reading is closed 1013 naming its last position; RSS stays bounded; others are unaffected', { timeout: 300000 }, async (tt) => {
    const t = await h.startSluice({ name: 'ws-slow', env: { SLUICE_WS_QUEUE_MESSAGES: '64' } });
    const tc = t.client();
    const pfx = prefix();
    const peers = [];
    try {
      const slow = await openAuthed(t);
      const healthy = await openAuthed(t);
      peers.push(slow, healthy);
      await slow.subscribe({ id: 'slow', types: [`${pfx}.*`] });
      await healthy.subscribe({ id: 'ok', types: [`${pfx}.*`] });
      slow.ws._socket.pause(); // stop reading: the kernel buffers fill, then the server's queue

      const rss0 = vmRssKiB(t.proc.pid);
      let peak = rss0;
      const sampler = setInterval(() => { try { peak = Math.max(peak, vmRssKiB(t.proc.pid)); } catch (_) { /* exited */ } }, 50);
      const model = [];
      const pad = 'p'.repeat(16000);
      try {
        // 300 batches of 8 events of ~16 KB: ~38 MB, far past socket buffers and 64 messages.
        // Small batches: a committed batch is queued at once, so a batch larger than the queue
        // bound would overflow every subscriber, the healthy one too.
        for (let b = 0; b < 300; b++) {
          const evs = await pub(tc, Array.from({ length: 8 }, (_, i) => ({ type: `${pfx}.load`, data: { b, i, pad } })));
          model.push(...positions(evs));
        }
        await healthy.waitEvent('ok', (e) => e.position === model[model.length - 1], 'the last event on the healthy client', 120000);
      } finally {
        clearInterval(sampler);
      }
      assertExactly(positions(healthy.events('ok')), model, 'the healthy subscriber got everything');
      assert.equal(healthy.closeInfo, null, 'the healthy subscriber stays open');

      slow.ws._socket.resume();
      const info = await slow.waitClose(60000);
      assert.equal(info.code, 1013, `closed with 1013 (try again later): ${JSON.stringify(info)}`);
      const m = /^slow consumer; last position (\d+)$/.exec(info.reason);
      assert.ok(m, `the reason names the last position: ${JSON.stringify(info.reason)}`);
      const last = Number(m[1]);
      const got = positions(slow.events('slow'));
      assert.ok(got.length < model.length, `the slow client was cut off (${got.length} of ${model.length})`);
      assert.equal(got.length ? got[got.length - 1] : model[0] - 1, last, 'the last position received is the one the reason names');
      assertExactly(got, model.filter((x) => x <= last), 'what the slow client got before the close');

      const growthMiB = (peak - rss0) / 1024;
      tt.diagnostic(`RSS ${rss0} KiB → peak ${peak} KiB; slow client cut at position ${last} after ${got.length} of ${model.length} events`);
      assert.ok(growthMiB < 200, `server RSS grew ${growthMiB.toFixed(1)} MiB (from ${rss0} KiB to ${peak} KiB) with a paused subscriber`);

      // it can resume from the named position with no gap and no duplicate
      const again = await openAuthed(t);
      peers.push(again);
      await again.subscribe({ id: 'slow', types: [`${pfx}.*`], from_position: last });
      await again.waitEvent('slow', (e) => e.position === model[model.length - 1], 'the rest after resuming', 120000);
      assertExactly([...got, ...positions(again.events('slow'))], model, 'before the close + after resuming');

      // the server is healthy
      h.assertStatus(await tc.get('/health', { token: null }), 200);
      for (const p of peers) p.close();
      await t.stop();
    } finally {
      for (const p of peers) p.terminate();
      await t.cleanup();
    }
  });
});

describe('a slow reader during a catch-up', () => {
  test('history leaves half the queue to live events: a reader that pauses (less than the stall time) is not cut (issue 8)', { timeout: 300000 }, async (tt) => {
    // One connection, two subscriptions: `hist` catches up on ~19 MB of history while `live`
    // receives live events. The reader pauses: the kernel's buffers fill, then the server's
    // queue (64 messages here). History may take only half of it, so the live batch published
    // during the pause still fits; before, history filled the queue to its bound and the batch
    // overflowed it (1013), cutting a reader that had only paused.
    const t = await h.startSluice({ name: 'ws-seam', env: { SLUICE_WS_QUEUE_MESSAGES: '64' } });
    const tc = t.client();
    const ph = prefix();
    const pl = prefix();
    const peers = [];
    try {
      const pad = 'p'.repeat(16000);
      const hist = [];
      for (let b = 0; b < 150; b++) hist.push(...positions(await pub(tc, Array.from({ length: 8 }, (_, i) => ({ type: `${ph}.h`, data: { b, i, pad } })))));
      const p = await openAuthed(t);
      peers.push(p);
      await p.subscribe({ id: 'live', types: [`${pl}.*`] });
      p.ws._socket.pause();
      p.send({ op: 'subscribe', id: 'hist', types: [`${ph}.*`], from_position: hist[0] - 1 });
      await h.sleep(3000); // the catch-up fills the socket buffers and its share of the queue
      const live = positions(await pub(tc, Array.from({ length: 8 }, (_, i) => ({ type: `${pl}.x`, data: { i } }))));
      await h.sleep(500); // the tail hands the batch to the hub
      p.ws._socket.resume();
      const lastH = await pub(tc, { type: `${ph}.fence`, data: {} });
      const lastL = await pub(tc, { type: `${pl}.fence`, data: {} });
      await p.waitEvent('hist', (e) => e.id === lastH.id, 'the end of the history and the fence', 120000);
      await p.waitEvent('live', (e) => e.id === lastL.id, 'the live fence', 120000);
      assert.equal(p.closeInfo, null, 'not closed');
      assertExactly(positions(p.events('live')), [...live, lastL.position], 'live events during the pause');
      assertExactly(positions(p.events('hist')), [...hist, lastH.position], 'history, then live');
      tt.diagnostic(`${hist.length} history events of 16 KB, ${live.length} live events during the pause`);
      p.close();
      await t.stop();
    } finally {
      for (const x of peers) x.terminate();
      await t.cleanup();
    }
  });
});

describe('several instances and shutdown', () => {
  test('two instances on one database: a WebSocket client on B receives events posted to A', { timeout: 120000 }, async () => {
    const db = await h.freshDatabase();
    const adminToken = 'adm_' + h.rand(16);
    const started = await Promise.allSettled([
      h.startSluice({ name: 'ws-a', dbUrl: db.url, adminToken }),
      h.startSluice({ name: 'ws-b', dbUrl: db.url, adminToken }),
    ]);
    const handles = started.filter((r) => r.status === 'fulfilled').map((r) => r.value);
    const peers = [];
    try {
      for (const r of started) if (r.status === 'rejected') throw r.reason;
      const [a, b] = handles;
      const pfx = prefix();
      const hist = await pub(a.client(), Array.from({ length: 5 }, (_, i) => ({ type: `${pfx}.h`, data: { i } })));
      const onB = await openAuthed(b);
      peers.push(onB);
      const liveSub = await onB.subscribe({ id: 'live', types: [`${pfx}.*`] });
      await onB.subscribe({ id: 'hist', types: [`${pfx}.*`], from_position: 0 });
      const sent = [];
      for (let i = 0; i < 20; i++) sent.push(await pub((i % 4 === 3 ? b : a).client(), { type: `${pfx}.x`, data: { i }, key: 'k' }));
      const batch = await pub(a.client(), Array.from({ length: 10 }, (_, i) => ({ type: `${pfx}.y`, data: { i } })));
      const last = batch[batch.length - 1];
      await onB.waitEvent('live', (e) => e.id === last.id, 'the last event posted to A, on B');
      await onB.waitEvent('hist', (e) => e.id === last.id, 'the last event posted to A, on B (catch-up)');
      const live = [...positions(sent), ...positions(batch)];
      // Live on B starts after what B knew was committed when it subscribed (README): A's
      // history, acknowledged by A, is in it only if B's tail had not read it yet.
      assertExactly(positions(onB.events('live')), [...positions(hist), ...live].filter((x) => x > liveSub.position), `live on B (from ${liveSub.position})`);
      assertExactly(positions(onB.events('hist')), [...positions(hist), ...live], 'history + live on B');
      const stored = h.assertStatus(await b.client().get('/v1/events/' + sent[0].id), 200);
      assert.deepEqual(onB.events('live').find((e) => e.id === sent[0].id), stored, 'the same stored envelope');
      // versions assigned by either instance, seen in order
      assert.deepEqual(onB.events('live').filter((e) => e.key === 'k').map((e) => e.version), Array.from({ length: 20 }, (_, i) => i + 1));
      for (const p of peers) p.close();
      for (const x of handles) await x.stop();
    } finally {
      for (const p of peers) p.terminate();
      for (const x of handles) await x.cleanup();
      db.drop();
    }
  });

  test('SIGTERM closes every open WebSocket with 1001 and exits 0', { timeout: 120000 }, async () => {
    const t = await h.startSluice({ name: 'ws-term' });
    const peers = [];
    try {
      const subscribed = await openAuthed(t);
      peers.push(subscribed);
      await subscribed.subscribe({ id: 's', from_position: 0 });
      const viaAuth = await Peer.open(wsUrl(t));
      peers.push(viaAuth);
      viaAuth.send({ op: 'auth', token: t.adminToken });
      await viaAuth.expectOp('authenticated');
      const idle = await openAuthed(t); // authenticated, no subscription
      peers.push(idle);
      idle.send({ op: 'ping' });
      await idle.expectOp('pong');
      await pub(t.client(), { type: 'term.x', data: {} });
      await subscribed.waitEventCount('s', 1);
      const stopping = t.stop();
      const infos = await Promise.all(peers.map((p) => p.waitClose(30000)));
      for (const [i, info] of infos.entries()) assert.equal(info.code, 1001, `peer ${i}: ${JSON.stringify(info)}`);
      await stopping;
    } finally {
      for (const p of peers) p.terminate();
      await t.cleanup();
    }
  });
});
