'use strict';
// tests/lib/redis.js — how Sluice's tests and benchmarks open a Redis connection (ioredis).
//
// The integration tests, the browser tests and bench/groups read what sluice wrote to Redis
// (the relay's streams, replays, consumer groups' pending entries) and act as a real worker
// would (XREADGROUP, XACK). They use ioredis, set up here once so that every one of them
// behaves the same:
//   - RESP2 (protocol: 2), as sluice itself speaks it through hiredis: replies have RESP2
//     shapes (XREADGROUP → [[key, entries]], XINFO → flat field/value arrays);
//   - one connection and no more: no reconnect (retryStrategy → null), no offline queue, no
//     ready check, so a Redis that is down or stopped makes a command fail at once instead of
//     waiting for it to return; a test that stops Redis on purpose gets an error, not a hang;
//   - each command bounded by opts.timeoutMs (default 30 s; 0: no bound).
// A client is closed with disconnect() (every path: withRedis does it for its callers).
//
// It owns:
//   connectOptions(url, opts)   ioredis options for a redis:// URL, read as sluice reads
//                               SLUICE_REDIS_URL (server/redis.c): a password (the user part
//                               alone when there is no colon) is sent with AUTH, a database
//                               other than 0 with SELECT;
//   open(client)                connects a client made with those options (ioredis or a
//                               subclass) → Promise of it, connected;
//   connect(url, opts)          open(new Redis(connectOptions(url, opts)));
//   withRedis(url, fn, opts)    connects, runs fn(redis), disconnects;
//   command(url, args, opts)    one command (redis.call) on a connection of its own;
//   scanKeys, xrangeAll, deletePrefix — SCAN, paged XRANGE, best-effort cleanup of a prefix.
const Redis = require('ioredis');

const DEFAULT_TIMEOUT_MS = 30000;

function connectOptions(url, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    password: decodeURIComponent(u.password || u.username) || undefined,
    db: parseInt(u.pathname.slice(1), 10) || 0,
    protocol: 2,
    lazyConnect: true,
    enableReadyCheck: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs || 10000,
    commandTimeout: timeoutMs || undefined,
  };
}

// Every failure also rejects the command it ends, so 'error' events are only kept to explain a
// failed connect (ioredis itself rejects that with "Connection is closed.").
async function open(r) {
  let last = null;
  r.on('error', (e) => { last = e; });
  try {
    await r.connect();
  } catch (e) {
    r.disconnect();
    throw last || e;
  }
  return r;
}

const connect = (url, opts) => open(new Redis(connectOptions(url, opts)));

// Connects, runs fn(redis), disconnects.
async function withRedis(url, fn, opts) {
  const r = await connect(url, opts);
  try { return await fn(r); } finally { r.disconnect(); }
}

// One command on a connection of its own, closed after the reply: simple and leak-free.
const command = (url, args, opts) => withRedis(url, (r) => r.call(...args), opts);

// Every key matching a SCAN pattern.
async function scanKeys(r, pattern) {
  const keys = [];
  let cursor = '0';
  do {
    const [next, batch] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
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
    const page = await r.xrange(key, start, '+', 'COUNT', 1000);
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
    await withRedis(url, async (r) => { for (const k of await scanKeys(r, prefix + '*')) await r.unlink(k); }, opts);
  } catch (_) { /* best effort */ }
}

module.exports = { Redis, DEFAULT_TIMEOUT_MS, connectOptions, open, connect, withRedis, command, scanKeys, xrangeAll, deletePrefix };
