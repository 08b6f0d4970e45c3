'use strict';
// bench/webhooks/sender.js — the webhook benchmark's baseline sender (spawned by
// bench/webhooks/bench.js): what the receivers can take from a plain node:http client that
// does what a webhook sender must, without Sluice — for every target URL, POSTs every body of
// a file, each signed as Standard Webhooks says (webhook-id, webhook-timestamp,
// webhook-signature v1 HMAC-SHA256 over "id.timestamp.body" with the target's own secret,
// computed per request), on at most IN_FLIGHT keep-alive connections per target, answered
// 2xx or it fails. The same concurrency Sluice has (16 in flight per webhook).
//
//   node sender.js BODIES URLS [IN_FLIGHT]
//     BODIES     a file of one JSON envelope per line (GET /v1/events as NDJSON: the bytes
//                Sluice delivers); each line's "id" is its webhook-id
//     URLS       comma-separated target URLs (one per webhook)
//     IN_FLIGHT  per target, default 16
// Waits for a line on stdin before sending (so the driver can read /proc first), prints
// {"sent":N,"ms":T,"failed":F} on stdout when every target has had every body, then exits
// when stdin ends (so the driver reads its CPU from /proc while it still runs).
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');

const [bodiesFile, urlList, inFlightArg] = process.argv.slice(2);
if (!bodiesFile || !urlList) {
  console.error('usage: node sender.js BODIES URLS [IN_FLIGHT]');
  process.exit(2);
}
const IN_FLIGHT = Number(inFlightArg || 16);
const bodies = fs.readFileSync(bodiesFile, 'utf8').split('\n').filter((l) => l.length).map((l) => ({
  id: JSON.parse(l).id,
  body: Buffer.from(l),
}));
const targets = urlList.split(',').map((u) => {
  const url = new URL(u);
  return {
    url,
    key: crypto.randomBytes(24), // the secret is whsec_<base64 of these>
    agent: new http.Agent({ keepAlive: true, maxSockets: IN_FLIGHT }),
  };
});

function post(t, b) {
  const ts = Math.floor(Date.now() / 1000);
  const sig = crypto.createHmac('sha256', t.key).update(`${b.id}.${ts}.`).update(b.body).digest('base64');
  return new Promise((resolve) => {
    const req = http.request({
      host: t.url.hostname, port: t.url.port, path: t.url.pathname, method: 'POST', agent: t.agent,
      headers: {
        'Content-Type': 'application/json', 'Content-Length': b.body.length,
        'User-Agent': 'sluice-bench-sender/1', 'webhook-id': b.id,
        'webhook-timestamp': String(ts), 'webhook-signature': `v1,${sig}`,
      },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode >= 200 && res.statusCode < 300));
      res.on('error', () => resolve(false));
    });
    req.on('error', () => resolve(false));
    req.end(b.body);
  });
}

// One target: IN_FLIGHT lanes taking the next body in order.
async function drive(t) {
  let next = 0, failed = 0;
  const lane = async () => {
    while (next < bodies.length) {
      const b = bodies[next++];
      if (!(await post(t, b))) failed++;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  t.agent.destroy();
  return failed;
}

process.stdin.once('data', async () => {
  const t0 = Date.now();
  const failed = (await Promise.all(targets.map(drive))).reduce((a, b) => a + b, 0);
  process.stdout.write(JSON.stringify({ sent: bodies.length * targets.length, ms: Date.now() - t0, failed }) + '\n');
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
