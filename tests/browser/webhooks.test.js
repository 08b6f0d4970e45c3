'use strict';
// Issue 16: the dashboard's Webhooks tab in headless Chromium against a real sluice, PostgreSQL
// and Redis, delivering to a real HTTP receiver on 127.0.0.1 (tests/integration/lib/
// webhook_receiver.js; sluice runs with SLUICE_WEBHOOK_ALLOW_PRIVATE=1). A webhook created from
// the form (streams, types, where, ordering; a bad where is refused without creating anything)
// shows its secret once, and every delivery verifies with that secret; the delivered count
// rises as events arrive. Pause from the page holds delivery until Resume; a 410 from the
// receiver pauses it too, and the row, the panel and the nav tab say so with the reason. A
// failing webhook's dead letters show in its detail and link into the dead-letters tab. Rotate
// secret shows the new secret once (deliveries then carry both signatures), and Delete asks
// for a second click.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

// Before the stack starts: sluice inherits this process's environment.
process.env.SLUICE_WEBHOOK_ALLOW_PRIVATE = '1';
const { launch, startStack, openDashboard, screenshot, assertNoPageErrors, h } = require('./lib/browser.js');
const { Receiver } = require('../integration/lib/webhook_receiver.js');

const WAIT = { timeout: 15000 }; // generous waits: they only prove "no hang"
const SECRET_RE = /^whsec_[A-Za-z0-9+/]{32}$/; // whsec_ + base64 of 24 bytes

let stack;
let browser;
let receiver;

// The receiver (tests/integration/lib/webhook_receiver.js) records every request; here /hook
// answers `answers.hook` (204 until a test changes it), /fail always 500, and /strict 204 only
// when one of the signatures is made with `answers.strict` (a receiver that verifies with one
// secret), else 401. A 410 carries a body, as a real endpoint's would.
const answers = { hook: 204, strict: null };
function answer(rec) {
  let status;
  if (rec.path === '/fail') status = 500;
  else if (rec.path === '/strict') status = answers.strict && signedWith(answers.strict, rec) ? 204 : 401;
  else status = answers.hook;
  return { status, headers: { 'Content-Type': 'text/plain' }, body: status === 410 ? 'gone for good' : '' };
}

before(async () => {
  receiver = await Receiver.start(answer);
  stack = await startStack('webhooks');
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
  if (receiver) await receiver.close();
});

// Standard Webhooks: true when one of the space-separated v1 signatures is the HMAC-SHA256
// of "<webhook-id>.<webhook-timestamp>.<body>" under the secret's key.
function signedWith(secret, r) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const want = 'v1,' + crypto.createHmac('sha256', key)
    .update(`${r.headers['webhook-id']}.${r.headers['webhook-timestamp']}.`).update(r.raw).digest('base64');
  return String(r.headers['webhook-signature'] || '').split(' ').includes(want);
}

async function publish(env) {
  return h.assertStatus(await stack.client.publish(env), 201);
}

