'use strict';
// Issue 15: the dead-letters tab's batch redrive in headless Chromium against a real sluice,
// PostgreSQL and Redis. A dry run shows what would be reprocessed (the count, the letters,
// and that more match when the limit leaves some out) and changes nothing; changing the
// selection disables "Reprocess" until the next dry run; "Reprocess" sends exactly the
// letters the dry run showed (one discarded meanwhile is left out, and the page says so);
// the worker then gets those events again, with the same ids, and the letters resolve.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { launch, startStack, openDashboard, screenshot, assertNoPageErrors, h } = require('./lib/browser.js');
const { readGroup, redisCmd } = require('./lib/redis.js');

const WAIT = { timeout: 15000 }; // generous waits: they only prove "no hang"

let stack;
let browser;

before(async () => {
  stack = await startStack('redrive');
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
});

test('a batch redrive from the dashboard: a dry run first, then exactly what it showed is reprocessed', { timeout: 120000 }, async () => {
  const stream = 'rd.jobs';
  const key = `${stack.prefix}${stream}`;
  const c = stack.client;
  h.assertStatus(await c.post(`/v1/streams/${stream}/groups`, { name: 'g', start: '0' }), 201);
  const tag = h.rand(4);
  const eventIds = Array.from({ length: 5 }, (_, i) => `rd-${i}-${tag}`);
  h.assertStatus(await c.publish(eventIds.map((id, i) => ({ id, type: 'rd.job.requested', stream, data: { i } }))), 201);
  // A worker reads all five, then fails each for good (retryable: false dead-letters at once).
  const got = [];
  await h.waitFor(async () => {
    got.push(...await readGroup('g', 'worker-1', key, '>', 10));
    return got.length >= 5;
  }, { timeout: 15000, interval: 100, what: 'the relay to bring the events to the group' });
  for (const m of got) {
    const res = await c.post(`/v1/streams/${stream}/groups/g/nack`, { event_id: m.fields.id, error: `renderer crashed on ${m.fields.id}`, retryable: false });
    assert.equal(h.assertStatus(res, 200).status, 'dead_lettered');
  }
  const listed = h.assertStatus(await c.get(`/v1/dead-letters?stream=${stream}`), 200).dead_letters;
  const letter = new Map(listed.map((d) => [d.event_id, String(d.id)]));
  const L = eventIds.map((e) => letter.get(e));
  assert.ok(L.every(Boolean), `five dead letters: ${JSON.stringify(listed)}`);
  const statusOf = async (id) => h.assertStatus(await c.get(`/v1/dead-letters/${id}`), 200);

  const { page, context, errors } = await openDashboard(browser, stack.site, { token: stack.sluice.adminToken, hash: `dead-letters?stream=${stream}&group=g` });
  try {
    const form = '#dl-redrive-form';
    const go = page.locator('#dl-redrive-go');
    const summary = page.locator('#dl-redrive-summary');
    const shown = () => page.locator('#dl-redrive-result tr[data-id]').evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
    await page.locator(`#dl-table tr[data-id="${L[0]}"]`).waitFor(WAIT);
    await page.click('#dl-redrive summary');
    // the link's selection is the redrive's too
    assert.equal(await page.inputValue(`${form} input[name="stream"]`), stream);
    assert.equal(await page.inputValue(`${form} input[name="group"]`), 'g');
    assert.ok(await go.isDisabled(), 'nothing to reprocess before a dry run');

    // A limit below the selection: the first two, and "more match".
    await page.fill(`${form} input[name="limit"]`, '2');
    await page.click(`${form} button[type="submit"]`);
    await page.waitForSelector('#dl-redrive-summary[data-count="2"]', WAIT);
    assert.equal(await summary.getAttribute('data-has-more'), 'true');
    assert.match(await summary.textContent(), /2 dead letters would be reprocessed\. More match than this run takes \(limit 2\)/);
    assert.deepEqual(await shown(), L.slice(0, 2));
    assert.equal(await go.textContent(), 'Reprocess 2');

    // Changing the selection disables Reprocess until the next dry run.
    await page.fill(`${form} input[name="limit"]`, '1000');
    assert.ok(await go.isDisabled(), 'a changed selection needs a new dry run');
    await page.fill(`${form} textarea[name="event_ids"]`, `${eventIds[1]}, ${eventIds[3]}\n${eventIds[4]}`);
    await page.click(`${form} button[type="submit"]`);
    await page.waitForSelector('#dl-redrive-summary[data-count="3"]', WAIT);
    assert.equal(await summary.getAttribute('data-has-more'), 'false');
    assert.deepEqual(await shown(), [L[1], L[3], L[4]]);
    assert.match(await page.textContent('#dl-redrive-result'), new RegExp(`renderer crashed on ${eventIds[3]}`));
    assert.equal(await go.textContent(), 'Reprocess 3');
    assert.ok(await go.isEnabled());
    await screenshot(page, 'redrive-dry-run');

    // The dry runs changed nothing.
    for (const id of L) {
      const d = await statusOf(id);
      assert.deepEqual([d.status, d.history.length], ['open', 1], `dead letter ${id} untouched by the dry runs`);
    }

    // One of the three is discarded meanwhile (elsewhere): Reprocess sends what is still open.
    assert.equal(h.assertStatus(await c.post(`/v1/dead-letters/${L[4]}/discard`, {}), 200).status, 'discarded');
    await go.click();
    await page.waitForSelector('#dl-redrive-summary[data-started="yes"]', WAIT);
    assert.equal(await summary.getAttribute('data-count'), '2');
    assert.match(await summary.textContent(), /Reprocessing 2 dead letters at 100\/s \(1 had moved since the dry run\)/);
    assert.ok(await go.isDisabled(), 'one click, one redrive');
    await screenshot(page, 'redrive-started');

    // The worker gets exactly those two events again (same ids), acknowledges them; they resolve.
    const again = new Map();
    await h.waitFor(async () => {
      for (const m of await readGroup('g', 'worker-1', key, '0', 10)) again.set(m.fields.id, m.entry);
      return again.size >= 2;
    }, { timeout: 15000, interval: 200, what: 'the two redeliveries' });
    assert.deepEqual([...again.keys()].sort(), [eventIds[1], eventIds[3]].sort());
    for (const entry of again.values()) assert.equal(await redisCmd('XACK', key, 'g', entry), 1);
    for (const id of [L[1], L[3]]) {
      await h.waitFor(async () => (await statusOf(id)).status === 'resolved', { timeout: 15000, interval: 200, what: `dead letter ${id} to resolve` });
    }
    for (const id of [L[0], L[2]]) assert.equal((await statusOf(id)).status, 'open', `dead letter ${id} was not selected`);
    assert.equal((await statusOf(L[4])).status, 'discarded');

    // The list shows what is left.
    await page.click('#dl-filters button[type="submit"]');
    await page.waitForFunction((ids) => {
      const rows = [...document.querySelectorAll('#dl-table tr[data-id]')].map((tr) => tr.dataset.id);
      return rows.length === ids.length && ids.every((id) => rows.includes(id));
    }, [L[0], L[2]], WAIT);
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});
