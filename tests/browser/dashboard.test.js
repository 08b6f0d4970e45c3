'use strict';
// The dashboard (web/) in headless Chromium against a real sluice, PostgreSQL and Redis:
// served at /, the live feed (an event published over HTTP shows within a second;
// filters; pause and resume), a dead letter reprocessed and one discarded from the UI,
// and every panel on real data. Screenshots go to tests/browser/artifacts/.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { launch, startStack, openDashboard, screenshot, assertNoPageErrors, WEB, h } = require('./lib/browser.js');
const { readGroup, redisCmd } = require('./lib/redis.js');

// The bound: an event published over HTTP shows in the feed within a second.
const FEED_BOUND_MS = Number(process.env.SLUICE_BROWSER_FEED_BOUND_MS || 1000);
const WAIT = { timeout: 15000 }; // generous waits: they only prove "no hang"

let stack;
let browser;

before(async () => {
  stack = await startStack('dashboard');
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
});

async function publish(env) {
  const res = await stack.client.publish(env);
  h.assertStatus(res, 201);
  return res.body;
}

test('sluice serves the dashboard at / with content types a browser accepts', async () => {
  const base = stack.sluice.url;
  const want = {
    '/': /^text\/html/, '/index.html': /^text\/html/, '/style.css': /^text\/css/,
    '/vendor/uplot/uPlot.iife.min.js': /^(text|application)\/javascript/,
    '/vendor/uplot/uPlot.min.css': /^text\/css/, '/favicon.svg': /^image\/svg\+xml/,
  };
  // Every ES module must come as JavaScript, or the browser refuses to run it.
  for (const f of fs.readdirSync(WEB)) if (f.endsWith('.js')) want['/' + f] = /^(text|application)\/javascript/;
  for (const [p, type] of Object.entries(want)) {
    const res = await fetch(base + p);
    assert.equal(res.status, 200, `GET ${p} from sluice itself (SLUICE_WEB_DIR=${process.env.SLUICE_WEB_DIR || WEB})`);
    assert.match(res.headers.get('content-type') || '', type, `content type of ${p}`);
    if (!p.endsWith('/')) {
      const disk = fs.readFileSync(path.join(WEB, p === '/' ? 'index.html' : p));
      assert.equal(Buffer.compare(Buffer.from(await res.arrayBuffer()), disk), 0, `${p} is served byte for byte`);
    }
  }
});

