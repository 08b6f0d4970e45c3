'use strict';
// Issue 4: the live feed as Server-Sent Events, `GET /v1/subscribe?stream=&type=&from_position=`
// (API.md "Live subscriptions"): scope subscribe, `text/event-stream`, one block per event
// `id: <position>\nevent: event\ndata: <stored envelope>\n\n`, `Last-Event-ID` resume with no
// gap and no duplicate, `: keep-alive` comments about every 15 s, tenant isolation, a
// SIGTERM that does not hang on an open stream, no thread per subscriber, and a stalled
// reader's stream ending at its queue's bound.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const h = require('./lib/harness');

const WAIT_MS = 20000;

// ---------------------------------------------------------------- an SSE reader

// Reads one text/event-stream response, parsing it as the WHATWG spec does, and keeps each
// event's raw lines so the exact format can be checked.
class Sse {
  static async open(base, path, { token, headers = {} } = {}) {
    const ctrl = new AbortController();
    const hd = { Accept: 'text/event-stream', ...headers };
    if (token) hd.Authorization = `Bearer ${token}`;
    const timer = setTimeout(() => ctrl.abort(), WAIT_MS);
    let res;
    try {
      res = await fetch(base + path, { headers: hd, signal: ctrl.signal });
    } finally { clearTimeout(timer); }
    const sse = new Sse(res, ctrl);
    if (res.status === 200 && /^text\/event-stream/.test(res.headers.get('content-type') || '')) sse.pump();
    else sse.text = await res.text();
    return sse;
  }

  constructor(res, ctrl) {
    this.res = res;
    this.status = res.status;
    this.contentType = res.headers.get('content-type') || '';
    this.ctrl = ctrl;
    this.events = []; // {id, event, data (parsed), rawLines}
    this.comments = [];
    this.waiters = new Set();
    this.ended = false;
    this.error = null;
  }

  async pump() {
    const dec = new TextDecoder();
    let pending = '';
    let block = [];
    try {
      for await (const chunk of this.res.body) {
        pending += dec.decode(chunk, { stream: true });
        let i;
        while ((i = pending.search(/\r\n|\r|\n/)) >= 0) {
          const line = pending.slice(0, i);
          pending = pending.slice(pending[i] === '\r' && pending[i + 1] === '\n' ? i + 2 : i + 1);
          if (line === '') { this.dispatch(block); block = []; } else block.push(line);
        }
        this.wake();
      }
    } catch (e) {
      if (!this.aborted) this.error = e;
    } finally {
      this.ended = true;
      this.wake();
    }
  }

  dispatch(lines) {
    const ev = { id: undefined, event: undefined, dataLines: [], rawLines: lines };
    let hasField = false;
    for (const line of lines) {
      if (line.startsWith(':')) { this.comments.push(line); continue; }
      hasField = true;
      const j = line.indexOf(':');
      const field = j < 0 ? line : line.slice(0, j);
      let value = j < 0 ? '' : line.slice(j + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'id') ev.id = value;
      else if (field === 'event') ev.event = value;
      else if (field === 'data') ev.dataLines.push(value);
    }
    if (!hasField || ev.dataLines.length === 0) return; // retry:, comments only
    const text = ev.dataLines.join('\n');
    try { ev.data = JSON.parse(text); } catch (_) { ev.data = undefined; ev.text = text; }
    this.events.push(ev);
  }

  wake() { for (const w of this.waiters) w(); }

  async until(fn, what, timeout = WAIT_MS) {
    let v = fn();
    if (v) return v;
    let wake;
    const p = new Promise((resolve) => {
      wake = () => { const x = fn(); if (x || this.ended) resolve(x); };
      this.waiters.add(wake);
    });
    try { v = await h.race(p, timeout, undefined); } finally { this.waiters.delete(wake); }
    if (!v) v = fn();
    if (!v) throw new Error(`${this.ended ? 'stream ended' + (this.error ? ' (' + this.error.message + ')' : '') : 'timed out after ' + timeout + ' ms'} waiting for ${what}; last events: ${JSON.stringify(this.events.slice(-3).map((e) => e.rawLines)).slice(0, 1500)}`);
    return v;
  }

