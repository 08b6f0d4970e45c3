'use strict';
// Shared by the publish-path fault tests (multi_instance, kill_burst, relay_outage,
// projection_reset, commit_outcome): a WebSocket subscriber that records every event it is
// handed, a publish load that records every answer, and the checks "exactly these
// positions, in order, once" against what PostgreSQL holds.
//
//   Subscriber.open(sluice, sub)   one WebSocket, one subscription ({id, types, from_position});
//                                  .positions(), .events, .waitPosition(p), .close()
//   startLoad({target, writers, make, ...})
//                                  concurrent publishers until stop(): every answer recorded
//                                  (acked id → {position, version}, 503s, no-answers)
//   waitAcked(load, n)             until n more events are acknowledged
//   storedRows(dbUrl, where)       [{position, id, tag, stream, tenant}] by SQL, in position order
//   headOf(dbUrl)                  max(position) by SQL
//   assertStoreSane(rows)          positions 1 … N without a hole, no request's tag stored twice
//   assertExactly(got, want, what) strictly increasing, and exactly the model
//   assertGapFree(got, from, to)   exactly from+1 … to
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const WebSocket = require('ws');
const h = require('./harness');

const WAIT_MS = 20000;

// ---------------------------------------------------------------- a WebSocket subscriber

class Subscriber {
  // sub: the subscribe message's fields (id defaults to 's'); token defaults to the admin token.
  static async open(sluice, sub = {}, { token = sluice.adminToken } = {}) {
    const s = new Subscriber(`ws://127.0.0.1:${sluice.wsPort}/v1/ws?token=${encodeURIComponent(token)}`, { id: 's', ...sub });
    try {
      await s.start();
    } catch (e) {
      s.terminate();
      throw e;
    }
    return s;
  }

