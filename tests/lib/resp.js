'use strict';
// tests/lib/resp.js — the one RESP2 (Redis protocol) client of Sluice's tests and benchmarks.
//
// The integration tests, the browser tests and bench/groups read what sluice wrote to Redis
// (the relay's streams, replays, consumer groups' pending entries) and act as a real worker
// would (XREADGROUP, XACK). They talk to the real Redis over a plain TCP socket with this
// small, dependency-free client rather than an npm Redis client, so that what is checked is
// the wire, and nothing but node is needed to run them.
//
// It owns:
//   parseReply(buf, i)           one RESP2 reply at buf[i] → [value, next], or null while
//                                incomplete; an error reply is an Error with .redis = true;
//   encodeCommand(args)          one command as a RESP array of bulk strings;
//   Redis.connect(url, opts)     one connection with pipelined cmd(...args) → Promise of the
//                                reply (an error reply rejects); close();
//   withRedis(url, fn, opts)     opens a connection, runs fn(redis), closes it;
//   command(url, args, opts)     one command on a connection of its own, closed after it;
//   scanKeys, xrangeAll, deletePrefix — SCAN, paged XRANGE, best-effort cleanup of a prefix.
//
// URLs: redis://[[user]:password@]host[:port][/db], read as sluice reads SLUICE_REDIS_URL
// (server/redis.c): a password is sent with AUTH, a database other than 0 with SELECT, before
// the first command. opts.timeoutMs bounds each command (default 30 s; 0: no bound).
const net = require('node:net');

const DEFAULT_TIMEOUT_MS = 30000;

function parseReply(buf, i) { // → [value, next] or null when incomplete
  if (i >= buf.length) return null;
  const eol = buf.indexOf('\r\n', i);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[i]);
  const line = buf.toString('utf8', i + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+': return [line, next];
    case '-': { const e = new Error(line); e.redis = true; return [e, next]; }
    case ':': return [Number(line), next];
    case '$': {
      const n = Number(line);
      if (n < 0) return [null, next];
      if (buf.length < next + n + 2) return null;
      return [buf.toString('utf8', next, next + n), next + n + 2];
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return [null, next];
      const arr = [];
      let j = next;
      for (let k = 0; k < n; k++) {
        const r = parseReply(buf, j);
        if (!r) return null;
        arr.push(r[0]);
        j = r[1];
      }
      return [arr, j];
    }
    default: throw new Error(`RESP: unexpected type byte ${JSON.stringify(type)}`);
  }
}

function encodeCommand(args) {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const s = String(a);
    parts.push(`$${Buffer.byteLength(s)}\r\n${s}\r\n`);
  }
  return parts.join('');
}

// The host and port of a redis:// URL, and the commands that precede the first one: AUTH with
// the password (the user part alone when there is no colon, as sluice reads it), SELECT db.
function target(url) {
  const u = new URL(url);
  const hello = [];
  const password = decodeURIComponent(u.password || u.username);
  if (password) hello.push(['AUTH', password]);
  const db = parseInt(u.pathname.slice(1), 10) || 0;
  if (db) hello.push(['SELECT', db]);
  return { host: u.hostname, port: Number(u.port || 6379), hello };
}

// Resolves like `promise`, or rejects with "redis <name> timed out" after ms (0: never).
function bounded(promise, ms, name) {
  if (!ms) return promise;
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`redis ${name} timed out`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

class Redis {
  static connect(url, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    const { host, port, hello } = target(url);
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host, port });
      sock.once('connect', () => resolve(new this(sock, { timeoutMs })));
      sock.once('error', reject);
    }).then(async (r) => {
      try {
        for (const c of hello) await r.cmd(...c);
      } catch (e) {
        r.close();
        throw e;
      }
      return r;
    });
  }

  constructor(sock, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    this.sock = sock;
    this.timeoutMs = timeoutMs;
    this.buf = Buffer.alloc(0);
    this.pending = [];
    sock.on('data', (d) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      for (;;) {
        const r = parseReply(this.buf, 0);
        if (!r) break;
        this.buf = this.buf.subarray(r[1]);
        const p = this.pending.shift();
        if (p) (r[0] instanceof Error ? p.reject(r[0]) : p.resolve(r[0]));
      }
    });
    const fail = (e) => { for (const p of this.pending.splice(0)) p.reject(e || new Error('redis connection closed')); };
    sock.on('error', fail);
    sock.on('close', () => fail());
  }

  // Replies come back in order; one that times out keeps its place in the queue.
  cmd(...args) {
    return bounded(new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.sock.write(encodeCommand(args));
    }), this.timeoutMs, args[0]);
  }

  close() { this.sock.destroy(); }
}

// Opens, runs fn(redis), closes.
async function withRedis(url, fn, opts) {
  const r = await Redis.connect(url, opts);
  try { return await fn(r); } finally { r.close(); }
}

// One command on a connection of its own (AUTH and SELECT pipelined before it), closed after
// the reply: simple and leak-free. The bound covers the connection and every reply.
function command(url, args, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  return new Promise((resolve, reject) => {
    const { host, port, hello } = target(url);
    const cmds = [...hello, args];
    const sock = net.connect({ host, port });
    let timer = null;
    const done = (fn, v) => { if (timer) clearTimeout(timer); sock.destroy(); fn(v); };
    if (timeoutMs) timer = setTimeout(() => done(reject, new Error(`redis ${args[0]} timed out`)), timeoutMs);
    let buf = Buffer.alloc(0);
    let replies = 0;
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let r;
      while ((r = parseReply(buf, 0))) {
        buf = buf.subarray(r[1]);
        if (r[0] instanceof Error) return done(reject, r[0]);
        if (++replies === cmds.length) return done(resolve, r[0]);
      }
    });
    sock.on('error', (e) => done(reject, e));
    sock.write(cmds.map(encodeCommand).join(''));
  });
}

// Every key matching a SCAN pattern.
async function scanKeys(r, pattern) {
  const keys = [];
  let cursor = '0';
  do {
    const [next, batch] = await r.cmd('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

// Every entry of a stream: [{id, fields: {…}, order: [field names]}].
async function xrangeAll(r, key) {
  const out = [];
  let start = '-';
  for (;;) {
    const page = await r.cmd('XRANGE', key, start, '+', 'COUNT', 1000);
    for (const [id, kv] of page) {
      const fields = {};
      const order = [];
      for (let i = 0; i < kv.length; i += 2) { fields[kv[i]] = kv[i + 1]; order.push(kv[i]); }
      out.push({ id, fields, order });
    }
    if (page.length < 1000) return out;
    start = '(' + page[page.length - 1][0];
  }
}

// Removes every key under a prefix (a test's own Redis streams); best effort, never throws.
async function deletePrefix(url, prefix, opts) {
  try {
    await withRedis(url, async (r) => { for (const k of await scanKeys(r, prefix + '*')) await r.cmd('UNLINK', k); }, opts);
  } catch (_) { /* best effort */ }
}

module.exports = { DEFAULT_TIMEOUT_MS, parseReply, encodeCommand, Redis, withRedis, command, scanKeys, xrangeAll, deletePrefix };