  dataEvents() { return this.events.filter((e) => e.event === 'event').map((e) => e.data); }
  waitFor(pred, what) { return this.until(() => this.dataEvents().find(pred), what); }
  waitCount(n, timeout = 60000) { return this.until(() => this.dataEvents().length >= n, `${n} events (have ${this.dataEvents().length})`, timeout); }

  close() { this.aborted = true; try { this.ctrl.abort(); } catch (_) { /* closed */ } }
}

// ---------------------------------------------------------------- helpers

const prefix = () => 's' + h.rand(4);

async function pub(c, env) {
  const r = await c.publish(env);
  h.assertStatus(r, 201);
  return Array.isArray(env) ? r.body.events : r.body;
}

const positions = (evs) => evs.map((e) => e.position);

function assertExactly(got, model, what) {
  for (let i = 1; i < got.length; i++) assert.ok(got[i] > got[i - 1], `${what}: ${got[i]} after ${got[i - 1]} — a duplicate or out of order`);
  const want = [...model].sort((a, b) => a - b);
  if (got.length !== want.length || got.some((p, i) => p !== want[i])) {
    const gs = new Set(got);
    const ws = new Set(want);
    assert.fail(`${what}: got ${got.length}, expected ${want.length}; missing ${JSON.stringify(want.filter((p) => !gs.has(p)).slice(0, 20))}; unexpected ${JSON.stringify(got.filter((p) => !ws.has(p)).slice(0, 20))}`);
  }
}

let s;
let c;
const streams = [];
before(async () => { s = await h.startSluice({ name: 'sse' }); c = s.client(); });
after(async () => {
  for (const x of streams) x.close();
  if (s) await s.stop().finally(() => s.cleanup());
});

async function open(pathq, opts = {}) {
  const x = await Sse.open(s.url, pathq, { token: s.adminToken, ...opts });
  streams.push(x);
  return x;
}

// ---------------------------------------------------------------- tests

describe('auth', () => {
  test('no token or a bad token → 401 unauthenticated; a key without the subscribe scope → 403 forbidden', async () => {
    h.assertProblem(await c.get('/v1/subscribe', { token: null }), 401, 'unauthenticated');
    h.assertProblem(await c.get('/v1/subscribe', { token: 'bogus' }), 401, 'unauthenticated');
    for (const scopes of [['read'], ['publish', 'read']]) {
      const k = await h.createKey(s, 'default', scopes);
      h.assertProblem(await c.get('/v1/subscribe', { token: k.token }), 403, 'forbidden');
    }
  });

  test('a subscribe key → 200 text/event-stream', async () => {
    const k = await h.createKey(s, 'default', ['subscribe']);
    const x = await open('/v1/subscribe', { token: k.token });
    assert.equal(x.status, 200, x.text);
    assert.match(x.contentType, /^text\/event-stream/);
    x.close();
  });
});

