'use strict';
// A real HTTP endpoint for the webhook tests (webhooks.test.js): a node:http server on
// 127.0.0.1 (a free port) that Sluice delivers to. It owns:
//   - recording: every request, in arrival order, with its method, path, headers, raw body
//     (a Buffer, exactly the bytes received: what a signature is computed over), the parsed
//     JSON body, the time it arrived and what was answered;
//   - answering by a script the test sets and may change at any time: answer(rec, receiver)
//     returns a status, or {status, delayMs, headers, body}; default 204. A delayed answer
//     whose client hung up first (Sluice's timeout_ms) is recorded as clientGone;
//   - per-key concurrency: a request whose JSON body has a `key` is in flight for its
//     (stream, key) from its arrival until it is answered (or its client hangs up); a second
//     request of the same (stream, key) arriving meanwhile is an overlap, recorded;
//   - close(): pending delayed answers are dropped, every connection is cut, the server ends;
//     nothing of it keeps the test process alive.
const http = require('node:http');

class Receiver {
  constructor(answer) {
    this.answer = answer || (() => 204);
    this.requests = [];
    this.inFlight = new Map();     // "<stream>\0<key>" → requests of it not yet answered
    this.maxInFlight = new Map();  // "<stream>\0<key>" → most ever in flight at once
    this.overlaps = [];            // [{key, ids}] a request arriving while another of its key was in flight
    this.timers = new Set();
    this.server = null;
    this.port = 0;
    this.url = '';
  }

  static async start(answer) {
    const r = new Receiver(answer);
    await r.listen();
    return r;
  }

  listen() {
    this.server = http.createServer((req, res) => this.onRequest(req, res));
    this.server.keepAliveTimeout = 5000;
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.server.unref();
        this.port = this.server.address().port;
        this.url = `http://127.0.0.1:${this.port}`;
        resolve(this);
      });
    });
  }

  onRequest(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      let json;
      try { json = JSON.parse(raw.toString('utf8')); } catch (_) { json = undefined; }
      const rec = {
        n: this.requests.length,
        method: req.method,
        path: req.url,
        headers: req.headers,
        id: req.headers['webhook-id'],
        raw,
        body: raw.toString('utf8'),
        json,
        receivedAt: Date.now(),
        status: null,
        answeredAt: null,
        clientGone: false,
      };
      this.requests.push(rec);

      const k = json && typeof json === 'object' && json.key !== undefined && json.key !== null
        ? `${json.stream}\u0000${json.key}` : null;
      let released = false;
      const release = () => {
        if (released || k === null) return;
        released = true;
        const set = this.inFlight.get(k);
        set.delete(rec);
        if (set.size === 0) this.inFlight.delete(k);
      };
      if (k !== null) {
        const set = this.inFlight.get(k) || new Set();
        if (set.size > 0) this.overlaps.push({ key: k, ids: [...set].map((x) => x.id).concat(rec.id) });
        set.add(rec);
        this.inFlight.set(k, set);
        this.maxInFlight.set(k, Math.max(this.maxInFlight.get(k) || 0, set.size));
      }
      res.once('close', () => {
        if (rec.answeredAt === null) rec.clientGone = true;
        release();
      });

      let a;
      try { a = this.answer(rec, this); } catch (e) { rec.answerError = e; a = 500; }
      if (typeof a === 'number') a = { status: a };
      const { status = 204, delayMs = 0, headers = {}, body = '' } = a || {};
      const finish = () => {
        if (res.destroyed || res.writableEnded) { rec.clientGone = true; release(); return; }
        // Released before the answer is written: Sluice may start the next delivery of this
        // key as soon as it reads the answer.
        release();
        rec.status = status;
        rec.answeredAt = Date.now();
        res.writeHead(status, headers);
        res.end(status === 204 || status === 304 ? undefined : body);
      };
      if (delayMs > 0) {
        const t = setTimeout(() => { this.timers.delete(t); finish(); }, delayMs);
        t.unref();
        this.timers.add(t);
      } else {
        finish();
      }
    });
  }

  // The requests carrying webhook-id `id`, in arrival order.
  attemptsOf(id) { return this.requests.filter((r) => r.id === id); }

  // The set of webhook-ids received.
  ids() { return new Set(this.requests.map((r) => r.id)); }

  async close() {
    if (!this.server) return;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const s = this.server;
    this.server = null;
    const closed = new Promise((r) => s.close(() => r()));
    s.closeAllConnections();
    await closed;
  }
}

module.exports = { Receiver };
