'use strict';
// Token entry on the dashboard: a wrong token shows a clear error (401), a right one is
// kept in localStorage across reloads until Forget, a key without the subscribe scope is
// told so when the WebSocket closes with 1008, and a key revoked while the page is open
// is reported at the next request.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { launch, startStack, openDashboard, screenshot, assertNoPageErrors, h } = require('./lib/browser.js');

const WAIT = { timeout: 15000 };

let stack;
let browser;

before(async () => {
  stack = await startStack('dashboard-auth');
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
});

test('a wrong token shows an error; the right one is kept until Forget', { timeout: 60000 }, async () => {
  const { page, context, errors } = await openDashboard(browser, stack.site);
  try {
    await page.waitForSelector('body[data-auth="none"]', WAIT);
    assert.ok(await page.isVisible('#gate'), 'asks for a token');

    await page.fill('#token', 'sk_this_is_not_a_key');
    await page.click('#token-form button[type="submit"]');
    await page.waitForSelector('body[data-auth="refused"]', WAIT);
    const alert = page.locator('#token-error');
    assert.ok(await alert.isVisible(), 'the error is shown');
    assert.equal(await alert.getAttribute('role'), 'alert');
    assert.match(await alert.textContent(), /token was refused \(401 unauthenticated\)/);
    assert.equal(await page.getAttribute('#token', 'aria-invalid'), 'true');
    assert.ok(await page.isVisible('#gate'), 'no panel is shown with a wrong token');
    assert.ok(await page.isHidden('#panel-live'), 'the feed is hidden');
    await screenshot(page, 'wrong-token');

    await page.fill('#token', stack.sluice.adminToken);
    await page.click('#token-form button[type="submit"]');
    await page.waitForSelector('body[data-auth="ok"]', WAIT);
    assert.ok(await page.isHidden('#token-error'), 'the error is gone');
    await page.waitForSelector('#panel-live[data-feed-state="live"]', WAIT);

    // Kept in localStorage: a reload connects without asking.
    await page.reload();
    await page.waitForSelector('body[data-auth="ok"]', WAIT);
    assert.equal(await page.evaluate(() => localStorage.getItem('sluice.token')), stack.sluice.adminToken);

    await page.click('#token-forget');
    await page.waitForSelector('body[data-auth]:not([data-auth="ok"])', WAIT);
    assert.equal(await page.evaluate(() => localStorage.getItem('sluice.token')), null);
    assert.equal(await page.inputValue('#token'), '');
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});

test('a key without the subscribe scope: the feed says the WebSocket refused it (1008)', { timeout: 60000 }, async () => {
  const key = await h.createKey(stack.sluice, 'default', ['read'], 'dashboard read-only');
  const { page, context, errors } = await openDashboard(browser, stack.site, { token: key.token });
  try {
    await page.waitForSelector('#panel-live[data-feed-state="refused"]', WAIT);
    const msg = page.locator('#feed-error');
    assert.ok(await msg.isVisible());
    assert.match(await msg.textContent(), /closed with 1008/);
    assert.match(await page.textContent('#token-error'), /live feed refused the token \(WebSocket close 1008\)/);
    // The key may read: the other panels stay.
    assert.equal(await page.getAttribute('body', 'data-auth'), 'ok');
    await page.click('#nav a[href="#schemas"]');
    await page.waitForSelector('#schema-list li a', WAIT);
    await screenshot(page, 'feed-refused-1008');
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});

test('a key revoked while the page is open is reported at the next request', { timeout: 60000 }, async () => {
  const key = await h.createKey(stack.sluice, 'default', ['read', 'subscribe'], 'dashboard soon revoked');
  const { page, context, errors } = await openDashboard(browser, stack.site, { token: key.token, hash: 'rates' });
  try {
    await page.waitForSelector('body[data-auth="ok"]', WAIT);
    h.assertStatus(await stack.client.del(`/v1/keys/${key.id}`), 204);
    // The rates panel reads GET /v1/streams every 5 s: the next read gets 401.
    await page.waitForSelector('body[data-auth="refused"]', WAIT);
    assert.match(await page.textContent('#token-error'), /refused \(401 unauthenticated\)/);
    assertNoPageErrors(errors);
  } finally {
    await context.close();
  }
});