describe('the feed', () => {
  test('each event is `id: <position>\\nevent: event\\ndata: <stored envelope>`', async () => {
    const pfx = prefix();
    const x = await open(`/v1/subscribe?type=${pfx}.*`);
    assert.equal(x.status, 200, x.text);
    await h.sleep(200); // the subscription is live once the response has started
    const sent = await pub(c, { type: `${pfx}.created`, data: { a: 1, s: 'line1\nline2 "q" ✓' }, key: 'k1', user_id: 'u', metadata: { m: 1 } });
    const got = await x.waitFor((e) => e.id === sent.id, 'the event');
    const ev = x.events.find((e) => e.data && e.data.id === sent.id);
    assert.equal(ev.rawLines.length, 3, `three lines: ${JSON.stringify(ev.rawLines)}`);
    assert.equal(ev.rawLines[0], `id: ${sent.position}`);
    assert.equal(ev.rawLines[1], 'event: event');
    assert.ok(ev.rawLines[2].startsWith('data: {'), ev.rawLines[2]);
    const stored = h.assertStatus(await c.get('/v1/events/' + encodeURIComponent(sent.id)), 200);
    assert.deepEqual(got, stored, 'data is the stored envelope');
    x.close();
  });

  test('filters: stream=, type= (comma list, prefix.* wildcard)', async () => {
    const a = prefix();
    const b = prefix();
    const byStream = await open(`/v1/subscribe?stream=${a}.events`);
    const byTypes = await open(`/v1/subscribe?type=${a}.one,${b}.*`);
    const both = await open(`/v1/subscribe?stream=custom.${a}&type=${b}.*`);
    await h.sleep(200);
    const envs = [
      { type: `${a}.one`, data: {} },
      { type: `${a}.two`, data: {} },
      { type: `${b}.x`, data: {}, stream: `custom.${a}` },
      { type: `${b}.y`, data: {} },
      { type: `${a}.one`, data: {}, stream: `custom.${a}` },
    ];
    const sent = [];
    for (const e of envs) sent.push({ env: e, res: await pub(c, e) });
    const fence = await pub(c, { type: `${b}.fence`, data: {}, stream: `custom.${a}` });
    const fenceA = await pub(c, { type: `${a}.fence`, data: {} });
    await byTypes.waitFor((e) => e.id === fence.id, 'fence');
    await both.waitFor((e) => e.id === fence.id, 'fence');
    await byStream.waitFor((e) => e.id === fenceA.id, 'fenceA');
    const stream = (x) => x.env.stream || `${x.env.type.split('.')[0]}.events`;
    assertExactly(positions(byStream.dataEvents()), [...sent.filter((x) => stream(x) === `${a}.events`).map((x) => x.res.position), fenceA.position], 'stream=');
    assertExactly(positions(byTypes.dataEvents()), [...sent.filter((x) => x.env.type === `${a}.one` || x.env.type.startsWith(`${b}.`)).map((x) => x.res.position), fence.position], 'type= list');
    assertExactly(positions(both.dataEvents()), [...sent.filter((x) => stream(x) === `custom.${a}` && x.env.type.startsWith(`${b}.`)).map((x) => x.res.position), fence.position], 'stream= & type=');
    for (const x of [byStream, byTypes, both]) x.close();
  });

  test('bad query parameters → 400 problem', async () => {
    // (opened as streams: a wrong 200 must not hang the test)
    for (const q of ['from_position=abc', 'from_position=-1', 'from_position=1.5', 'type=Not%20A%20Type', 'type=a', 'stream=a%20b']) {
      const x = await open('/v1/subscribe?' + q);
      x.close();
      assert.equal(x.status, 400, `${q}: ${x.status} ${x.contentType} ${x.text || ''}`);
      assert.match(x.contentType, /^application\/problem\+json/, q);
    }
    const x = await open('/v1/subscribe', { headers: { 'Last-Event-ID': 'nope' } });
    x.close();
    assert.equal(x.status, 400, `Last-Event-ID: nope: ${x.status} ${x.text || ''}`);
  });

  test('from_position: history after it, then live, no gap and no duplicate', async () => {
    const pfx = prefix();
    const hist = await pub(c, Array.from({ length: 40 }, (_, i) => ({ type: `${pfx}.h`, data: { i } })));
    await pub(c, { type: 'other.noise', data: {} });
    const x = await open(`/v1/subscribe?type=${pfx}.*&from_position=${hist[14].position}`);
    await x.waitCount(25);
    const live = await pub(c, { type: `${pfx}.live`, data: {} });
    await x.waitFor((e) => e.id === live.id, 'the live event');
    assertExactly(positions(x.dataEvents()), [...positions(hist.slice(15)), live.position], 'history then live');
    for (const ev of x.events.filter((e) => e.event === 'event')) assert.equal(ev.id, String(ev.data.position), 'id: is the position');
    x.close();
  });

  test('Last-Event-ID resumes after N: no gap, no duplicate', async () => {
    const pfx = prefix();
    const first = await pub(c, Array.from({ length: 30 }, (_, i) => ({ type: `${pfx}.a`, data: { i } })));
    const x1 = await open(`/v1/subscribe?type=${pfx}.*&from_position=${first[0].position - 1}`);
    await x1.waitCount(9);
    x1.close();
    const got1 = positions(x1.dataEvents());
    const lastId = x1.events.filter((e) => e.event === 'event').pop().id;
    assert.equal(lastId, String(got1[got1.length - 1]));
    const more = [];
    for (let i = 0; i < 10; i++) more.push(await pub(c, { type: `${pfx}.b`, data: { i } }));
    // Last-Event-ID wins over a stale from_position, as a browser's EventSource re-sends the URL
    const x2 = await open(`/v1/subscribe?type=${pfx}.*`, { headers: { 'Last-Event-ID': lastId } });
    const fence = await pub(c, { type: `${pfx}.fence`, data: {} });
    await x2.waitFor((e) => e.id === fence.id, 'the fence');
    assertExactly([...got1, ...positions(x2.dataEvents())], [...positions(first), ...positions(more), fence.position], 'first stream + resumed stream');
    x2.close();
  });

  test('publishing while a stream catches up from history: exactly the model, in order', { timeout: 180000 }, async () => {
    const pfx = prefix();
    const model = [];
    const start = h.assertStatus(await c.get('/v1/info'), 200).head_position;
    for (let b = 0; b < 12; b++) model.push(...positions(await pub(c, Array.from({ length: 500 }, (_, i) => ({ type: `${pfx}.hist`, data: { b, i, pad: 'x'.repeat(100) } })))));
    const histCount = model.length;
    let writing = true;
    let during = 0;
    let x;
    const writers = Promise.all(Array.from({ length: 3 }, async (_, w) => {
      for (let i = 0; writing; i++) {
        const batch = i % 3 === 2;
        const envs = Array.from({ length: batch ? 10 : 1 }, (_, j) => ({ type: j % 4 === 3 ? 'other.noise' : `${pfx}.live`, data: { w, i, j } }));
        const res = await pub(c, batch ? envs : envs[0]);
        (batch ? res : [res]).forEach((e, j) => { if (j % 4 !== 3) model.push(e.position); });
        if (x && x.dataEvents().length < histCount) during++;
      }
    }));
    try {
      await h.sleep(100);
      x = await open(`/v1/subscribe?type=${pfx}.*&from_position=${start}`);
      await x.waitCount(histCount, 120000);
      const n = x.dataEvents().length;
      await x.until(() => x.dataEvents().length > n + 30, 'live events after the catch-up', 60000);
    } finally {
      writing = false;
      await writers;
    }
    const fence = await pub(c, { type: `${pfx}.fence`, data: {} });
    model.push(fence.position);
    await x.waitFor((e) => e.id === fence.id, 'the fence');
    assertExactly(positions(x.dataEvents()), model, 'catch-up under load');
    assert.ok(during > 0, 'events were published while the history was being streamed');
    x.close();
  });

  test("tenant isolation: a tenant-B key never receives tenant A's events", async () => {
    const pfx = prefix();
    const kb = await h.createKey(s, 'tenant-sse-b', ['publish', 'subscribe']);
    const B = s.client(kb.token);
    const aOld = await pub(c, { type: `${pfx}.a`, data: {} });
    const xb = await open('/v1/subscribe?from_position=0', { token: kb.token });
    const xbTyped = await open(`/v1/subscribe?type=${pfx}.*`, { token: kb.token });
    await h.sleep(200);
    const aNew = await pub(c, { type: `${pfx}.a`, data: {} });
    const bNew = await pub(B, { type: `${pfx}.b`, data: {} });
    await xb.waitFor((e) => e.id === bNew.id, "B's event");
    await xbTyped.waitFor((e) => e.id === bNew.id, "B's event (typed)");
    for (const x of [xb, xbTyped]) {
      assert.ok(x.dataEvents().every((e) => e.tenant_id === 'tenant-sse-b'), 'only tenant B');
      assert.ok(!x.dataEvents().some((e) => e.id === aOld.id || e.id === aNew.id), "none of A's events");
    }
    assertExactly(positions(xbTyped.dataEvents()), [bNew.position], 'B typed');
    xb.close();
    xbTyped.close();
  });

  test('an idle stream gets `: keep-alive` comments (about every 15 s)', { timeout: 90000 }, async () => {
    const x = await open(`/v1/subscribe?type=${prefix()}.never`);
    await x.until(() => x.comments.some((l) => l === ': keep-alive'), 'a keep-alive comment', 40000);
    assert.equal(x.dataEvents().length, 0);
    x.close();
  });
});

