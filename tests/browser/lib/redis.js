'use strict';
// The suite's Redis for the browser tests: the consumer side of a group (XREADGROUP, XACK) and
// the cleanup of a test's prefix, over ioredis as tests/lib/redis.js sets it up: one
// connection per command, bounded by a timeout, as a worker written against plain Redis would be.

const redis = require('../../lib/redis.js');

const TIMEOUT_MS = 15000;
const redisUrl = () => process.env.SLUICE_REDIS_URL || 'redis://127.0.0.1:6379/0';

function redisCmd(...args) {
  return redis.command(redisUrl(), args, { timeoutMs: TIMEOUT_MS });
}

// XREADGROUP … → [{entry, fields: {id, type, position, event}}] for one stream.
async function readGroup(group, consumer, key, id = '>', count = 10) {
  const rep = await redis.withRedis(redisUrl(),
    (r) => r.xreadgroup('GROUP', group, consumer, 'COUNT', count, 'STREAMS', key, id), { timeoutMs: TIMEOUT_MS });
  if (!rep) return [];
  const entries = rep[0][1] || [];
  return entries.map(([entry, kv]) => {
    const fields = {};
    for (let i = 0; kv && i < kv.length; i += 2) fields[kv[i]] = kv[i + 1];
    return { entry, fields };
  });
}

// Removes every key under a prefix (the test's own Redis streams); best effort.
function deletePrefix(prefix) {
  return redis.deletePrefix(redisUrl(), prefix, { timeoutMs: TIMEOUT_MS });
}

module.exports = { redisCmd, readGroup, deletePrefix };
