'use strict';
// A tiny RESP client for the consumer side of a group (XREADGROUP, XACK): one connection
// per command, bounded by a timeout, as a worker written against plain Redis would be.

const net = require('node:net');

// Parses one reply at buf[i]; returns [value, next] or null when more bytes are needed.
function parseReply(buf, i) {
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

function redisCmd(...args) {
  const u = new URL(process.env.SLUICE_REDIS_URL || 'redis://127.0.0.1:6379/0');
  const db = u.pathname.replace('/', '') || '0';
  const cmds = [];
  if (db !== '0') cmds.push(['SELECT', db]);
  cmds.push(args);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: u.hostname, port: Number(u.port || 6379) });
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`redis ${args[0]} timed out`)); }, 15000);
    let buf = Buffer.alloc(0);
    const replies = [];
    const done = (fn, v) => { clearTimeout(timer); sock.destroy(); fn(v); };
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let r;
      while ((r = parseReply(buf, 0))) {
        replies.push(r[0]);
        buf = buf.subarray(r[1]);
        if (r[0] instanceof Error) return done(reject, r[0]);
        if (replies.length === cmds.length) return done(resolve, replies[replies.length - 1]);
      }
    });
    sock.on('error', (e) => done(reject, e));
    sock.write(cmds.map((c) => `*${c.length}\r\n` + c.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')).join(''));
  });
}

// XREADGROUP … → [{entry, fields: {id, type, position, event}}] for one stream.
async function readGroup(group, consumer, key, id = '>', count = 10) {
  const rep = await redisCmd('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', key, id);
  if (!rep) return [];
  const entries = rep[0][1] || [];
  return entries.map(([entry, kv]) => {
    const fields = {};
    for (let i = 0; kv && i < kv.length; i += 2) fields[kv[i]] = kv[i + 1];
    return { entry, fields };
  });
}

// Removes every key under a prefix (the test's own Redis streams).
async function deletePrefix(prefix) {
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redisCmd('SCAN', cursor, 'MATCH', prefix + '*', 'COUNT', 1000);
      for (const k of keys) await redisCmd('UNLINK', k);
      cursor = next;
    } while (cursor !== '0');
  } catch (_) { /* best effort */ }
}

module.exports = { redisCmd, readGroup, deletePrefix };
