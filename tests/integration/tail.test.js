'use strict';
// Issue 2 / ARCHITECTURE invariant: positions are gap-free in commit order, so a reader that
// tails by position (`after=<last seen>`) never skips an event that commits later with a lower
// position — across instances. Writers publish through two instances on one database while a
// reader tails through one of them; the tail must see 1, 2, 3, … with no hole, ever.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

test('a reader tailing by position while two instances take writes never sees a gap', { timeout: 240000 }, async () => {
  const db = await h.freshDatabase();
  const adminToken = 'adm_' + h.rand(16);
  const started = await Promise.allSettled([
    h.startSluice({ name: 'tail-a', dbUrl: db.url, adminToken }),
    h.startSluice({ name: 'tail-b', dbUrl: db.url, adminToken }),
  ]);
  const handles = started.filter((r) => r.status === 'fulfilled').map((r) => r.value);
  try {
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    const [a, b] = handles;
    let writing = true;
    const acked = new Map();

    const writers = Promise.all(Array.from({ length: 6 }, async (_, w) => {
      const c = (w % 2 ? b : a).client();
      for (let i = 0; i < 60; i++) {
        const batch = i % 4 === 3;
        const envs = Array.from({ length: batch ? 3 : 1 }, (_, j) => ({ id: `tail-${w}-${i}-${j}`, type: 'tail.wrote', data: { w, i, j } }));
        const r = await c.publish(batch ? envs : envs[0]);
        h.assertStatus(r, 201);
        for (const x of batch ? r.body.events : [r.body]) acked.set(x.id, x.position);
      }
    })).finally(() => { writing = false; });

    const seen = [];
    let last = 0;
    const reader = a.client();
    const tail = (async () => {
      for (;;) {
        const stillWriting = writing;
        const page = h.assertStatus(await reader.get(`/v1/events?after=${last}&limit=50`), 200);
        for (const e of page.events) {
          assert.equal(e.position, last + 1, `the tail saw position ${e.position} right after ${last}`);
          last = e.position;
          seen.push([e.id, e.position]);
        }
        if (!stillWriting && !page.has_more) return;
        if (page.events.length === 0) await h.sleep(5);
      }
    })();

    await writers;
    await tail;
    assert.equal(seen.length, acked.size, 'the tail saw every event');
    const seenById = new Map(seen);
    assert.equal(seenById.size, seen.length, 'and none twice');
    for (const [id, pos] of acked) assert.equal(seenById.get(id), pos, `${id} seen at its acknowledged position`);
    const info = h.assertStatus(await b.client().get('/v1/info'), 200);
    assert.equal(info.head_position, last);
    for (const x of handles) await x.stop();
  } finally {
    for (const x of handles) await x.cleanup();
    db.drop();
  }
});