// The deliverer's sluice_webhook_paused gauge of webhook `name` (tenant default), or undefined.
async function pausedGauge(name) {
  const res = await stack.client.get('/metrics');
  assert.equal(res.status, 200, h.describeRes(res));
  const line = res.text.split('\n').find((l) => l.startsWith('sluice_webhook_paused{')
    && l.includes('tenant="default"') && l.includes(`webhook="${name}"`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

// Waits until the webhook's row shows `text` in the column `col`.
function cellIs(page, name, col, text) {
  return page.waitForFunction(([n, c, t]) => {
    const td = document.querySelector(`#wh-table tr[data-name="${CSS.escape(n)}"] td[data-col="${c}"]`);
    return td && td.textContent.trim() === t;
  }, [name, col, text], WAIT);
}

test('a webhook created from the tab delivers signed events; paused and resumed from the page, and flagged when a 410 pauses it', { timeout: 120000 }, async () => {
  const name = `orders-${h.rand(3)}`;
  const url = `${receiver.url}/hook`;
  const { page, context, errors } = await openDashboard(browser, stack.site, { token: stack.sluice.adminToken, hash: 'webhooks' });
  try {
    await page.waitForSelector('#wh-table td.empty', WAIT);
    assert.ok(await page.locator('#nav-webhooks-paused').isHidden(), 'nothing is paused yet');

    // Create from the form. A where that is not JSON is refused by the page; one that Sluice
    // refuses (an unknown op) shows Sluice's 400 invalid_filter; neither creates anything.
    await page.click('#wh-create summary');
    await page.fill('#wh-create-form input[name="name"]', name);
    await page.fill('#wh-create-form input[name="url"]', url);
    await page.fill('#wh-create-form input[name="streams"]', 'wh.orders');
    await page.fill('#wh-create-form input[name="types"]', 'wh.order.*');
    await page.selectOption('#wh-create-form select[name="ordering"]', 'key');
    await page.fill('#wh-create-form textarea[name="where"]', '[{"path":');
    await page.click('#wh-create-form button[type="submit"]');
    await page.waitForFunction(() => /^Where is not JSON/.test(document.getElementById('wh-live').textContent), null, WAIT);
    await page.fill('#wh-create-form textarea[name="where"]', '[{"path":"/data/i","op":"bogus","value":10}]');
    await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/webhooks' && r.request().method() === 'POST', WAIT),
      page.click('#wh-create-form button[type="submit"]'),
    ]);
    await page.waitForFunction((n) => document.getElementById('wh-live').textContent.startsWith(`Creating ${n} failed:`), name, WAIT);
    assert.match(await page.textContent('#wh-live'), /400 invalid_filter/);
    assert.equal((await stack.client.get(`/v1/webhooks/${name}`)).status, 404, 'nothing was created');
    assert.ok(await page.locator('#wh-secret').isHidden(), 'no secret for a refused create');
    await page.fill('#wh-create-form textarea[name="where"]', '[{"path":"/data/i","op":"lt","value":10}]');
    await page.click('#wh-create-form button[type="submit"]');
    await page.waitForSelector(`#wh-secret[data-webhook="${name}"][data-how="created"]`, WAIT);
    const secret = (await page.textContent('#wh-secret-value')).trim();
    assert.match(secret, SECRET_RE);
    await page.waitForSelector(`#wh-table tr[data-name="${name}"][data-status="active"]`, WAIT);
    await page.waitForSelector(`#wh-detail[data-name="${name}"]`, WAIT);
    assert.equal(await page.inputValue('#wh-create-form input[name="name"]'), '', 'the form is reset');
    const stored = h.assertStatus(await stack.client.get(`/v1/webhooks/${name}`), 200);
    assert.equal(stored.url, url);
    assert.deepEqual(stored.filter.streams, ['wh.orders']);
    assert.deepEqual(stored.filter.types, ['wh.order.*']);
    assert.deepEqual(stored.filter.where, [{ path: '/data/i', op: 'lt', value: 10 }]);
    assert.equal(stored.ordering, 'key');
    assert.equal(stored.secret, undefined, 'the secret is not readable back');
    // A refresh keeps the one-time secret on screen until it is dismissed.
    await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/webhooks' && r.request().method() === 'GET', WAIT),
      page.click('#wh-refresh'),
    ]);
    await page.waitForFunction(() => document.getElementById('wh-note').textContent === '1 webhook.', null, WAIT);
    assert.equal((await page.textContent('#wh-secret-value')).trim(), secret);

    // Deliveries: the filter leaves out the user event (types), the order of another stream
    // (streams) and the big order (where); every other order arrives, signed.
    const tag = h.rand(3);
    const left = [
      await publish({ id: `wh-user-${tag}`, type: 'wh.user.created', stream: 'wh.orders', key: 'u1', data: { i: 1 } }),
      await publish({ id: `wh-other-${tag}`, type: 'wh.order.placed', stream: 'wh.other', key: 'o1', data: { i: 1 } }),
      await publish({ id: `wh-big-${tag}`, type: 'wh.order.placed', stream: 'wh.orders', key: 'o1', data: { i: 99 } }),
    ];
    const orders = [];
    for (let i = 0; i < 3; i++) {
      orders.push(await publish({ id: `wh-order-${i}-${tag}`, type: 'wh.order.placed', stream: 'wh.orders', key: `o${i % 2}`, data: { i } }));
    }
    await h.waitFor(() => orders.every((o) => receiver.attemptsOf(o.id).length >= 1), { timeout: 15000, interval: 50, what: 'three deliveries' });
    for (const o of orders) {
      const r = receiver.attemptsOf(o.id)[0];
      assert.equal(r.method, 'POST');
      assert.equal(r.path, '/hook');
      assert.match(r.headers['content-type'], /^application\/json/);
      assert.ok(signedWith(secret, r), `delivery of ${o.id} verifies with the secret the page showed: ${r.headers['webhook-signature']}`);
      const body = JSON.parse(r.body);
      assert.deepEqual([body.id, body.type, body.position], [o.id, 'wh.order.placed', o.position]);
    }
    await cellIs(page, name, 'delivered', '3');
    await cellIs(page, name, 'lag', '0');
    await cellIs(page, name, 'position', orders[2].position.toLocaleString('en-US'));
    // The checkpoint covers every event up to the last order, so the left-out ones were judged.
    for (const e of left) assert.equal(receiver.attemptsOf(e.id).length, 0, `the filter kept ${e.id} out`);
    await screenshot(page, 'webhooks-delivering');

    // Pause from the page: the row, the detail and the nav tab say paused, by an operator.
    await page.click(`#wh-table tr[data-name="${name}"] button[data-action="pause"]`);
    await page.waitForSelector(`#wh-table tr[data-name="${name}"][data-status="paused"].paused`, WAIT);
    const byHand = h.assertStatus(await stack.client.get(`/v1/webhooks/${name}`), 200);
    assert.equal(byHand.status, 'paused');
    assert.equal((await page.textContent(`#wh-table tr[data-name="${name}"] [data-col="paused_reason"]`)).trim(), byHand.paused_reason);
    assert.match(byHand.paused_reason, /operator/);
    assert.match(await page.textContent('#wh-live'), new RegExp(`Webhook ${name} paused`));
    await page.waitForSelector(`#wh-detail[data-status="paused"] #wh-detail-paused`, WAIT);
    assert.equal((await page.textContent('#nav-webhooks-paused')).trim(), '1 paused');
    // Once the deliverer holds it paused (its gauge), an event published now waits for Resume:
    // every attempt of it arrives after the Resume click.
    await h.waitFor(async () => (await pausedGauge(name)) === 1, { timeout: 15000, interval: 100, what: 'sluice_webhook_paused = 1' });
    const waiting = await publish({ id: `wh-order-wait-${tag}`, type: 'wh.order.placed', stream: 'wh.orders', key: 'o3', data: { i: 3 } });
    const resumedAt = Date.now();
    await page.click(`#wh-detail button[data-action="resume"]`);
    await page.waitForSelector(`#wh-table tr[data-name="${name}"][data-status="active"]`, WAIT);
    await page.waitForSelector(`#wh-detail[data-status="active"]`, WAIT);
    await page.waitForSelector('#nav-webhooks-paused[hidden]', { ...WAIT, state: 'attached' });
    await h.waitFor(() => receiver.attemptsOf(waiting.id).some((r) => r.status === 204), { timeout: 15000, interval: 50, what: 'the event published while paused' });
    assert.ok(receiver.attemptsOf(waiting.id).every((r) => r.receivedAt >= resumedAt), 'nothing was delivered while paused');
    await cellIs(page, name, 'delivered', '4');

    // 410 Gone pauses the webhook: the row, the panel's alert, the detail and the nav tab say so.
    answers.hook = 410;
    const held = await publish({ id: `wh-order-held-${tag}`, type: 'wh.order.placed', stream: 'wh.orders', key: 'o9', data: { i: 9 } });
    await page.waitForSelector(`#wh-table tr[data-name="${name}"][data-status="paused"].paused`, WAIT);
    const reason = (await page.textContent(`#wh-table tr[data-name="${name}"] [data-col="paused_reason"]`)).trim();
    assert.match(reason, /410|gone/i, `the paused reason names the answer: ${reason}`);
    const api = h.assertStatus(await stack.client.get(`/v1/webhooks/${name}`), 200);
    assert.equal(api.status, 'paused');
    assert.equal(reason, api.paused_reason);
    assert.equal((await page.textContent('#nav-webhooks-paused')).trim(), '1 paused');
    assert.ok(await page.locator('#nav-webhooks-paused').isVisible(), 'the nav tab flags the paused webhook');
    const alert = await page.textContent('#wh-paused');
    assert.ok(alert.includes(`A webhook is paused and delivers nothing until resumed: ${name} (${reason}).`), alert);
    await page.waitForSelector(`#wh-detail[data-status="paused"] #wh-detail-paused`, WAIT);
    assert.notEqual((await page.textContent('#wh-last-failure')).trim(), 'None.', 'the last failure is shown');
    await screenshot(page, 'webhooks-paused');

    // The flag is on the nav tab, so another panel shows it too.
    await page.click('#nav a[href="#live"]');
    assert.ok(await page.locator('#nav-webhooks-paused').isVisible());

    // Resume from the page: the held event is delivered (the 410 was not a delivery).
    answers.hook = 204;
    await page.click('#nav a[href="#webhooks"]');
    await page.click(`#wh-table tr[data-name="${name}"] button[data-action="resume"]`);
    await page.waitForSelector(`#wh-table tr[data-name="${name}"][data-status="active"]`, WAIT);
    await page.waitForSelector('#nav-webhooks-paused[hidden]', { ...WAIT, state: 'attached' });
    assert.ok(await page.locator('#wh-paused').isHidden(), 'no paused alert once resumed');
    await h.waitFor(() => receiver.attemptsOf(held.id).some((r) => r.status === 204), { timeout: 15000, interval: 50, what: 'the held event after resume' });
    assert.ok(receiver.attemptsOf(held.id).every((r) => signedWith(secret, r)));
    await cellIs(page, name, 'delivered', '5');
    assert.equal(h.assertStatus(await stack.client.get(`/v1/webhooks/${name}`), 200).status, 'active');
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});

