// feed.js — the live event feed: one WebSocket to GET /v1/info's ws_port (same host as
// the page), one subscription with the operator's filters, pause/resume, and the last N
// events in a table (newest first). Rows are added in one batch per animation frame, so a
// burst of events costs one layout, and the table never holds more than N rows.
//
// Close codes: 1008 = the token was refused (no reconnect; the page says so), 1013 = we
// were too slow (resume at once from the position named in the reason), anything else =
// reconnect with backoff, resuming after the last position shown so nothing is missed.

import { session } from './api.js';
import { h, $, say, timeEl, splitList, fmtNum, fill } from './dom.js';

const MAX_FILTERS = 16; // the server's bound for streams[] and types[]
const PING_MS = 25000;

export class Feed {
  constructor(root, { onTokenRefused } = {}) {
    this.root = root;
    this.onTokenRefused = onTokenRefused || (() => {});
    this.ws = null;
    this.subSeq = 0;
    this.subId = null;
    this.filters = { streams: [], types: [], from: null };
    this.keep = 500;
    this.events = [];      // shown, oldest first (≤ keep)
    this.queue = [];       // received, not yet rendered
    this.paused = false;
    this.missed = 0;       // received while paused beyond what can be kept
    this.lastPosition = null;
    this.received = 0;
    this.retry = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.frame = 0;
    this.countFrame = 0;
    this.wanted = false;   // connect() was called and disconnect() was not
    this.state = 'idle';

    this.tbody = $('#feed-rows', root);
    this.statusEl = $('#feed-status', root);
    this.errorEl = $('#feed-error', root);
    this.countEl = $('#feed-count', root);
    this.emptyEl = $('#feed-empty', root);
    this.pauseBtn = $('#feed-pause', root);
    this.form = $('#feed-filters', root);

    this.form.addEventListener('submit', (e) => { e.preventDefault(); this.applyForm(); });
    this.pauseBtn.addEventListener('click', () => (this.paused ? this.resume() : this.pause()));
    $('#feed-clear', root).addEventListener('click', () => this.clear());
    $('#feed-keep', root).addEventListener('change', (e) => this.setKeep(Number(e.target.value)));
    this.setKeep(Number($('#feed-keep', root).value));
  }

  // ------------------------------------------------------------ connection

  connect() {
    this.wanted = true;
    this.retry = 0;
    this.open();
  }

