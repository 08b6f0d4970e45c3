'use strict';
// Browser-test helpers: a real sluice (the integration harness), Debian's Chromium driven by
// playwright-core (never a downloaded browser), the dashboard's URL, screenshots kept under
// tests/browser/artifacts/, and a watch on uncaught page errors.

const fs = require('node:fs');
const path = require('node:path');
const assert = require('node:assert/strict');
const { chromium } = require('playwright-core');
const h = require('../../integration/lib/harness.js');
const { serveWeb } = require('./serve.js');
const { deletePrefix } = require('./redis.js');

const CHROMIUM = process.env.SLUICE_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.SLUICE_BROWSER_ARTIFACTS || path.resolve(__dirname, '..', 'artifacts');
const WEB = path.resolve(__dirname, '..', '..', '..', 'web');

// Flags for a root, offline machine: no sandbox (root), no GPU, and nothing that reaches
// for the network in the background (its connections are refused here).
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage'];

async function launch() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 60000 });
}

// One sluice for a test file, with its own Redis prefix; the dashboard's files come from
// this repository's web/ (SLUICE_WEB_DIR), so the binary under test serves them itself.
async function startStack(name) {
  const prefix = `tb_${h.rand(4)}:`;
  const sluice = await h.startSluice({
    name,
    env: { SLUICE_REDIS_PREFIX: prefix, SLUICE_WEB_DIR: process.env.SLUICE_WEB_DIR || WEB },
  });
  let site = { url: sluice.url, proxied: false, close: async () => {} };
  const served = await fetch(sluice.url + '/').then((r) => r.status).catch(() => 0);
  if (process.env.SLUICE_BROWSER_PROXY === '1' || served !== 200) {
    // Only for a sluice without the file server: web/ from disk, every other request
    // passed through to sluice unchanged. The "served at /" test still fails in that case.
    const s = await serveWeb(sluice.url);
    site = { url: s.url, proxied: true, close: s.close };
  }
  return {
    sluice, prefix, site, client: sluice.client(),
    async stop() {
      await site.close();
      await deletePrefix(prefix);
      await sluice.stop();
    },
    async cleanup() {
      try { await site.close(); } catch (_) { /* closed */ }
      await deletePrefix(prefix);
      await sluice.cleanup();
    },
  };
}

// A fresh browser context (its own localStorage) with the token stored, on the dashboard.
// Returns {page, context, errors}: errors collects uncaught exceptions and console errors
// other than failed HTTP answers (which the dashboard reports on the page itself).
async function openDashboard(browser, site, { token, hash = '', viewport = { width: 1400, height: 900 } } = {}) {
  const context = await browser.newContext({ viewport, colorScheme: 'light' });
  if (token !== undefined) {
    await context.addInitScript((t) => { try { localStorage.setItem('sluice.token', t); } catch (_) { /* ignore */ } }, token);
  }
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource|WebSocket connection to/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  await page.goto(site.url + '/' + (hash ? `#${hash}` : ''), { waitUntil: 'load' });
  return { page, context, errors };
}

async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

function assertNoPageErrors(errors) {
  assert.deepEqual(errors, [], `the page logged errors:\n${errors.join('\n')}`);
}

module.exports = { launch, startStack, openDashboard, screenshot, assertNoPageErrors, ARTIFACTS, WEB, h };