  constructor(url, sub) {
    this.url = url;
    this.sub = sub;
    this.events = [];      // event envelopes, in arrival order
    this.other = [];       // every other message
    this.closeInfo = null;
    this.waiters = new Set();
    this.ws = new WebSocket(url, { handshakeTimeout: 15000, perMessageDeflate: false });
    this.ws.on('error', (e) => { this.error = e; });
    this.ws.on('message', (data) => {
      let m;
      try { m = JSON.parse(data.toString('utf8')); } catch (_) { m = { op: '__unparsable', text: data.toString('utf8').slice(0, 200) }; }
      if (m.op === 'event' && m.sub === this.sub.id) this.events.push(m.event);
      else this.other.push(m);
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

  wake() { for (const w of this.waiters) w(); }

  // Resolves when fn() is truthy (checked on every message), rejects after timeout or close.
  until(fn, what, timeout = WAIT_MS) {
    const v = fn();
    if (v) return Promise.resolve(v);
    return new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        const x = fn();
        if (x || this.closeInfo) {
          clearTimeout(timer);
          this.waiters.delete(check);
          if (x) resolve(x);
          else reject(new Error(`${this.sub.id}: connection closed ${JSON.stringify(this.closeInfo)} waiting for ${what}; ${this.describe()}`));
        }
      };
      timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${this.sub.id}: timed out after ${timeout} ms waiting for ${what}; ${this.describe()}`));
      }, timeout);
      this.waiters.add(check);
    });
  }

  async start() {
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`WebSocket ${this.url} did not open in ${WAIT_MS} ms`)), WAIT_MS);
      this.ws.once('open', () => { clearTimeout(t); resolve(); });
      this.ws.once('error', (e) => { clearTimeout(t); reject(e); });
    });
    this.ws.send(JSON.stringify({ op: 'subscribe', ...this.sub }));
    const m = await this.until(() => this.other.find((x) => (x.op === 'subscribed' || x.op === 'error') && x.id === this.sub.id),
      `the answer to subscribe ${JSON.stringify(this.sub)}`);
    assert.equal(m.op, 'subscribed', `subscribe ${JSON.stringify(this.sub)} answered ${JSON.stringify(m)}`);
    assert.ok(Number.isInteger(m.position) && m.position >= 0, `subscribed carries a position: ${JSON.stringify(m)}`);
    this.startPosition = m.position;
  }

  positions() { return this.events.map((e) => e.position); }
  last() { return this.events.length ? this.events[this.events.length - 1].position : this.startPosition; }

  // Waits until an event at `position` or later has arrived (events come in position order).
  waitPosition(position, timeout = 60000) {
    return this.until(() => this.events.some((e) => e.position >= position), `position ${position} (last ${this.last()})`, timeout);
  }

  describe() {
    return `${this.events.length} events, last ${this.last()}; other messages ${JSON.stringify(this.other.slice(-3)).slice(0, 600)}`;
  }

  close() { try { this.ws.close(1000); } catch (_) { /* closed */ } }
  terminate() { try { this.ws.terminate(); } catch (_) { /* closed */ } }

  // Closes and waits for the close (bounded), so nothing is left open at the end of a test.
  async shut(timeout = 5000) {
    if (!this.closeInfo) this.close();
    const r = await h.race(this.closed, timeout, null);
    if (!r) this.terminate();
  }
}

// ---------------------------------------------------------------- checks

function assertStrictlyIncreasing(ps, what) {
  for (let i = 1; i < ps.length; i++) {
    if (!(ps[i] > ps[i - 1])) assert.fail(`${what}: position ${ps[i]} after ${ps[i - 1]} (index ${i}): a duplicate or out of order`);
  }
}

function diff(got, want) {
  const gs = new Set(got);
  const ws = new Set(want);
  const missing = want.filter((p) => !gs.has(p));
  const extra = got.filter((p) => !ws.has(p));
  const short = (xs) => JSON.stringify(xs.slice(0, 20)) + (xs.length > 20 ? `… (${xs.length})` : '');
  return `missing ${short(missing)}, unexpected ${short(extra)}`;
}

// got: positions in arrival order; want: the model (any order).
function assertExactly(got, want, what) {
  assertStrictlyIncreasing(got, what);
  const w = [...want].sort((a, b) => a - b);
  if (got.length !== w.length || got.some((p, i) => p !== w[i])) {
    assert.fail(`${what}: ${got.length} events, expected ${w.length}; ${diff(got, w)}`);
  }
}

const range = (from, to) => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + 1 + i);

// Exactly from+1 … to, in order: no gap, no duplicate.
function assertGapFree(got, from, to, what) {
  assertExactly(got, range(from, to), `${what} (expected ${from + 1}…${to})`);
}

// ---------------------------------------------------------------- PostgreSQL

// h.psql for answers larger than execFileSync's default 1 MiB buffer (whole event tables).
function psqlBig(url, sql) {
  return execFileSync('psql', [url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000, maxBuffer: 1 << 30,
  }).trim();
}

// Every stored event (optionally `where`), in position order: position, id, the data's tag,
// stream, tenant.
function storedRows(dbUrl, where = 'true') {
  const out = psqlBig(dbUrl, `SELECT position, id, coalesce(data->>'tag', ''), stream, tenant_id FROM events WHERE ${where} ORDER BY position`);
  if (!out) return [];
  return out.split('\n').map((l) => {
    const [position, id, tag, stream, tenant] = l.split('|');
    return { position: Number(position), id, tag, stream, tenant };
  });
}

function headOf(dbUrl) { return Number(h.psql(dbUrl, 'SELECT coalesce(max(position), 0) FROM events')); }

// Positions 1 … N with no hole, and no tag (the request's own mark) stored twice.
function assertStoreSane(rows, what = 'the events table') {
  rows.forEach((r, i) => { if (r.position !== i + 1) assert.fail(`${what}: position ${r.position} at row ${i + 1} (a gap)`); });
  const tags = new Map();
  for (const r of rows) {
    if (!r.tag) continue;
    if (tags.has(r.tag)) assert.fail(`${what}: the request tagged ${r.tag} is stored twice (positions ${tags.get(r.tag)} and ${r.position})`);
    tags.set(r.tag, r.position);
  }
  return tags;
}

// ---------------------------------------------------------------- a publish load

// Publishers until stop(). Each envelope carries data.tag (unique) and, if make() gives it,
// a client id. target(w) → a Client, or null while the writer's instance is down (it waits).
//   make(w, n) → array of envelopes (sent as a batch when longer than 1, else a single)
// Every answer is recorded:
//   acked: Map tag → {id, position, version, status} (201, or 200 for an idempotent repeat)
//   failed: [{tags, ids, status, body}] (503s and any other status)
//   lost: [{tags, ids, error}] (no HTTP answer: the connection failed)
//   lastAckSentAt: when the latest-sent request that got a 201/200 was sent
function startLoad({ target, writers, make, timeout = 20000, pauseMs = 50, onAnswer }) {
  const st = { stopped: false, acked: new Map(), failed: [], lost: [], answers: 0, n: 0 };
  const loop = async (w) => {
    for (let n = 0; !st.stopped; n++) {
      const c = target(w);
      if (!c) { await h.sleep(20); n--; continue; }
      const envs = make(w, n);
      const tags = envs.map((e) => e.data.tag);
      const ids = envs.map((e) => e.id);
      const sentAt = Date.now();
      let r;
      try {
        r = await c.publish(envs.length === 1 ? envs[0] : envs, { timeout });
      } catch (e) {
        st.lost.push({ tags, ids, sentAt, error: `${e.name}: ${e.cause ? e.cause.code || e.cause.message : e.message}` });
        await h.sleep(pauseMs);
        continue;
      }
      st.answers++;
      if (onAnswer) onAnswer({ w, envs, r, sentAt, answeredAt: Date.now() });
      if (r.status === 201 || r.status === 200) {
        if (!(st.lastAckSentAt >= sentAt)) st.lastAckSentAt = sentAt;
        const acks = envs.length === 1 ? [r.body] : r.body.events;
        acks.forEach((a, j) => st.acked.set(tags[j], { id: a.id, position: a.position, version: a.version, status: r.status, w }));
      } else {
        st.failed.push({ tags, ids, envs, status: r.status, code: r.body && r.body.code, sentAt, answeredAt: Date.now(), text: r.text.slice(0, 300) });
        await h.sleep(pauseMs);
      }
    }
  };
  st.done = Promise.all(Array.from({ length: writers }, (_, w) => loop(w)));
  st.stop = async () => { st.stopped = true; await st.done; };
  return st;
}

// Waits until the load has `n` more acknowledged events than now (or throws with the state).
async function waitAcked(load, more, { timeout = 60000, what = `${more} more acknowledged events` } = {}) {
  const want = load.acked.size + more;
  await h.waitFor(() => load.acked.size >= want, { timeout, interval: 20, what: `${what} (have ${load.acked.size}, failed ${load.failed.length}, lost ${load.lost.length})` });
}

module.exports = { psqlBig, Subscriber, assertExactly, assertGapFree, assertStrictlyIncreasing, range, storedRows, headOf, assertStoreSane, startLoad, waitAcked };
