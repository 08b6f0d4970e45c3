// webhooks.js — the tenant's webhooks (GET /v1/webhooks): status (a paused webhook is
// flagged with its reason, here and on the nav tab), position, lag and delivery counts; one
// webhook's detail (GET /v1/webhooks/{name}) with its last failure and its dead letters
// (GET /v1/dead-letters?source=webhook:<name>); pause, resume, rotate-secret, delete
// (confirmed by a second click) and a small create form (POST /v1/webhooks: name, URL,
// streams, types, where conditions as JSON, ordering).
//
// A signing secret is in the answer of a create or a rotation only: it is shown once, in
// #wh-secret, until the operator dismisses it (refreshes leave it alone).
//
// While the token is accepted the list is also polled every WATCH_MS in the background, so
// a webhook paused by Sluice (410 Gone, or an endpoint failing everything for an hour) is
// flagged on the nav tab whatever panel is open. A token without the admin scope (403) or a
// build without the route (404) stops that polling until the next start.

import { api, seg, describeError } from './api.js';
import { h, $, say, table, fmtNum, timeEl, badge, fill, splitList, jsonView } from './dom.js';

const REFRESH_MS = 5000;  // while the panel is shown
const WATCH_MS = 30000;   // in the background, for the nav tab's "paused" flag
const LETTERS = 20;       // dead letters shown in a webhook's detail
const CONFIRM_MS = 5000;  // how long Delete waits for its confirming second click

export class Webhooks {
  constructor(root) {
    this.root = root;
    this.out = $('#wh-table', root);
    this.note = $('#wh-note', root);
    this.live = $('#wh-live', root);
    this.alert = $('#wh-paused', root);
    this.secretBox = $('#wh-secret', root);
    this.detail = $('#wh-detail', root);
    this.form = $('#wh-create-form', root);
    this.navFlag = $('#nav-webhooks-paused');
    this.hooks = [];
    this.selected = null;
    this.letters = null;
    this.confirming = null; // {name, until}: Delete was clicked once
    this.timer = null;
    this.watcher = null;
    this.busy = false;
    $('#wh-refresh', root).addEventListener('click', () => this.load());
    this.form.addEventListener('submit', (e) => { e.preventDefault(); this.create(); });
  }

  // app.js: the token was accepted (start) or is gone (stop).
  start() {
    clearInterval(this.watcher);
    this.watcher = setInterval(() => { if (!document.hidden && !this.timer) this.load({ quiet: true }); }, WATCH_MS);
    this.load({ quiet: true });
  }

  stop() {
    clearInterval(this.watcher);
    this.watcher = null;
    this.hide();
    // Nothing of this token's webhooks stays in the page.
    this.hooks = [];
    this.flagNav([]);
    this.dismissSecret();
    this.selected = null;
    this.letters = null;
    fill(this.out);
    fill(this.detail);
    this.detail.hidden = true;
  }