test('SIGTERM with open SSE streams: sluice exits 0 and the streams end', { timeout: 120000 }, async () => {
  const t = await h.startSluice({ name: 'sse-term' });
  const xs = [];
  try {
    for (let i = 0; i < 3; i++) xs.push(await Sse.open(t.url, '/v1/subscribe?from_position=0', { token: t.adminToken }));
    await pub(t.client(), { type: 'term.x', data: {} });
    await xs[0].waitCount(1);
    await t.stop();
    for (const x of xs) await x.until(() => x.ended, 'the stream to end', 30000);
  } finally {
    for (const x of xs) x.close();
    await t.cleanup();
  }
});

// A stream that waits costs a suspended connection, not a thread: the content reader pops the
// session's queue on libmicrohttpd's own threads and one ticker serves every keep-alive.
test('200 SSE subscribers at once: each gets the event, and the process gains no thread per subscriber', { timeout: 120000 }, async (ctx) => {
  const t = await h.startSluice({ name: 'sse-many' });
  const xs = [];
  const threads = () => fs.readdirSync(`/proc/${t.proc.pid}/task`).length;
  try {
    const pfx = prefix();
    h.assertStatus(await t.client().get('/v1/info'), 200);
    const before = threads();
    for (let i = 0; i < 200; i += 25) {
      const batch = await Promise.all(Array.from({ length: 25 }, () => Sse.open(t.url, `/v1/subscribe?type=${pfx}.*`, { token: t.adminToken })));
      xs.push(...batch);
    }
    for (const x of xs) assert.equal(x.status, 200, x.text);
    const during = threads();
    const sent = await pub(t.client(), { type: `${pfx}.x`, data: {} });
    for (const x of xs) await x.waitFor((e) => e.id === sent.id, 'the event');
    const after = threads();
    ctx.diagnostic(`threads: ${before} before, ${during} with 200 streams, ${after} after the event`);
    assert.ok(Math.max(during, after) - before < 20, `threads went from ${before} to ${during} (${after} after the event) for 200 SSE streams`);
  } finally {
    for (const x of xs) x.close();
    await t.stop().finally(() => t.cleanup());
  }
});