test('an event published over HTTP shows in the live feed within a second', { timeout: 60000 }, async () => {
  const { page, context, errors } = await openDashboard(browser, stack.site, { token: stack.sluice.adminToken });
  try {
    await page.waitForSelector('body[data-auth="ok"]', WAIT);
    await page.waitForSelector('#panel-live[data-feed-state="live"]', WAIT);
    const id = `feed-${h.rand(6)}`;
    // Watch the table from inside the page, so the time is when the row exists in the DOM.
    const seen = page.evaluate((wanted) => new Promise((resolve) => {
      const rows = document.getElementById('feed-rows');
      const found = () => rows.querySelector(`tr[data-id="${wanted}"]`);
      if (found()) return resolve(Date.now());
      const obs = new MutationObserver(() => { if (found()) { obs.disconnect(); resolve(Date.now()); } });
      obs.observe(rows, { childList: true });
      setTimeout(() => { obs.disconnect(); resolve(null); }, 15000);
    }), id);
    await page.waitForTimeout(50); // the observer is installed
    const t0 = Date.now();
    const stored = await publish({ id, type: 'dash.test.published', stream: 'dash.events', key: 'k1', data: { n: 1 } });
    const t1 = Date.now();
    const at = await seen;
    assert.ok(at !== null, `event ${id} never showed in the feed`);
    const latency = at - t0;
    console.log(`# feed latency: ${latency} ms from the POST (${at - t1} ms after its 201)`);
    assert.ok(latency <= FEED_BOUND_MS, `event showed ${latency} ms after the POST; the bound is ${FEED_BOUND_MS} ms`);
    const row = page.locator(`#feed-rows tr[data-id="${id}"]`);
    await assert.doesNotReject(row.waitFor(WAIT));
    const cells = await row.locator('td').allTextContents();
    assert.equal(cells[0], String(stored.position));
    assert.equal(cells[2], 'dash.events');
    assert.equal(cells[3], 'dash.test.published');
    assert.equal(cells[4], 'k1');
    assert.equal(cells[5], id);
    await screenshot(page, 'feed');
    await page.emulateMedia({ colorScheme: 'dark' });
    await screenshot(page, 'feed-dark');
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});

test('the feed filters by stream and type wildcard, pauses, resumes and keeps the last N', { timeout: 90000 }, async () => {
  const { page, context, errors } = await openDashboard(browser, stack.site, { token: stack.sluice.adminToken });
  try {
    await page.waitForSelector('#panel-live[data-feed-state="live"]', WAIT);
    await page.fill('#feed-filters input[name="types"]', 'dash.order.*');
    await page.fill('#feed-filters input[name="streams"]', 'dash.orders');
    await page.click('#feed-filters button[type="submit"]');
    await page.waitForFunction(() => /dash\.order\.\*/.test(document.getElementById('feed-status').textContent)
      && document.getElementById('panel-live').dataset.feedState === 'live', null, WAIT);

    const tag = h.rand(4);
    await publish({ id: `skip-type-${tag}`, type: 'dash.user.created', stream: 'dash.orders', data: {} });
    await publish({ id: `skip-stream-${tag}`, type: 'dash.order.placed', stream: 'dash.other', data: {} });
    await publish({ id: `keep-${tag}`, type: 'dash.order.placed', stream: 'dash.orders', data: {} });
    await page.locator(`#feed-rows tr[data-id="keep-${tag}"]`).waitFor(WAIT);
    // Positions are in commit order and the feed is in position order: the later match
    // arrived, so the earlier non-matching events would have been here by now.
    assert.equal(await page.locator(`#feed-rows tr[data-id="skip-type-${tag}"]`).count(), 0, 'type filter');
    assert.equal(await page.locator(`#feed-rows tr[data-id="skip-stream-${tag}"]`).count(), 0, 'stream filter');

    // Pause: events are held, not shown; resume shows them.
    await page.click('#feed-pause');
    assert.equal(await page.getAttribute('#feed-pause', 'aria-pressed'), 'true');
    await publish({ id: `held-${tag}`, type: 'dash.order.shipped', stream: 'dash.orders', data: {} });
    await page.waitForFunction(() => /1 new while paused/.test(document.getElementById('feed-count').textContent), null, WAIT);
    assert.equal(await page.locator(`#feed-rows tr[data-id="held-${tag}"]`).count(), 0, 'held while paused');
    await page.click('#feed-pause');
    await page.locator(`#feed-rows tr[data-id="held-${tag}"]`).waitFor(WAIT);
    const ids = await page.locator('#feed-rows tr').evaluateAll((trs) => trs.map((t) => t.dataset.id));
    assert.deepEqual(ids.slice(0, 2), [`held-${tag}`, `keep-${tag}`], 'newest first');

    // Keep the last 100: a burst of 150 leaves exactly 100 rows, the newest.
    await page.selectOption('#feed-keep', '100');
    const burst = Array.from({ length: 150 }, (_, i) => ({ id: `burst-${tag}-${i}`, type: 'dash.order.placed', stream: 'dash.orders', data: { i } }));
    await publish(burst);
    await page.locator(`#feed-rows tr[data-id="burst-${tag}-149"]`).waitFor(WAIT);
    await page.waitForFunction(() => document.querySelectorAll('#feed-rows tr').length === 100, null, WAIT);
    assert.equal(await page.locator('#feed-rows tr').first().getAttribute('data-id'), `burst-${tag}-149`);
    assert.equal(await page.locator('#feed-rows tr').last().getAttribute('data-id'), `burst-${tag}-50`);

    // A row links to the event view.
    await page.click(`#feed-rows tr[data-id="burst-${tag}-149"] a`);
    await page.waitForSelector('#panel-event:not([hidden]) #event-out dl.facts', WAIT);
    assert.match(await page.textContent('#event-out'), new RegExp(`burst-${tag}-149`));
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});

test('a burst of 5,000 events keeps the feed bounded and the page responsive', { timeout: 120000 }, async () => {
  const { page, context, errors } = await openDashboard(browser, stack.site, { token: stack.sluice.adminToken });
  try {
    await page.waitForSelector('#panel-live[data-feed-state="live"]', WAIT);
    await page.fill('#feed-filters input[name="streams"]', 'dash.burst');
    await page.click('#feed-filters button[type="submit"]');
    await page.waitForFunction(() => /dash\.burst/.test(document.getElementById('feed-status').textContent)
      && document.getElementById('panel-live').dataset.feedState === 'live', null, WAIT);
    const tag = h.rand(4);
    const t0 = Date.now();
    for (let b = 0; b < 5; b++) {
      await publish(Array.from({ length: 1000 }, (_, i) => ({ id: `b-${tag}-${b * 1000 + i}`, type: 'dash.burst.item', stream: 'dash.burst', data: { i } })));
    }
    await page.locator(`#feed-rows tr[data-id="b-${tag}-4999"]`).waitFor(WAIT);
    console.log(`# 5,000 events published and shown in ${Date.now() - t0} ms`);
    assert.equal(await page.locator('#feed-rows tr').count(), 500, 'the last 500 are kept');
    assert.equal(await page.locator('#feed-rows tr').last().getAttribute('data-id'), `b-${tag}-4500`);
    // Responsive: a click is handled at once.
    const t1 = Date.now();
    await page.click('#feed-pause');
    assert.equal(await page.getAttribute('#feed-pause', 'aria-pressed'), 'true');
    assert.ok(Date.now() - t1 < 2000, `the pause click took ${Date.now() - t1} ms`);
    // Paused through another 1,000: at most 500 are held, the rest are counted as dropped.
    await publish(Array.from({ length: 1000 }, (_, i) => ({ id: `p-${tag}-${i}`, type: 'dash.burst.item', stream: 'dash.burst', data: { i } })));
    await page.waitForFunction(() => /500 new while paused · 500 older ones dropped while paused/.test(document.getElementById('feed-count').textContent), null, WAIT);
    await page.click('#feed-pause');
    await page.locator(`#feed-rows tr[data-id="p-${tag}-999"]`).waitFor(WAIT);
    assert.equal(await page.locator('#feed-rows tr').count(), 500);
    assert.equal(await page.locator('#feed-rows tr').last().getAttribute('data-id'), `p-${tag}-500`);
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});

test('a dead letter is reprocessed from the UI, and another is discarded', { timeout: 120000 }, async () => {
  const stream = 'dash.jobs';
  const key = `${stack.prefix}${stream}`;
  const c = stack.client;
  h.assertStatus(await c.post(`/v1/streams/${stream}/groups`, { name: 'g', start: '0' }), 201);
  const tag = h.rand(4);
  await publish([
    { id: `job-a-${tag}`, type: 'dash.job.requested', stream, data: { job: 'a' } },
    { id: `job-b-${tag}`, type: 'dash.job.requested', stream, data: { job: 'b' } },
  ]);
  // A worker reads both, then fails each for good (retryable: false dead-letters at once).
  const got = [];
  await h.waitFor(async () => {
    got.push(...await readGroup('g', 'worker-1', key, '>', 10));
    return got.length >= 2;
  }, { timeout: 15000, interval: 100, what: 'the relay to bring both events to the group' });
  for (const m of got) {
    const res = await c.post(`/v1/streams/${stream}/groups/g/nack`, { event_id: m.fields.id, error: `thumbnailer crashed on ${m.fields.id}`, retryable: false });
    assert.equal(h.assertStatus(res, 200).status, 'dead_lettered');
  }
  const list = h.assertStatus(await c.get(`/v1/dead-letters?stream=${stream}`), 200).dead_letters;
  const byEvent = new Map(list.map((d) => [d.event_id, d]));
  const a = byEvent.get(`job-a-${tag}`);
  const b = byEvent.get(`job-b-${tag}`);
  assert.ok(a && b, `both are dead letters: ${JSON.stringify(list)}`);

  const { page, context, errors } = await openDashboard(browser, stack.site, { token: stack.sluice.adminToken, hash: 'groups' });
  try {
    // From the group's dead-letter count to its letters.
    const group = page.locator(`#groups-table tr[data-stream="${stream}"][data-group="g"]`);
    await group.waitFor(WAIT);
    assert.equal(await group.locator('[data-col="dead_letters"]').textContent(), '2');
    await group.locator('[data-col="dead_letters"] a').click();
    const rowA = page.locator(`#dl-table tr[data-id="${a.id}"]`);
    await rowA.waitFor(WAIT);
    assert.equal(await page.inputValue('#dl-filters input[name="stream"]'), stream);
    assert.equal(await page.inputValue('#dl-filters input[name="group"]'), 'g');
    assert.equal(await rowA.locator('[data-col="status"]').textContent(), 'open');

    // Inspect: the event, the error and the history.
    await rowA.getByRole('button', { name: `Inspect dead letter ${a.id}` }).click();
    await page.waitForSelector('#dl-detail:not([hidden]) pre.json', WAIT);
    const detail = await page.textContent('#dl-detail');
    assert.match(detail, new RegExp(`thumbnailer crashed on job-a-${tag}`));
    assert.match(detail, /"job": "a"/);
    await screenshot(page, 'dead-letter-inspect');

    // Reprocess from the row: its status changes on the page and on the server.
    await rowA.getByRole('button', { name: `Reprocess dead letter ${a.id}` }).click();
    await page.waitForFunction((id) => {
      const s = document.querySelector(`#dl-table tr[data-id="${id}"] [data-col="status"]`);
      return s && s.textContent === 'reprocessing';
    }, a.id, WAIT);
    assert.match(await page.textContent('#dl-live'), new RegExp(`Dead letter ${a.id} is now reprocessing`));
    assert.equal(h.assertStatus(await c.get(`/v1/dead-letters/${a.id}`), 200).status, 'reprocessing');
    assert.ok(await page.locator(`#dl-table tr[data-id="${a.id}"] button:has-text("Reprocess")`).isDisabled(), 'no second reprocess');
    await screenshot(page, 'dead-letter-reprocessing');

    // The worker gets the same event again (same id), acknowledges it, and the letter is resolved.
    const again = await h.waitFor(async () => {
      const r = await readGroup('g', 'worker-1', key, '0', 10);
      return r.find((m) => m.fields.id === `job-a-${tag}`);
    }, { timeout: 15000, interval: 200, what: 'the reprocessed delivery' });
    assert.equal(await redisCmd('XACK', key, 'g', again.entry), 1);
    await h.waitFor(async () => (await c.get(`/v1/dead-letters/${a.id}`)).body.status === 'resolved',
      { timeout: 15000, interval: 200, what: 'the letter to be resolved after XACK' });
    await page.selectOption('#dl-filters select[name="status"]', 'resolved');
    await page.click('#dl-filters button[type="submit"]');
    await page.waitForFunction((id) => {
      const s = document.querySelector(`#dl-table tr[data-id="${id}"] [data-col="status"]`);
      return s && s.textContent === 'resolved';
    }, a.id, WAIT);

    // Discard takes a second, confirming click.
    await page.selectOption('#dl-filters select[name="status"]', 'open');
    await page.click('#dl-filters button[type="submit"]');
    const rowB = page.locator(`#dl-table tr[data-id="${b.id}"]`);
    await rowB.waitFor(WAIT);
    const discard = rowB.getByRole('button', { name: `Discard dead letter ${b.id}` });
    await discard.click();
    assert.equal(await discard.textContent(), 'Confirm discard');
    assert.equal(h.assertStatus(await c.get(`/v1/dead-letters/${b.id}`), 200).status, 'open', 'one click does not discard');
    await discard.click();
    await page.waitForFunction((id) => {
      const s = document.querySelector(`#dl-table tr[data-id="${id}"] [data-col="status"]`);
      return s && s.textContent === 'discarded';
    }, b.id, WAIT);
    assert.equal(h.assertStatus(await c.get(`/v1/dead-letters/${b.id}`), 200).status, 'discarded');
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});

test('groups, projections, schemas with a diff, the event trace and rates show real data', { timeout: 120000 }, async () => {
  const c = stack.client;
  const tag = h.rand(4);
  // A flow of three events: a request, its result (caused by it), and a follow-up.
  const corr = `flow-${tag}`;
  await publish({ id: `req-${tag}`, type: 'dash.flow.requested', stream: 'dash.flows', correlation_id: corr, user_id: 'u1', data: { step: 1 } });
  await publish({ id: `res-${tag}`, type: 'dash.flow.completed', stream: 'dash.flows', correlation_id: corr, causation_id: `req-${tag}`, data: { step: 2 } });
  await publish({ id: `note-${tag}`, type: 'dash.flow.noted', stream: 'dash.audit', correlation_id: corr, causation_id: `res-${tag}`, data: { step: 3 } });
  // A projection: events per type.
  h.assertStatus(await c.post('/v1/projections', { name: `per-type-${tag}`, key: '/type', reduce: 'count' }), 201);
  // A schema with two versions (v2 adds an optional property: BACKWARD compatible).
  const type = `dash.schema${tag.replace(/[^a-z]/g, 'x')}.created`;
  const v1 = { type: 'object', required: ['id'], properties: { id: { type: 'string' } } };
  const v2 = { type: 'object', required: ['id'], properties: { id: { type: 'string' }, tags: { type: 'array', items: { type: 'string' } } } };
  h.assertStatus(await c.post('/v1/schemas', { type, stream: 'dash.schemas', schema: v1 }), 201);
  h.assertStatus(await c.post('/v1/schemas', { type, schema: v2 }), 201);
  // A group with one message pending.
  h.assertStatus(await c.post('/v1/streams/dash.flows/groups', { name: 'viewer', start: '0' }), 201);
  await h.waitFor(async () => (await readGroup('viewer', 'w', `${stack.prefix}dash.flows`, '>', 1)).length === 1,
    { timeout: 15000, interval: 100, what: 'a delivery to the viewer group' });

  const { page, context, errors } = await openDashboard(browser, stack.site, { token: stack.sluice.adminToken, hash: 'groups' });
  try {
    // Consumer groups: pending and lag from Redis.
    const g = page.locator('#groups-table tr[data-stream="dash.flows"][data-group="viewer"]');
    await g.waitFor(WAIT);
    assert.equal(await g.locator('[data-col="pending"]').textContent(), '1');
    await screenshot(page, 'groups');

    // Projections: status, lag and a state lookup.
    await page.click('#nav a[href="#projections"]');
    const p = page.locator(`#proj-table tr[data-name="per-type-${tag}"]`);
    await p.waitFor(WAIT);
    await page.waitForFunction((n) => {
      const s = document.querySelector(`#proj-table tr[data-name="${n}"] [data-col="status"]`);
      return s && s.textContent === 'live';
    }, `per-type-${tag}`, WAIT);
    await page.selectOption('#proj-name', `per-type-${tag}`);
    await page.fill('#proj-lookup input[name="key"]', 'dash.flow.requested');
    await page.click('#proj-lookup button[type="submit"]');
    await page.waitForSelector('#proj-result pre.json', WAIT);
    assert.equal((await page.textContent('#proj-result pre.json')).trim(), '1');
    await page.fill('#proj-lookup input[name="key"]', 'no.such.type');
    await page.click('#proj-lookup button[type="submit"]');
    await page.waitForSelector('#proj-result .error', WAIT);
    assert.match(await page.textContent('#proj-result'), /No state for key "no\.such\.type"/);
    await page.fill('#proj-lookup input[name="key"]', 'dash.flow.requested');
    await page.click('#proj-lookup button[type="submit"]');
    await page.waitForSelector('#proj-result pre.json', WAIT);
    await screenshot(page, 'projections');

    // Schemas: the type, its versions and the diff v1 → v2.
    await page.click('#nav a[href="#schemas"]');
    await page.fill('#schema-search', type);
    await page.click(`#schema-list a[href="#schemas/${encodeURIComponent(type)}"]`);
    await page.waitForSelector('#schema-diff ul.diff', WAIT);
    const changes = await page.locator('#schema-diff ul.diff li').allTextContents();
    assert.deepEqual(changes.map((s) => s.replace(/\s+/g, ' ').trim()),
      ['+ /properties/tags {"type":"array","items":{"type":"string"}}']);
    await page.selectOption('#schema-version', '1');
    await page.waitForFunction(() => !/tags/.test(document.querySelector('#schema-doc').textContent), null, WAIT);
    await screenshot(page, 'schemas');

    // Event view with its correlation trace, indented by causation.
    await page.goto(`${stack.site.url}/#event/res-${tag}`);
    await page.waitForSelector('#trace table', WAIT);
    const trace = await page.locator('#trace tbody tr').evaluateAll((trs) => trs.map((t) => t.dataset.id));
    assert.deepEqual(trace, [`req-${tag}`, `res-${tag}`, `note-${tag}`]);
    assert.equal(await page.getAttribute(`#trace tr[data-id="res-${tag}"]`, 'aria-current'), 'true');
    assert.ok(await page.locator(`#trace tr[data-id="note-${tag}"] td.depth-2`).count(), 'caused by the result: two levels in');
    await page.click(`#trace tr[data-id="note-${tag}"] a`);
    await page.waitForFunction((id) => document.querySelector('#event-out dl.facts')?.textContent.includes(id), `note-${tag}`, WAIT);
    await screenshot(page, 'event-trace');

    // Rates: the chart is drawn from two readings of GET /v1/streams, and /v1/stats fills
    // its table (or says the route is missing).
    await page.click('#nav a[href="#rates"]');
    // Some traffic between two readings, so the chart has a line to draw.
    const readings = () => page.evaluate(() => window.sluice.panels.rates.times.length);
    const start = await readings();
    for (let i = 0; i < 60 && (await readings()) < start + 2; i++) {
      await publish(Array.from({ length: 1 + (i % 5) }, () => ({ type: 'dash.test.rate', stream: i % 2 ? 'dash.events' : 'dash.flows', data: { i } })));
      await page.waitForTimeout(250);
    }
    await page.waitForSelector('#rates-chart canvas', WAIT);
    await page.waitForFunction(() => /dash\.flows/.test(document.querySelector('#rates-chart .u-legend')?.textContent || ''), null, WAIT);
    await page.waitForSelector('#rates-streams tr[data-stream="dash.flows"]', WAIT);
    await page.waitForFunction(() => document.querySelector('#stats-table table') || /GET \/v1\/stats/.test(document.getElementById('stats-note').textContent), null, WAIT);
    await screenshot(page, 'rates');
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});

test('the schema diff (web/jsondiff.js) on edge cases', async () => {
  const { page, context, errors } = await openDashboard(browser, stack.site, {});
  try {
    const results = await page.evaluate(async () => {
      const { diff } = await import('/jsondiff.js');
      return {
        same: diff({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }),
        required: diff({ required: ['a', 'b', 'c'] }, { required: ['a', 'c', 'd'] }),
        nested: diff({ items: [{ type: 'string' }] }, { items: [{ type: 'integer' }] }),
        kinds: diff({ x: 1 }, { x: '1' }),
        escape: diff({ 'a/b': 1, 'c~d': 1 }, { 'a/b': 2 }),
        root: diff(true, { type: 'object' }),
      };
    });
    assert.deepEqual(results.same, []);
    assert.deepEqual(results.required, [
      { op: 'remove', path: '/required/1', from: 'b' },
      { op: 'add', path: '/required/2', to: 'd' },
    ]);
    assert.deepEqual(results.nested, [{ op: 'change', path: '/items/0/type', from: 'string', to: 'integer' }]);
    assert.deepEqual(results.kinds, [{ op: 'change', path: '/x', from: 1, to: '1' }]);
    assert.deepEqual(results.escape, [
      { op: 'change', path: '/a~1b', from: 1, to: 2 },
      { op: 'remove', path: '/c~0d', from: 1 },
    ]);
    assert.deepEqual(results.root, [{ op: 'change', path: '', from: true, to: { type: 'object' } }]);
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});
