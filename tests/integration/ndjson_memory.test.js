'use strict';
// Issue 2: NDJSON streams the whole match "at memory that does not grow with the result".
// Streams ~25 MB of events to a deliberately slow reader and bounds the server's RSS growth
// well below the result size. Skipped for sanitizer builds, whose allocator quarantine makes
// RSS meaningless.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const h = require('./lib/harness');

const sanitized = fs.existsSync(h.SLUICE_BIN) && fs.readFileSync(h.SLUICE_BIN).includes('__asan_init');
const EVENTS = 20000;
const PAD = 1000;
const GROWTH_BOUND = 12 * 1024 * 1024; // the result is > 20 MB

let s;
before(async () => { if (!sanitized) s = await h.startSluice({ name: 'ndjson-mem' }); });
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

test('a slow NDJSON reader of a large result does not grow the server', { skip: sanitized && 'sanitizer build', timeout: 300000 }, async () => {
  const c = s.client();
  for (let b = 0; b < EVENTS / 1000; b++) {
    const envs = Array.from({ length: 1000 }, (_, i) => ({ type: 'mem.loaded', data: { b, i, pad: 'p'.repeat(PAD) } }));
    h.assertStatus(await c.publish(envs), 201);
  }
  // warm up: one small stream and one page, so pools and buffers exist before the baseline
  h.assertStatus(await c.get('/v1/events?limit=1000'), 200);
  const base = rssBytes(s.proc.pid);
  let peak = base;
  const sampler = setInterval(() => { try { peak = Math.max(peak, rssBytes(s.proc.pid)); } catch (_) { /* exited */ } }, 20);

  let lines = 0;
  let bytes = 0;
  let lastPos = 0;
  let carry = '';
  await new Promise((resolve, reject) => {
    const req = http.get(`${s.url}/v1/events?type=mem.loaded`, {
      headers: { Accept: 'application/x-ndjson', Authorization: `Bearer ${s.adminToken}` },
    }, (res) => {
      if (res.statusCode !== 200) { reject(new Error(`HTTP ${res.statusCode}`)); return; }
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        bytes += chunk.length;
        carry += chunk;
        let i;
        while ((i = carry.indexOf('\n')) >= 0) {
          const ev = JSON.parse(carry.slice(0, i));
          carry = carry.slice(i + 1);
          assert.ok(ev.position > lastPos);
          lastPos = ev.position;
          lines++;
        }
        // a slow consumer: pause after every ~256 KB so the server must hold back, not buffer
        if (bytes % (256 * 1024) < chunk.length) { res.pause(); setTimeout(() => res.resume(), 30); }
      });
      res.on('end', resolve);
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(120000, () => req.destroy(new Error('NDJSON stream stalled')));
  });
  clearInterval(sampler);
  assert.equal(carry, '');
  assert.equal(lines, EVENTS);
  assert.ok(bytes > EVENTS * PAD, `streamed ${bytes} bytes`);
  assert.ok(peak - base < GROWTH_BOUND,
    `server RSS grew by ${((peak - base) / 1048576).toFixed(1)} MiB while streaming ${(bytes / 1048576).toFixed(1)} MiB`);
});
