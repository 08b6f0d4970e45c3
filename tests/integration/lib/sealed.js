'use strict';
// Shared by revocation.test.js and tenant_limits.test.js (issue 13, "Sealed tenants"): a
// small WebSocket peer that records every message and how the connection closed, a streaming
// HTTP reader (SSE or NDJSON) that records how and when its body ended, and a publisher of
// bulky history (a result too large for the socket buffers, so a stream or a catch-up whose
// reader pauses stays open on the server).
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const h = require('./harness');

const WAIT_MS = 20000;

class Peer {
  // Opens ws://…/v1/ws; resolves once open (or rejects with the handshake's failure:
  // e.status / e.headers / e.body for an HTTP answer instead of the upgrade).
  static open(s, { token, query = true } = {}) {
    const url = `ws://127.0.0.1:${s.wsPort}/v1/ws${token && query ? '?token=' + encodeURIComponent(token) : ''}`;
    const p = new Peer(url);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { p.terminate(); reject(new Error(`${url}: no open within ${WAIT_MS} ms`)); }, WAIT_MS);
      p.ws.once('unexpected-response', (req, res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { body += d; });
        res.on('end', () => {
          clearTimeout(timer);
          const e = new Error(`${url}: upgrade answered ${res.statusCode}: ${body}`);
          Object.assign(e, { status: res.statusCode, headers: res.headers, body });
          p.terminate();
          reject(e);
        });
      });
      p.ws.once('open', () => { clearTimeout(timer); resolve(p); });
      p.ws.once('error', (e) => { clearTimeout(timer); reject(e); });
    });
  }

  constructor(url) {
    this.url = url;
    this.msgs = [];
    this.waiters = new Set();
    this.closeInfo = null;
    this.ws = new WebSocket(url, { handshakeTimeout: 15000, perMessageDeflate: false });
    this.ws.on('error', () => { /* seen through open / close */ });
    this.ws.on('message', (data) => {
      let m;
      try { m = JSON.parse(data.toString('utf8')); } catch (_) { m = { unparsable: data.toString('utf8') }; }
      this.msgs.push(m);
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString('utf8'), at: Date.now() };
        this.wake();
        resolve(this.closeInfo);
      });
    });
  }

  wake() { for (const w of this.waiters) w(); }

  send(m) { this.ws.send(JSON.stringify(m)); }

  // The first message matching pred (from the start), or throws after timeout / on close.
  async until(pred, what, timeout = WAIT_MS) {
    const find = () => this.msgs.find(pred);
    let v = find();
    if (v) return v;
    let wake;
    const p = new Promise((resolve) => {
      wake = () => { const x = find(); if (x || this.closeInfo) resolve(x); };
      this.waiters.add(wake);
    });
    try { v = await h.race(p, timeout, undefined); } finally { this.waiters.delete(wake); }
    if (!v) throw new Error(`${what}: ${this.closeInfo ? 'closed ' + JSON.stringify(this.closeInfo) : 'nothing within ' + timeout + ' ms'}; messages ${JSON.stringify(this.msgs.slice(-4)).slice(0, 800)}`);
    return v;
  }

  // Sends a subscribe and resolves with the answer for its id (subscribed or error).
  async subscribe(sub) {
    this.send({ op: 'subscribe', ...sub });
    return this.until((m) => (m.op === 'subscribed' || m.op === 'error') && m.id === sub.id, `answer to subscribe ${sub.id}`);
  }

  async auth(token) {
    this.send({ op: 'auth', token });
    return this.until((m) => m.op === 'authenticated' || m.op === 'error', 'answer to auth');
  }

  // The close ({code, reason, at}), or null when still open after `timeout` ms.
  waitClose(timeout = WAIT_MS) { return h.race(this.closed, timeout, null); }

  pauseReading() { this.ws._socket.pause(); }

  close() { try { this.ws.close(1000); } catch (_) { /* closed */ } }
  terminate() { try { this.ws.terminate(); } catch (_) { /* closed */ } }
}

// A streaming GET (SSE or NDJSON). `readFirst` reads until the first body bytes arrived and
// then, with `pause`, stops reading (the server's producer blocks once the buffers between
// are full); otherwise it reads on. `ended` resolves with {how: 'end'|'error', at, bytes}.
class Stream {
  static async open(s, path, { token, accept, pause = false, headers = {} } = {}) {
    const ctrl = new AbortController();
    const hd = { Accept: accept, Authorization: `Bearer ${token}`, ...headers };
    const res = await fetch(s.url + path, { headers: hd, signal: ctrl.signal });
    const st = new Stream(res, ctrl);
    if (res.status !== 200) {
      st.text = await res.text();
      return st;
    }
    st.reader = res.body.getReader();
    const first = await st.reader.read();
    if (!first.done) st.onChunk(first.value);
    if (first.done) st.finish('end');
    else if (!pause) st.resume();
    return st;
  }

  constructor(res, ctrl) {
    this.res = res;
    this.status = res.status;
    this.headers = res.headers;
    this.contentType = res.headers.get('content-type') || '';
    this.ctrl = ctrl;
    this.bytes = 0;
    this.text = '';
    this.keepText = true;
    this.endInfo = null;
    this.ended = new Promise((r) => { this.onEnd = r; });
    this.pumping = false;
  }

  onChunk(value) {
    this.bytes += value.length;
    if (this.keepText && this.text.length < 1 << 20) this.text += Buffer.from(value).toString('utf8');
  }

  finish(how, error) {
    if (this.endInfo) return;
    this.endInfo = { how, at: Date.now(), bytes: this.bytes, error: error ? String(error) : undefined };
    this.onEnd(this.endInfo);
  }

  // Reads on until the body ends (cleanly or with an error).
  resume() {
    if (this.pumping || this.endInfo) return;
    this.pumping = true;
    (async () => {
      try {
        for (;;) {
          const { done, value } = await this.reader.read();
          if (done) { this.finish('end'); return; }
          this.onChunk(value);
        }
      } catch (e) {
        this.finish('error', e);
      }
    })();
  }

  waitEnd(timeout = WAIT_MS) { return h.race(this.ended, timeout, null); }

  abort() { try { this.ctrl.abort(); } catch (_) { /* done */ } }
}

// Publishes `count` events of about `bytes` each (type `<prefix>.bulk`) with `client`'s key,
// in batches under the default body limit; resolves with the last position.
async function publishBulk(client, prefix, count, bytes = 2048) {
  const pad = 'x'.repeat(bytes);
  const per = Math.max(1, Math.min(1000, Math.floor((3 << 20) / (bytes + 200))));
  let last = 0;
  for (let i = 0; i < count; i += per) {
    const n = Math.min(per, count - i);
    const batch = Array.from({ length: n }, (_, k) => ({ type: `${prefix}.bulk`, data: { n: i + k, pad } }));
    const res = await client.publish(batch, { timeout: 120000 });
    assert.equal(res.status, 201, h.describeRes(res));
    last = res.body.events[res.body.events.length - 1].position;
  }
  return last;
}

module.exports = { Peer, Stream, publishBulk, WAIT_MS };
