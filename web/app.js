// app.js — the dashboard's entry point: token entry and checking, the header's instance
// line, and hash routing between the panels (#live, #rates, #groups, #dead-letters,
// #webhooks[/name], #projections, #schemas[/type], #event[/id]).
//
// The token is checked with GET /v1/info (ports, version; a 401 there means the token is
// wrong) and then GET /v1/streams, which needs a valid token with the read scope: /v1/info
// itself may be open to anyone. The WebSocket's close code 1008 says the same for the feed.

import { api, session, setToken, onUnauthorized, describeError } from './api.js';
import { $, say, fmtNum } from './dom.js';
import { Feed } from './feed.js';
import { Rates } from './rates.js';
import { Groups } from './groups.js';
import { DeadLetters } from './dead_letters.js';
import { Webhooks } from './webhooks.js';
import { Projections } from './projections.js';
import { Schemas } from './schemas.js';
import { EventView } from './event.js';

const INFO_MS = 5000;

const tokenForm = $('#token-form');
const tokenInput = $('#token');
const tokenStatus = $('#token-status');
const tokenError = $('#token-error');
const instanceEl = $('#instance');
const main = $('#main');

const panels = {
  // The REST check passed before the feed connects, so a 1008 here means the key lacks the
  // subscribe scope (or was revoked since): say so, and keep the other panels.
  live: new Feed($('#panel-live'), {
    onTokenRefused: () => {
      say(tokenStatus, '');
      say(tokenError, 'The live feed refused the token (WebSocket close 1008): it lacks the subscribe scope, or was revoked.', 'error');
    },
  }),
  rates: new Rates($('#panel-rates')),
  groups: new Groups($('#panel-groups')),
  'dead-letters': new DeadLetters($('#panel-dead-letters')),
  webhooks: new Webhooks($('#panel-webhooks')),
  projections: new Projections($('#panel-projections')),
  schemas: new Schemas($('#panel-schemas')),
  event: new EventView($('#panel-event')),
};

let connected = false;
let current = null;
let infoTimer = null;

// ------------------------------------------------------------ token

tokenInput.value = session.token;
tokenForm.addEventListener('submit', (e) => {
  e.preventDefault();
  setToken(tokenInput.value.trim());
  start();
});
$('#token-forget').addEventListener('click', () => {
  setToken('');
  tokenInput.value = '';
  stop();
  document.body.dataset.auth = 'none';
  say(tokenStatus, 'Token forgotten.', 'info');
  say(tokenError, '');
  tokenInput.focus();
});
$('#token-show').addEventListener('change', (e) => { tokenInput.type = e.target.checked ? 'text' : 'password'; });
onUnauthorized(() => refuse('The token was refused (401 unauthenticated): it is wrong or was revoked.'));

function refuse(message) {
  const wasConnected = connected;
  stop();
  document.body.dataset.auth = 'refused';
  say(tokenError, message, 'error');
  say(tokenStatus, '');
  tokenForm.classList.add('invalid');
  tokenInput.setAttribute('aria-invalid', 'true');
  if (wasConnected || document.activeElement === document.body) tokenInput.focus();
}

async function start() {
  stop();
  say(tokenError, '');
  tokenForm.classList.remove('invalid');
  tokenInput.removeAttribute('aria-invalid');
  document.body.dataset.auth = 'checking';
  say(tokenStatus, 'Checking the token …', 'info');
  let info;
  try {
    info = await api('/v1/info', { quiet401: true });
  } catch (e) {
    if (e.status === 401) return refuse('The token was refused (401 unauthenticated): check it and try again.');
    document.body.dataset.auth = 'error';
    return say(tokenStatus, `Cannot reach Sluice: ${describeError(e, 'instance information')}`, 'error');
  }
  session.info = info;
  showInstance(info);
  if (info.auth !== 'off' && !session.token) {
    document.body.dataset.auth = 'none';
    say(tokenStatus, 'Enter an API key or the admin token to start.', 'info');
    tokenInput.focus();
    return;
  }
  try {
    await api('/v1/streams', { quiet401: true });
  } catch (e) {
    if (e.status === 401) return refuse('The token was refused (401 unauthenticated): check it and try again.');
    if (e.status !== 403) {
      document.body.dataset.auth = 'error';
      return say(tokenStatus, describeError(e, 'streams'), 'error');
    }
    // 403: a valid token without the read scope; the feed may still work (subscribe).
  }
  connected = true;
  document.body.dataset.auth = 'ok';
  say(tokenStatus, info.auth === 'off' ? 'Authentication is off on this instance.' : 'Token accepted.', 'ok');
  setTimeout(() => { if (tokenStatus.dataset.kind === 'ok') say(tokenStatus, ''); }, 4000);
  panels.live.connect();
  panels.rates.start();
  panels.webhooks.start(); // flags a paused webhook on the nav tab
  infoTimer = setInterval(refreshInfo, INFO_MS);
  route();
}

function stop() {
  connected = false;
  clearInterval(infoTimer);
  panels.live.disconnect();
  panels.rates.stop();
  panels.webhooks.stop();
  for (const p of Object.values(panels)) if (p.hide) p.hide();
}

async function refreshInfo() {
  if (document.hidden) return;
  try {
    session.info = await api('/v1/info', { quiet401: true });
    showInstance(session.info);
  } catch (e) {
    instanceEl.textContent = `Sluice unreachable (${describeError(e)})`;
    instanceEl.dataset.kind = 'error';
  }
}

function showInstance(info) {
  const parts = [`Sluice ${info.version ?? ''}`.trim(), `head ${fmtNum(info.head_position)}`];
  if (info.relay_lag !== undefined) parts.push(`relay lag ${info.relay_lag === null ? 'unknown (Redis down)' : fmtNum(info.relay_lag)}`);
  if (info.ws_connections !== undefined) parts.push(`${fmtNum(info.ws_connections)} WebSocket${info.ws_connections === 1 ? '' : 's'}`);
  instanceEl.textContent = parts.join(' · ');
  instanceEl.dataset.kind = info.relay_lag === null ? 'error' : '';
}

// ------------------------------------------------------------ routing

function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const [pathPart, query = ''] = raw.split('?');
  const slash = pathPart.indexOf('/');
  const name = slash < 0 ? pathPart : pathPart.slice(0, slash);
  let arg = slash < 0 ? '' : pathPart.slice(slash + 1);
  try { arg = decodeURIComponent(arg); } catch (_) { /* keep it raw */ }
  return { name: panels[name] ? name : 'live', arg, params: new URLSearchParams(query) };
}

function route() {
  const { name, arg, params } = parseHash();
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === `#${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  for (const [key, p] of Object.entries(panels)) {
    const el = $(`#panel-${key}`);
    el.hidden = key !== name;
    if (key !== name && key === current && p.hide) p.hide();
  }
  const changed = current !== name;
  current = name;
  main.dataset.panel = name;
  if (!connected) return;
  const p = panels[name];
  if (p.show) p.show(name === 'dead-letters' ? params : arg);
  if (changed) {
    const heading = $(`#panel-${name} h2`);
    if (heading && document.activeElement && document.activeElement.closest('#nav')) heading.focus({ preventScroll: true });
  }
}

// A handle for the browser's console (and the browser tests): the panels and the session.
window.sluice = { panels, session };

window.addEventListener('hashchange', route);
route();
start();