// A reader that stops reading: its socket fills, then its queue (16 messages here) passes its
// bound and the stream ends; what it got is a gapless prefix, and Last-Event-ID resumes the rest.
test('a stalled reader overflows its queue: the stream ends after a gapless prefix; Last-Event-ID resumes the rest', { timeout: 180000 }, async (ctx) => {
  const t = await h.startSluice({ name: 'sse-slow', env: { SLUICE_WS_QUEUE_MESSAGES: '16' } });
  let res;
  let x2;
  try {
    const tc = t.client();
    const pfx = prefix();
    res = await new Promise((resolve, reject) => {
      const req = http.get(`${t.url}/v1/subscribe?type=${pfx}.*`, { headers: { Authorization: `Bearer ${t.adminToken}`, Accept: 'text/event-stream' } }, (r) => { r.pause(); resolve(r); });
      req.on('error', reject);
    });
    assert.equal(res.statusCode, 200);
    // Far more than the socket buffers hold (about 13 MB), read by nobody for now, in batches
    // that fit the queue (a larger batch would overflow it at once, however fast the reader).
    const pad = 'x'.repeat(16000);
    const model = [];
    for (let b = 0; b < 100; b++) model.push(...positions(await pub(tc, Array.from({ length: 8 }, (_, i) => ({ type: `${pfx}.e`, data: { b, i, pad } })))));
    let text = '';
    res.setEncoding('utf8');
    const ended = new Promise((resolve) => {
      res.on('end', () => resolve('end'));
      res.on('aborted', () => resolve('aborted'));
      res.on('error', () => resolve('error'));
    });
    res.on('data', (d) => { text += d; });
    res.resume();
    const how = await h.race(ended, 60000, 'still open');
    assert.equal(how, 'end', 'the overflowed stream ends (cleanly: the client resumes)');
    const got = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    ctx.diagnostic(`${got.length} of ${model.length} events came before the stream ended`);
    assert.ok(got.length < model.length, `got ${got.length} of ${model.length} events before the end`);
    assertExactly(got, model.slice(0, got.length), 'the events before the overflow');
    const last = got.length ? got[got.length - 1] : model[0] - 1;
    x2 = await Sse.open(t.url, `/v1/subscribe?type=${pfx}.*`, { token: t.adminToken, headers: { 'Last-Event-ID': String(last) } });
    assert.equal(x2.status, 200, x2.text);
    await x2.waitCount(model.length - got.length);
    assertExactly([...got, ...positions(x2.dataEvents())], model, 'first stream + resumed stream');
  } finally {
    if (res) res.destroy();
    if (x2) x2.close();
    await t.stop().finally(() => t.cleanup());
  }
});