test('a failing webhook\'s dead letters are in its detail, linked to the dead-letters tab', { timeout: 90000 }, async () => {
  const name = `failing-${h.rand(3)}`;
  const c = stack.client;
  h.assertStatus(await c.post('/v1/webhooks', { name, url: `${receiver.url}/fail`, filter: { types: ['wh.fail.*'] }, max_deliveries: 1 }), 201);
  const ev = await publish({ id: `wh-fail-${h.rand(3)}`, type: 'wh.fail.job', stream: 'wh.jobs', data: {} });
  const letters = async () => h.assertStatus(await c.get(`/v1/dead-letters?source=${encodeURIComponent(`webhook:${name}`)}`), 200).dead_letters;
  await h.waitFor(async () => (await letters()).length === 1, { timeout: 15000, interval: 100, what: 'the dead letter' });
  const [letter] = await letters();
  assert.equal(letter.event_id, ev.id);
  const id = String(letter.id);

  const { page, context, errors } = await openDashboard(browser, stack.site, { token: stack.sluice.adminToken, hash: `webhooks/${name}` });
  try {
    await page.waitForSelector(`#wh-detail[data-name="${name}"] #wh-letters tr[data-id="${id}"]`, WAIT);
    assert.match(await page.textContent(`#wh-letters tr[data-id="${id}"]`), new RegExp(ev.id));
    assert.match(await page.textContent('#wh-last-failure'), /500/);
    await cellIs(page, name, 'dead_letters', '1');
    assert.notEqual((await page.textContent(`#wh-table tr[data-name="${name}"] td[data-col="failed"]`)).trim(), '0');
    await screenshot(page, 'webhooks-dead-letters');

    await page.click('#wh-letters-link');
    await page.waitForSelector(`#dl-table tr[data-id="${id}"]`, WAIT);
    assert.equal(await page.inputValue('#dl-filters input[name="source"]'), `webhook:${name}`);
    assert.equal(await page.locator('#dl-table tr[data-id]').count(), 1, 'only this webhook\'s letters');
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});

// The receiver switches to the new secret as soon as the page shows it. Sluice's deliverer
// takes up a rotation within a moment, so a delivery in that moment may be signed with the old
// secret only: the receiver refuses it and the retry (50 ms later) carries both signatures.
test('rotating the secret shows the new one once and deliveries carry both signatures; delete asks first', { timeout: 90000 }, async () => {
  const name = `rotating-${h.rand(3)}`;
  const c = stack.client;
  const created = h.assertStatus(await c.post('/v1/webhooks', {
    name, url: `${receiver.url}/strict`, filter: { types: ['wh.rot.*'] }, max_deliveries: 100,
    retry: { strategy: 'fixed', base_delay_ms: 50, max_delay_ms: 50, jitter: false },
  }), 201);
  const old = created.secret;
  assert.match(old, SECRET_RE);
  answers.strict = old;

  const { page, context, errors } = await openDashboard(browser, stack.site, { token: stack.sluice.adminToken, hash: `webhooks/${name}` });
  try {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: stack.site.url });
    await page.waitForSelector(`#wh-detail[data-name="${name}"]`, WAIT);
    assert.equal(await page.locator('#wh-secret').isHidden(), true, 'no secret before a rotation');
    await page.click(`button[aria-label="Rotate the secret of webhook ${name}"]`);
    await page.waitForSelector(`#wh-secret[data-webhook="${name}"][data-how="rotated"]`, WAIT);
    const secret = (await page.textContent('#wh-secret-value')).trim();
    assert.match(secret, SECRET_RE);
    assert.notEqual(secret, old);
    await page.click('#wh-secret button:has-text("Copy")');
    await page.waitForFunction(() => /^Copied/.test(document.getElementById('wh-secret-hint').textContent), null, WAIT);
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);

    answers.strict = secret;
    const ev = await publish({ id: `wh-rot-${h.rand(3)}`, type: 'wh.rot.ated', stream: 'wh.rot', data: {} });
    await h.waitFor(() => receiver.attemptsOf(ev.id).some((x) => x.status === 204), { timeout: 15000, interval: 50, what: 'a delivery the new secret verifies' });
    const tries = receiver.attemptsOf(ev.id);
    const r = tries.find((x) => x.status === 204);
    assert.equal(r.headers['webhook-signature'].split(' ').length, 2, `two signatures: ${r.headers['webhook-signature']}`);
    assert.ok(signedWith(secret, r), 'signed with the new secret');
    assert.ok(tries.every((x) => signedWith(old, x)), 'every attempt verifies with the old secret too');

    await page.click('#wh-secret button[aria-label="Dismiss the secret"]');
    assert.ok(await page.locator('#wh-secret').isHidden());

    // Delete: the first click only arms the button.
    await page.click('#wh-delete');
    assert.equal((await page.textContent('#wh-delete')).trim(), 'Confirm delete');
    h.assertStatus(await c.get(`/v1/webhooks/${name}`), 200);
    await page.click('#wh-delete');
    await page.waitForSelector(`#wh-table tr[data-name="${name}"]`, { ...WAIT, state: 'detached' });
    assert.ok(await page.locator('#wh-detail').isHidden());
    assert.equal((await c.get(`/v1/webhooks/${name}`)).status, 404);
    assert.match(await page.textContent('#wh-live'), new RegExp(`Webhook ${name} deleted`));
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});