  // name: from #webhooks/<name>, opens that webhook's detail.
  show(name) {
    if (name) this.inspect(name);
    this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => { if (!document.hidden) this.load({ quiet: true }); }, REFRESH_MS);
  }

  hide() { clearInterval(this.timer); this.timer = null; }

  // quiet: a refresh (no "Loading …" line).
  async load({ quiet = false } = {}) {
    if (this.busy) return;
    this.busy = true;
    if (!quiet) say(this.note, 'Loading …', 'info');
    try {
      const body = await api('/v1/webhooks');
      this.hooks = (body && body.webhooks) || [];
      this.flagNav(this.hooks);
      this.render();
      say(this.note, `${fmtNum(this.hooks.length)} webhook${this.hooks.length === 1 ? '' : 's'}.`, 'info');
      if (this.selected && this.timer) this.refreshDetail();
    } catch (e) {
      if (e.status === 403 || e.status === 404) { clearInterval(this.watcher); this.watcher = null; }
      say(this.note, describeError(e, 'webhooks (admin scope)'), 'error');
    } finally {
      this.busy = false;
    }
  }

  // The nav tab says how many webhooks are paused; the panel names them and why.
  flagNav(hooks) {
    const paused = hooks.filter((w) => w.status === 'paused');
    if (this.navFlag) {
      this.navFlag.hidden = !paused.length;
      this.navFlag.textContent = paused.length ? `${paused.length} paused` : '';
    }
    if (!paused.length) return say(this.alert, '');
    fill(this.alert, paused.length === 1 ? 'A webhook is paused and delivers nothing until resumed: '
      : `${paused.length} webhooks are paused and deliver nothing until resumed: `,
      paused.map((w, i) => [i ? '; ' : '', h('strong', null, w.name), ` (${w.paused_reason || 'paused by an operator'})`]), '.');
    this.alert.dataset.kind = 'error';
    this.alert.hidden = false;
  }

  render() {
    const { el, tbody } = table(['Name', 'URL', 'Status', ['Position', 'num'], ['Lag', 'num'], ['Delivered', 'num'],
      ['Failed', 'num'], ['Retrying', 'num'], ['Dead letters', 'num'], 'Last failure', 'Actions'],
    { label: 'Webhooks', className: 'webhooks' });
    for (const w of this.hooks) tbody.append(this.row(w));
    if (!this.hooks.length) {
      tbody.append(h('tr', null, h('td', { colspan: 11, class: 'empty' }, 'No webhooks. Create one below, or with POST /v1/webhooks.')));
    }
    fill(this.out, el);
  }

  row(w) {
    const paused = w.status === 'paused';
    const dlq = Number(w.dead_letters) || 0;
    const lf = w.last_failure;
    return h('tr', { dataset: { name: w.name, status: w.status }, class: [paused ? 'paused' : '', this.selected === w.name ? 'selected' : ''].join(' ').trim() },
      h('td', { class: 'name' }, h('a', { href: `#webhooks/${encodeURIComponent(w.name)}`, title: 'Show this webhook' }, h('strong', null, w.name))),
      h('td', { class: 'clip mono', title: w.url }, w.url),
      h('td', { 'data-col': 'status' }, status(w)),
      h('td', { class: 'num', 'data-col': 'position' }, fmtNum(w.position)),
      h('td', { class: `num${w.lag ? ' warn' : ''}`, 'data-col': 'lag' }, fmtNum(w.lag)),
      h('td', { class: 'num', 'data-col': 'delivered' }, fmtNum(w.delivered)),
      h('td', { class: `num${w.failed ? ' bad' : ''}`, 'data-col': 'failed' }, fmtNum(w.failed)),
      h('td', { class: `num${w.retrying ? ' warn' : ''}`, 'data-col': 'retrying' }, fmtNum(w.retrying)),
      h('td', { class: 'num', 'data-col': 'dead_letters' }, dlq
        ? h('a', { href: lettersLink(w.name), class: 'bad', title: 'Show these dead letters' }, fmtNum(dlq))
        : '0'),
      h('td', { class: 'clip', 'data-col': 'last_failure', title: lf ? lf.error : '' },
        lf ? [timeEl(lf.time), ' ', h('span', { class: 'bad' }, lf.error ?? '')] : '—'),
      h('td', { class: 'actions' }, this.toggleButton(w),
        h('button', { type: 'button', 'aria-label': `Inspect webhook ${w.name}`, onclick: () => this.inspect(w.name) }, 'Inspect')));
  }

  toggleButton(w) {
    const paused = w.status === 'paused';
    return h('button', {
      type: 'button', class: paused ? 'primary' : '', dataset: { action: paused ? 'resume' : 'pause' },
      'aria-label': `${paused ? 'Resume' : 'Pause'} webhook ${w.name}`,
      onclick: () => this.act(w.name, paused ? 'resume' : 'pause'),
    }, paused ? 'Resume' : 'Pause');
  }

  // Replaces the webhook in the list, its row and its detail.
  update(w) {
    const i = this.hooks.findIndex((x) => x.name === w.name);
    if (i >= 0) this.hooks[i] = w; else this.hooks.push(w);
    this.flagNav(this.hooks);
    this.render();
    if (this.selected === w.name) this.renderDetail(w, this.letters);
  }

  async act(name, action) {
    try {
      const w = await api(`/v1/webhooks/${seg(name)}/${action}`, { method: 'POST' });
      this.update(w);
      say(this.live, action === 'pause' ? `Webhook ${name} paused: nothing is delivered until it is resumed.`
        : `Webhook ${name} resumed: delivery goes on from position ${fmtNum(w.position)}.`, 'ok');
    } catch (e) {
      say(this.live, `${action === 'pause' ? 'Pause' : 'Resume'} of ${name} failed: ${describeError(e, 'webhooks')}`, 'error');
    }
  }

  async rotate(name) {
    try {
      const res = await api(`/v1/webhooks/${seg(name)}/rotate-secret`, { method: 'POST' });
      this.showSecret(res.name || name, res.secret, 'rotated');
      say(this.live, `Webhook ${name} has a new secret. For 24 h every delivery carries signatures with both the new and the old one.`, 'ok');
    } catch (e) {
      say(this.live, `Rotating the secret of ${name} failed: ${describeError(e, 'webhooks')}`, 'error');
    }
  }

  // The first click arms the button for CONFIRM_MS (kept across refreshes); the second deletes.
  async remove(name) {
    if (!this.armed(name)) {
      this.confirming = { name, until: Date.now() + CONFIRM_MS };
      this.paintDelete();
      setTimeout(() => this.paintDelete(), CONFIRM_MS + 50);
      return;
    }
    this.confirming = null;
    try {
      await api(`/v1/webhooks/${seg(name)}`, { method: 'DELETE' });
      this.hooks = this.hooks.filter((w) => w.name !== name);
      if (this.selected === name) this.close();
      if (this.secretBox.dataset.webhook === name) this.dismissSecret();
      this.flagNav(this.hooks);
      this.render();
      say(this.live, `Webhook ${name} deleted.`, 'ok');
    } catch (e) {
      say(this.live, `Delete of ${name} failed: ${describeError(e, 'webhooks')}`, 'error');
    }
  }

  async create() {
    const f = this.form.elements;
    const body = { name: f.name.value.trim(), url: f.url.value.trim(), ordering: f.ordering.value || 'none' };
    const filter = {};
    const streams = splitList(f.streams.value);
    const types = splitList(f.types.value);
    if (streams.length) filter.streams = streams;
    if (types.length) filter.types = types;
    const whereText = f.where.value.trim();
    if (whereText) {
      // Checked here only for being JSON; Sluice checks the conditions (400 invalid_filter).
      try {
        filter.where = JSON.parse(whereText);
      } catch (e) {
        say(this.live, `Where is not JSON: ${e.message}. Example: [{"path":"/data/total","op":"gt","value":100}]`, 'error');
        f.where.focus();
        return;
      }
    }
    if (Object.keys(filter).length) body.filter = filter;
    try {
      const w = await api('/v1/webhooks', { method: 'POST', body });
      const { secret, ...hook } = w;
      this.showSecret(w.name, secret, 'created');
      this.form.reset();
      say(this.live, `Webhook ${w.name} created: events from now on are delivered to ${w.url}.`, 'ok');
      this.update(hook);
      this.inspect(w.name, { scroll: false });
    } catch (e) {
      say(this.live, `Creating ${body.name || 'the webhook'} failed: ${describeError(e, 'webhooks')}`, 'error');
    }
  }

  // ------------------------------------------------------------ the one-time secret

  showSecret(name, secret, how) {
    const code = h('code', { id: 'wh-secret-value', class: 'secret-value', tabindex: '0' }, secret ?? '');
    const hint = h('span', { class: 'muted small', id: 'wh-secret-hint' }, 'It is not shown again: copy it into your receiver now.');
    const copy = h('button', { type: 'button', onclick: () => this.copySecret(code, hint) }, 'Copy');
    fill(this.secretBox,
      h('p', null, h('strong', null, how === 'rotated' ? `New signing secret of ${name}:` : `Signing secret of ${name}:`), code, copy,
        h('button', { type: 'button', 'aria-label': 'Dismiss the secret', onclick: () => this.dismissSecret() }, 'Dismiss')),
      h('p', null, hint));
    this.secretBox.dataset.webhook = name;
    this.secretBox.dataset.how = how;
    this.secretBox.hidden = false;
    this.secretBox.scrollIntoView({ block: 'nearest' });
  }

  async copySecret(code, hint) {
    try {
      await navigator.clipboard.writeText(code.textContent);
      hint.textContent = 'Copied to the clipboard. It is not shown again.';
    } catch (_) {
      // No clipboard permission (or not a secure context): select it for Ctrl+C / ⌘C.
      const range = document.createRange();
      range.selectNodeContents(code);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      hint.textContent = 'Selected: press Ctrl+C (⌘C) to copy it. It is not shown again.';
    }
  }

  dismissSecret() {
    fill(this.secretBox);
    delete this.secretBox.dataset.webhook;
    delete this.secretBox.dataset.how;
    this.secretBox.hidden = true;
  }

  // ------------------------------------------------------------ detail

  async inspect(name, { scroll = true } = {}) {
    this.selected = name;
    this.letters = null;
    for (const tr of this.out.querySelectorAll('tr.selected')) tr.classList.remove('selected');
    const tr = this.out.querySelector(`tr[data-name="${CSS.escape(name)}"]`);
    if (tr) tr.classList.add('selected');
    await this.refreshDetail();
    if (scroll && this.selected === name) this.detail.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  }

  async refreshDetail() {
    const name = this.selected;
    const letters = new URLSearchParams({ source: `webhook:${name}`, limit: String(LETTERS) });
    const [w, dl] = await Promise.allSettled([
      api(`/v1/webhooks/${seg(name)}`),
      api(`/v1/dead-letters?${letters}`),
    ]);
    if (this.selected !== name) return; // another one was opened meanwhile
    if (w.status === 'rejected') {
      this.detail.hidden = false;
      fill(this.detail, h('p', { class: 'error' }, describeError(w.reason, `webhook ${name}`)));
      return;
    }
    this.letters = dl.status === 'fulfilled' ? dl.value : { error: dl.reason };
    this.renderDetail(w.value, this.letters);
  }

  renderDetail(w, letters) {
    const f = w.filter || {};
    const r = w.retry || {};
    const lf = w.last_failure;
    const remove = h('button', { type: 'button', class: 'danger', id: 'wh-delete', 'aria-label': `Delete webhook ${w.name}`, onclick: () => this.remove(w.name) });
    this.detail.hidden = false;
    this.detail.dataset.name = w.name;
    this.detail.dataset.status = w.status;
    fill(this.detail,
      h('header', { class: 'detail-head' },
        h('h3', { tabindex: '-1' }, `Webhook ${w.name} `, status(w)),
        h('div', { class: 'actions' }, this.toggleButton(w),
          h('button', { type: 'button', 'aria-label': `Rotate the secret of webhook ${w.name}`, onclick: () => this.rotate(w.name) }, 'Rotate secret'),
          remove,
          h('button', { type: 'button', 'aria-label': 'Close the webhook', onclick: () => this.close() }, 'Close'))),
      w.status === 'paused'
        ? h('p', { class: 'notice', 'data-kind': 'error', id: 'wh-detail-paused' },
          `This webhook is paused (${w.paused_reason || 'by an operator'}). Nothing is delivered until it is resumed; delivery then goes on from position ${fmtNum(w.position)}.`)
        : null,
      h('dl', { class: 'facts' },
        fact('URL', h('span', { class: 'mono' }, w.url)),
        fact('Filter', filterText(f)),
        fact('Ordering', w.ordering === 'key' ? 'key: one (stream, key) at a time, in position order' : 'none'),
        fact('Max deliveries', fmtNum(w.max_deliveries)),
        fact('Retry', r.strategy ? `${r.strategy}, ${fmtNum(r.base_delay_ms)} ms … ${fmtNum(r.max_delay_ms)} ms${r.jitter ? ', jitter' : ''}` : '—'),
        fact('Timeout', w.timeout_ms ? `${fmtNum(w.timeout_ms)} ms` : '—'),
        fact('Rate limit', w.max_per_second ? `${fmtNum(w.max_per_second)}/s` : 'none'),
        // Header values may be credentials for the receiver: names only.
        fact('Headers', Object.keys(w.headers || {}).join(', ') || 'none'),
        fact('Position', fmtNum(w.position)), fact('Lag', fmtNum(w.lag)),
        fact('Delivered', fmtNum(w.delivered)), fact('Failed', fmtNum(w.failed)),
        fact('Retrying', fmtNum(w.retrying)), fact('Dead letters', fmtNum(w.dead_letters)),
        fact('Last success', timeEl(w.last_success_at)), fact('Next attempt', w.next_attempt_at ? timeEl(w.next_attempt_at) : '—'),
        fact('Created', timeEl(w.created_at))),
      (f.where && f.where.length) ? [h('h4', null, 'Where'), jsonView(f.where, { label: 'Filter conditions' })] : null,
      h('h4', null, 'Last failure'),
      lf
        ? h('p', { id: 'wh-last-failure' }, timeEl(lf.time), h('span', { class: 'muted' }, ` position ${fmtNum(lf.position)}${lf.attempt ? `, attempt ${fmtNum(lf.attempt)}` : ''} `), h('span', { class: 'bad' }, lf.error ?? ''))
        : h('p', { class: 'muted', id: 'wh-last-failure' }, 'None.'),
      h('h4', null, 'Dead letters'),
      this.lettersView(w.name, letters));
    this.paintDelete();
  }

  armed(name) {
    return !!this.confirming && this.confirming.name === name && Date.now() < this.confirming.until;
  }

  // The detail's Delete button: "Confirm delete" while armed.
  paintDelete() {
    const button = $('#wh-delete', this.detail);
    if (!button) return;
    const armed = this.armed(this.detail.dataset.name);
    button.dataset.confirm = armed ? 'yes' : '';
    button.textContent = armed ? 'Confirm delete' : 'Delete';
  }

  lettersView(name, letters) {
    const link = h('a', { href: lettersLink(name), id: 'wh-letters-link' }, `Open webhook:${name} in the dead-letters tab`);
    if (!letters) return h('p', { class: 'muted' }, 'Loading …');
    if (letters.error) return h('p', { class: 'error' }, describeError(letters.error, 'dead letters (admin scope)'));
    const list = letters.dead_letters || [];
    if (!list.length) return h('p', { class: 'muted', id: 'wh-letters' }, 'No open dead letters. ', link);
    const { el, tbody } = table(['ID', 'Status', 'Stream', 'Type', 'Event', ['Deliveries', 'num'], 'Last error', 'Last failed'],
      { label: `Dead letters of webhook ${name}`, className: 'dl' });
    for (const d of list) {
      const errors = d.errors || [];
      const last = errors.length ? errors[errors.length - 1].error : '';
      tbody.append(h('tr', { dataset: { id: String(d.id) } },
        h('td', { class: 'num' }, String(d.id)), h('td', null, badge(d.status)), h('td', null, d.stream ?? ''),
        h('td', null, h('code', null, d.type ?? '')),
        h('td', null, d.event_id ? h('a', { href: `#event/${encodeURIComponent(d.event_id)}`, class: 'mono' }, d.event_id) : '—'),
        h('td', { class: 'num' }, fmtNum(d.delivery_count)),
        h('td', { class: 'clip', title: last }, last), h('td', null, timeEl(d.last_failed_at))));
    }
    return [h('div', { class: 'table-wrap', id: 'wh-letters' }, el),
      h('p', { class: 'small' }, letters.has_more ? `The ${LETTERS} oldest shown. ` : '', link, ': reprocess or discard them there.')];
  }

  close() {
    this.selected = null;
    this.letters = null;
    this.detail.hidden = true;
    fill(this.detail);
    for (const tr of this.out.querySelectorAll('tr.selected')) tr.classList.remove('selected');
    if (location.hash.startsWith('#webhooks/')) history.replaceState(null, '', '#webhooks');
  }
}

// "active", or "paused" with its reason beside it.
function status(w) {
  if (w.status !== 'paused') return badge(w.status ?? 'unknown');
  return [badge('paused'), ' ', h('span', { class: 'warn small', 'data-col': 'paused_reason' }, w.paused_reason || 'by an operator')];
}

function lettersLink(name) {
  return `#dead-letters?${new URLSearchParams({ source: `webhook:${name}` })}`;
}

function filterText(f) {
  const parts = [];
  if (f.streams && f.streams.length) parts.push(`streams ${f.streams.join(', ')}`);
  if (f.types && f.types.length) parts.push(`types ${f.types.join(', ')}`);
  if (f.where && f.where.length) parts.push(`${f.where.length} condition${f.where.length === 1 ? '' : 's'} (below)`);
  return parts.join('; ') || 'every event';
}

function fact(name, value) {
  return [h('dt', null, name), h('dd', null, value ?? '—')];
}