  disconnect() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    this.closeSocket();
    this.setState('idle', 'Not connected.');
  }

  closeSocket() {
    clearInterval(this.pingTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000, 'bye'); } catch (_) { /* already closed */ }
    }
  }

  url() {
    const info = session.info || {};
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const port = info.ws_port || location.port;
    return `${proto}//${location.hostname}:${port}${info.ws_path || '/v1/ws'}`;
  }

  open() {
    clearTimeout(this.retryTimer);
    this.closeSocket();
    if (!session.info || !session.info.ws_port) {
      this.setState('error', 'This Sluice has no WebSocket port (GET /v1/info ws_port is 0).');
      return;
    }
    say(this.errorEl, '');
    this.setState('connecting', `Connecting to ${this.url()} …`);
    let ws;
    try { ws = new WebSocket(this.url()); } catch (e) {
      this.setState('error', `Cannot open the WebSocket: ${e.message}`);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      // The token goes in the first message, not in the URL, so no proxy or log sees it.
      // A refused token gets {"op":"error","code":"unauthenticated"} and a close with 1008.
      if (session.token) ws.send(JSON.stringify({ op: 'auth', token: session.token }));
      this.sendSubscribe();
      this.pingTimer = setInterval(() => this.send({ op: 'ping' }), PING_MS);
    };
    ws.onmessage = (m) => this.onMessage(m.data);
    ws.onclose = (ev) => this.onClose(ev);
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  sendSubscribe(fromOverride) {
    this.subId = `s${++this.subSeq}`;
    const msg = { op: 'subscribe', id: this.subId };
    if (this.filters.streams.length) msg.streams = this.filters.streams;
    if (this.filters.types.length) msg.types = this.filters.types;
    const from = fromOverride ?? (this.lastPosition !== null ? this.lastPosition : this.filters.from);
    if (from !== null && from !== undefined) msg.from_position = from;
    this.send(msg);
  }

  onMessage(data) {
    let msg;
    try { msg = JSON.parse(data); } catch (_) { return; }
    switch (msg.op) {
      case 'event':
        if (msg.sub === this.subId && msg.event) this.add(msg.event);
        break;
      case 'subscribed':
        if (msg.id === this.subId) {
          this.retry = 0;
          // A reconnect resumes after this position, so a live-only feed misses nothing.
          if (this.lastPosition === null && typeof msg.position === 'number') this.lastPosition = msg.position;
          this.setState(this.paused ? 'paused' : 'live', this.liveText(msg.position));
        }
        break;
      case 'error':
        if (msg.code === 'unauthenticated') break; // the close (1008) that follows says it
        say(this.errorEl, `The feed refused the subscription: ${msg.message} (${msg.code})`, 'error');
        if (msg.id === this.subId) this.setState('error', 'Not subscribed.');
        break;
      default:
        break; // authenticated, pong, unsubscribed
    }
  }

  onClose(ev) {
    clearInterval(this.pingTimer);
    this.ws = null;
    if (!this.wanted) return;
    if (ev.code === 1008) {
      this.wanted = false;
      this.setState('refused', '');
      say(this.errorEl, 'The WebSocket closed with 1008: the token is wrong, revoked, or lacks the subscribe scope. The other panels still work with the scopes it has.', 'error');
      this.onTokenRefused();
      return;
    }
    let delay = Math.min(15000, 500 * 2 ** this.retry++);
    if (ev.code === 1013) {
      // "slow consumer; last position N": resume right after N.
      const m = /last position (\d+)/.exec(ev.reason || '');
      if (m) this.lastPosition = Math.max(this.lastPosition ?? 0, Number(m[1]));
      delay = 0;
    }
    const why = ev.code === 1013 ? 'fell behind (1013)' : ev.code === 1001 ? 'server going away (1001)'
      : `closed (${ev.code}${ev.reason ? ': ' + ev.reason : ''})`;
    this.setState('reconnecting', `Feed ${why}; reconnecting${delay ? ` in ${Math.round(delay / 1000)} s` : ''} …`);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  // ------------------------------------------------------------ events

  add(ev) {
    this.received++;
    if (typeof ev.position === 'number') this.lastPosition = ev.position;
    this.queue.push(ev);
    // Trimmed in chunks (at twice the bound, back to the bound), so a burst costs O(1) per event.
    if (this.queue.length >= 2 * this.keep) {
      const drop = this.queue.length - this.keep;
      this.queue.splice(0, drop);
      if (this.paused) this.missed += drop;
    }
    if (this.paused) {
      if (!this.countFrame) this.countFrame = requestAnimationFrame(() => { this.countFrame = 0; this.updateCount(); });
      return;
    }
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    if (this.paused || !this.queue.length) return;
    const batch = this.queue.length > this.keep ? this.queue.slice(-this.keep) : this.queue;
    this.queue = [];
    const frag = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) frag.append(this.row(batch[i]));
    this.tbody.prepend(frag);
    this.events.push(...batch);
    this.trim();
    this.updateCount();
  }

  trim() {
    const extra = this.events.length - this.keep;
    if (extra > 0) {
      this.events.splice(0, extra);
      for (let i = 0; i < extra && this.tbody.lastElementChild; i++) this.tbody.lastElementChild.remove();
    }
  }

  row(ev) {
    const id = String(ev.id ?? '');
    return h('tr', { dataset: { id, position: String(ev.position ?? '') } },
      h('td', { class: 'num' }, String(ev.position ?? '')),
      h('td', null, timeEl(ev.time)),
      h('td', null, ev.stream ?? ''),
      h('td', null, h('code', null, ev.type ?? '')),
      h('td', null, ev.key ?? ''),
      h('td', null, h('a', { href: `#event/${encodeURIComponent(id)}`, title: 'Open this event and its correlation trace' }, id)));
  }

  // ------------------------------------------------------------ controls

  applyForm() {
    const fd = new FormData(this.form);
    const streams = splitList(fd.get('streams'));
    const types = splitList(fd.get('types'));
    const fromRaw = String(fd.get('from') || '').trim();
    const bad = [];
    if (streams.length > MAX_FILTERS) bad.push(`at most ${MAX_FILTERS} streams`);
    if (types.length > MAX_FILTERS) bad.push(`at most ${MAX_FILTERS} types`);
    for (const st of streams) if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(st)) bad.push(`"${st}" is not a stream name`);
    for (const t of types) if (!/^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$/.test(t)) bad.push(`"${t}" is not a type or prefix.* wildcard`);
    if (fromRaw && !/^\d+$/.test(fromRaw)) bad.push('from position must be a whole number');
    if (bad.length) { say(this.errorEl, `Filters not applied: ${bad.join('; ')}.`, 'error'); return; }
    say(this.errorEl, '');
    this.filters = { streams, types, from: fromRaw ? Number(fromRaw) : null };
    this.clear();
    this.lastPosition = null;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      if (this.subId) this.send({ op: 'unsubscribe', id: this.subId });
      this.setState('connecting', 'Subscribing …');
      this.sendSubscribe(this.filters.from);
    } else if (this.wanted) {
      this.open();
    }
  }

  pause() {
    this.paused = true;
    this.pauseBtn.textContent = 'Resume';
    this.pauseBtn.setAttribute('aria-pressed', 'true');
    if (this.state === 'live') this.setState('paused', 'Paused: new events are held, not shown.');
    this.updateCount();
  }

  resume() {
    this.paused = false;
    this.missed = 0;
    this.pauseBtn.textContent = 'Pause';
    this.pauseBtn.setAttribute('aria-pressed', 'false');
    if (this.state === 'paused') this.setState('live', this.liveText());
    this.flush();
    this.updateCount();
  }

  clear() {
    this.events = [];
    this.queue = [];
    this.missed = 0;
    fill(this.tbody);
    this.updateCount();
  }

  setKeep(n) {
    this.keep = Math.max(10, n || 500);
    this.trim();
    this.updateCount();
  }

  // ------------------------------------------------------------ status

  liveText(position) {
    const f = this.filters;
    const what = [f.streams.length ? `streams ${f.streams.join(', ')}` : 'every stream',
      f.types.length ? `types ${f.types.join(', ')}` : 'every type'].join(', ');
    const at = position !== undefined ? ` (after position ${fmtNum(position)})` : '';
    return `Live: ${what}${at}.`;
  }

  setState(state, text) {
    this.state = state;
    this.root.dataset.feedState = state;
    say(this.statusEl, text, state === 'error' || state === 'refused' ? 'error' : state);
  }

  updateCount() {
    const held = this.paused ? Math.min(this.queue.length, this.keep) : 0;
    const dropped = this.paused ? this.missed + Math.max(0, this.queue.length - this.keep) : 0;
    let text = `${fmtNum(this.events.length)} shown (last ${fmtNum(this.keep)} kept)`;
    if (held) text += ` · ${fmtNum(held)} new while paused`;
    if (dropped) text += ` · ${fmtNum(dropped)} older ones dropped while paused`;
    this.countEl.textContent = text;
    this.emptyEl.hidden = this.events.length > 0;
  }
}
