// dead_letters.js — dead letters: list with filters (GET /v1/dead-letters), inspect one
// (GET /v1/dead-letters/{id}: the event, every error and the history), reprocess
// (POST …/{id}/reprocess) and discard (POST …/{id}/discard, confirmed by a second click).
// Every answer updates the row in place, so the operator sees the status change.
// A batch redrive (POST /v1/dead-letters/reprocess) starts with a dry run that shows what
// would be reprocessed; "Reprocess" then sends exactly those letters (their ids, with the
// same filter), so nothing the operator did not see is redriven.

import { api, seg, describeError } from './api.js';
import { h, $, say, table, fmtNum, timeEl, jsonView, badge, fill, splitList } from './dom.js';

const REFRESH_MS = 10000;
const REDRIVE_LIMIT = 1000; // most letters one dry run shows (the form's Limit)

export class DeadLetters {
  constructor(root) {
    this.root = root;
    this.form = $('#dl-filters', root);
    this.out = $('#dl-table', root);
    this.note = $('#dl-note', root);
    this.live = $('#dl-live', root);
    this.detail = $('#dl-detail', root);
    this.more = $('#dl-more', root);
    this.letters = [];
    this.next = null;
    this.selected = null;
    this.timer = null;
    this.form.addEventListener('submit', (e) => { e.preventDefault(); this.load(); });
    this.more.addEventListener('click', () => this.load({ append: true }));
    this.redrive = new Redrive(root, () => this.load({ quiet: true }));
  }

  // params: {stream, group} from a link such as #dead-letters?stream=s&group=g
  show(params) {
    if (params && [...params.keys()].length) {
      for (const name of ['stream', 'group', 'type', 'status', 'source', 'event_id']) {
        if (this.form.elements[name]) this.form.elements[name].value = params.get(name) || '';
      }
      this.redrive.prefill(params);
    }
    this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => {
      // Refresh quietly while only the first page is shown.
      if (!document.hidden && !this.paged) this.load({ quiet: true });
    }, REFRESH_MS);
  }

  hide() { clearInterval(this.timer); this.timer = null; }

  query(after) {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(this.form)) if (String(v).trim()) q.set(k, String(v).trim());
    q.set('limit', '100');
    if (after !== null && after !== undefined) q.set('after', String(after));
    return q;
  }

  async load({ append = false, quiet = false } = {}) {
    if (!quiet) say(this.note, 'Loading …', 'info');
    let body;
    try {
      body = await api(`/v1/dead-letters?${this.query(append ? this.next : null)}`);
    } catch (e) {
      say(this.note, describeError(e, 'dead letters (admin scope)'), 'error');
      return;
    }
    const list = (body && body.dead_letters) || [];
    this.letters = append ? this.letters.concat(list) : list;
    this.paged = append;
    this.next = body && body.has_more ? body.next_after : null;
    this.more.hidden = this.next === null;
    this.render();
    say(this.note, `${fmtNum(this.letters.length)} dead letter${this.letters.length === 1 ? '' : 's'}${this.next !== null ? ' (more below)' : ''}.`, 'info');
    if (this.selected && !quiet) this.inspect(this.selected, { scroll: false });
  }

  render() {
    const { el, tbody } = table(['ID', 'Status', 'Stream', 'Group', 'Type', 'Event', ['Deliveries', 'num'],
      'Last error', 'Last failed', 'Actions'], { label: 'Dead letters', className: 'dl' });
    for (const d of this.letters) tbody.append(this.row(d));
    if (!this.letters.length) tbody.append(h('tr', null, h('td', { colspan: 10, class: 'empty' }, 'No dead letters match.')));
    fill(this.out, el);
  }

  row(d) {
    const errors = d.errors || [];
    const last = errors.length ? errors[errors.length - 1].error : '';
    const id = String(d.id);
    return h('tr', { dataset: { id, status: d.status }, class: this.selected === id ? 'selected' : '' },
      h('td', { class: 'num' }, id),
      h('td', { 'data-col': 'status' }, badge(d.status)),
      h('td', null, d.stream ?? ''),
      // A projection's (or webhook's) letter has no group: its source stands there.
      h('td', null, d.group ?? d.source ?? '—'),
      h('td', null, h('code', null, d.type ?? '')),
      h('td', null, d.event_id ? h('a', { href: `#event/${encodeURIComponent(d.event_id)}`, class: 'mono', title: d.event_id }, shortId(d.event_id)) : '—'),
      h('td', { class: 'num' }, fmtNum(d.delivery_count)),
      h('td', { class: 'clip', title: last }, last),
      h('td', null, timeEl(d.last_failed_at)),
      h('td', { class: 'actions' }, this.actions(d)));
  }

  actions(d) {
    const id = String(d.id);
    const open = d.status === 'open';
    const discard = h('button', { type: 'button', class: 'danger', disabled: !open, 'aria-label': `Discard dead letter ${id}` }, 'Discard');
    discard.addEventListener('click', () => this.discard(id, discard));
    return [
      h('button', { type: 'button', 'aria-label': `Inspect dead letter ${id}`, onclick: () => this.inspect(id) }, 'Inspect'),
      h('button', {
        type: 'button', class: 'primary', disabled: !open,
        title: sourceKind(d) === 'projection' ? 'Reapply the event to the projection\'s current state' : undefined,
        'aria-label': `Reprocess dead letter ${id}`, onclick: () => this.reprocess(id),
      }, 'Reprocess'),
      discard,
    ];
  }

  // Replaces the letter everywhere it is shown.
  update(d) {
    const id = String(d.id);
    const i = this.letters.findIndex((x) => String(x.id) === id);
    if (i >= 0) this.letters[i] = { ...this.letters[i], ...d };
    const tr = this.out.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
    if (tr && i >= 0) tr.replaceWith(this.row(this.letters[i]));
    if (this.selected === id) this.renderDetail(d);
  }

  async reprocess(id) {
    try {
      const d = await api(`/v1/dead-letters/${seg(id)}/reprocess`, { method: 'POST' });
      this.update(d);
      say(this.live, reprocessed(d), d.status === 'open' ? 'error' : 'ok');
    } catch (e) {
      say(this.live, `Reprocess of ${id} failed: ${describeError(e, 'dead letters')}`, 'error');
    }
  }

  async discard(id, button) {
    if (button && button.dataset.confirm !== 'yes') {
      button.dataset.confirm = 'yes';
      button.textContent = 'Confirm discard';
      setTimeout(() => {
        if (button.isConnected) { button.dataset.confirm = ''; button.textContent = 'Discard'; }
      }, 5000);
      return;
    }
    try {
      const d = await api(`/v1/dead-letters/${seg(id)}/discard`, { method: 'POST' });
      this.update(d);
      say(this.live, `Dead letter ${id} discarded.`, 'ok');
    } catch (e) {
      say(this.live, `Discard of ${id} failed: ${describeError(e, 'dead letters')}`, 'error');
    }
  }

  async inspect(id, { scroll = true } = {}) {
    this.selected = String(id);
    for (const tr of this.out.querySelectorAll('tr.selected')) tr.classList.remove('selected');
    const tr = this.out.querySelector(`tr[data-id="${CSS.escape(this.selected)}"]`);
    if (tr) tr.classList.add('selected');
    try {
      const d = await api(`/v1/dead-letters/${seg(id)}`);
      this.renderDetail(d);
      if (scroll) this.detail.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    } catch (e) {
      this.detail.hidden = false;
      fill(this.detail, h('p', { class: 'error' }, describeError(e, 'this dead letter')));
    }
  }

  renderDetail(d) {
    const id = String(d.id);
    const errors = d.errors || [];
    const history = d.history || [];
    this.detail.hidden = false;
    fill(this.detail, 
      h('header', { class: 'detail-head' },
        h('h3', { tabindex: '-1' }, `Dead letter ${id} `, badge(d.status)),
        h('div', { class: 'actions' }, this.actions(d).slice(1),
          h('button', { type: 'button', 'aria-label': 'Close the dead letter', onclick: () => this.close() }, 'Close'))),
      h('dl', { class: 'facts' },
        fact('Source', d.source), fact('Stream', d.stream), fact('Group', d.group ?? '—'),
        fact('Consumer', d.consumer ?? '—'), fact('Type', d.type),
        fact('Event', d.event_id ? h('a', { href: `#event/${encodeURIComponent(d.event_id)}` }, d.event_id) : '—'),
        fact('Position', fmtNum(d.event_position)), fact('Deliveries', fmtNum(d.delivery_count)),
        fact('First failed', timeEl(d.first_failed_at)), fact('Last failed', timeEl(d.last_failed_at))),
      h('h4', null, `Errors (${errors.length})`),
      h('ol', { class: 'timeline' }, errors.map((e) => h('li', null, timeEl(e.time),
        h('span', { class: 'muted' }, ` delivery ${e.delivery ?? '?'}${e.consumer ? ` · ${e.consumer}` : ''} `),
        h('span', { class: 'bad' }, e.error ?? '')))),
      h('h4', null, 'History'),
      h('ol', { class: 'timeline' }, history.map((x) => h('li', null, timeEl(x.time), ' ', badge(x.status), ` ${x.note ?? ''}`))),
      h('h4', null, 'Event'),
      d.event ? jsonView(d.event, { label: `Event ${d.event_id}` }) : h('p', { class: 'muted' }, 'The event is no longer in the store.'));
  }

  close() {
    this.selected = null;
    this.detail.hidden = true;
    for (const tr of this.out.querySelectorAll('tr.selected')) tr.classList.remove('selected');
  }
}

// The first and last characters of a long id: enough to tell rows apart.
function shortId(id) {
  const s = String(id);
  return s.length > 16 ? `${s.slice(0, 8)}…${s.slice(-6)}` : s;
}

function fact(name, value) {
  return [h('dt', null, name), h('dd', null, value ?? '—')];
}

// The kind of a letter's source: group, projection or webhook.
function sourceKind(d) {
  return String(d.source || '').split(':')[0];
}

// What became of a reprocessed letter, in a sentence.
function reprocessed(d) {
  const errors = d.errors || [];
  const name = String(d.source || '').split(':').slice(1).join(':');
  if (sourceKind(d) === 'projection') {
    return d.status === 'open'
      ? `Dead letter ${d.id} failed again in projection ${name}: ${errors.length ? errors[errors.length - 1].error : ''}`
      : `Dead letter ${d.id} is now ${d.status}: its event was reapplied to projection ${name}.`;
  }
  return `Dead letter ${d.id} is now ${d.status}: its event goes back to group ${d.group ?? '—'}.`;
}

// ---------------------------------------------------------------- batch redrive

// The redrive form: a dry run shows what would be reprocessed; "Reprocess" is enabled only
// for the dry run on screen and is disabled again as soon as the selection fields change.
class Redrive {
  constructor(root, onDone) {
    this.form = $('#dl-redrive-form', root);
    this.go = $('#dl-redrive-go', root);
    this.out = $('#dl-redrive-result', root);
    this.details = $('#dl-redrive', root);
    this.onDone = onDone;
    this.plan = null; // {body, ids} of the dry run on screen
    this.form.addEventListener('submit', (e) => { e.preventDefault(); this.dryRun(); });
    this.form.addEventListener('input', (e) => { if (e.target.name !== 'max_per_second') this.forget(); });
    this.go.addEventListener('click', () => this.run());
  }

  // #dead-letters?stream=s&group=g: the same selection for a redrive.
  prefill(params) {
    for (const name of ['stream', 'group', 'source']) this.form.elements[name].value = params.get(name) || '';
    this.forget();
  }

  forget() {
    this.plan = null;
    this.go.disabled = true;
    this.go.textContent = 'Reprocess';
  }

  // The selection as a request body, or throws with what is wrong.
  selection() {
    const f = this.form.elements;
    const body = {};
    for (const k of ['stream', 'group', 'source']) if (f[k].value.trim()) body[k] = f[k].value.trim();
    const age = f.max_age_s.value.trim();
    if (age) {
      const n = Number(age);
      if (!(n > 0)) throw new Error('"Failed within" is a number of seconds above 0');
      body.max_age_ms = Math.round(n * 1000);
    }
    const events = splitList(f.event_ids.value);
    if (events.length) body.event_ids = events;
    const limit = Number(f.limit.value || REDRIVE_LIMIT);
    if (!Number.isInteger(limit) || limit < 1 || limit > REDRIVE_LIMIT) throw new Error(`Limit is a whole number from 1 to ${REDRIVE_LIMIT}`);
    body.limit = limit;
    return body;
  }

  async dryRun() {
    this.forget();
    let body;
    try {
      body = this.selection();
    } catch (e) {
      fill(this.out, h('p', { class: 'notice', 'data-kind': 'error' }, e.message));
      return;
    }
    fill(this.out, h('p', { class: 'muted' }, 'Dry run …'));
    let res;
    try {
      res = await api('/v1/dead-letters/reprocess', { method: 'POST', body: { ...body, dry_run: true } });
    } catch (e) {
      fill(this.out, h('p', { class: 'notice', 'data-kind': 'error' }, `Dry run failed: ${describeError(e, 'dead letters')}`));
      return;
    }
    const list = res.dead_letters || [];
    const { el, tbody } = table(['ID', 'Source', 'Stream', 'Type', 'Event', 'Last error'], { label: 'Dead letters the redrive would reprocess', className: 'dl' });
    for (const d of list) {
      const errors = d.errors || [];
      tbody.append(h('tr', { dataset: { id: String(d.id) } },
        h('td', { class: 'num' }, String(d.id)), h('td', null, d.source ?? ''), h('td', null, d.stream ?? ''),
        h('td', null, h('code', null, d.type ?? '')), h('td', { class: 'mono' }, d.event_id ?? ''),
        h('td', { class: 'clip' }, errors.length ? errors[errors.length - 1].error : '')));
    }
    const summary = h('p', { class: 'status', 'data-kind': res.count ? 'ok' : '', id: 'dl-redrive-summary', dataset: { count: String(res.count), hasMore: String(!!res.has_more) } },
      res.count ? `Dry run: ${fmtNum(res.count)} dead letter${res.count === 1 ? '' : 's'} would be reprocessed.` : 'Dry run: no open dead letter matches.',
      res.has_more ? ` More match than this run takes (limit ${fmtNum(body.limit)}): reprocess these, then run again for the next.` : '');
    fill(this.out, summary, list.length ? h('div', { class: 'table-wrap' }, el) : null);
    if (!res.count) return;
    this.plan = { body, ids: list.map((d) => String(d.id)) };
    this.go.disabled = false;
    this.go.textContent = `Reprocess ${fmtNum(res.count)}`;
  }

  async run() {
    const plan = this.plan;
    if (!plan) return;
    this.forget();
    const rate = Number(this.form.elements.max_per_second.value || 100);
    const body = { ...plan.body, ids: plan.ids, limit: plan.ids.length };
    if (Number.isInteger(rate) && rate >= 1) body.max_per_second = rate;
    try {
      const res = await api('/v1/dead-letters/reprocess', { method: 'POST', body });
      const moved = plan.ids.length - res.count;
      fill(this.out, h('p', { class: 'notice', 'data-kind': 'ok', id: 'dl-redrive-summary', dataset: { count: String(res.count), started: 'yes' } },
        `Reprocessing ${fmtNum(res.count)} dead letter${res.count === 1 ? '' : 's'} at ${fmtNum(res.max_per_second)}/s`,
        moved > 0 ? ` (${fmtNum(moved)} had moved since the dry run)` : '', '.'),
        res.ids && res.ids.length ? h('p', { class: 'small' }, 'Dead letters: ', h('span', { class: 'mono' }, res.ids.join(' '))) : null);
      this.onDone();
    } catch (e) {
      fill(this.out, h('p', { class: 'notice', 'data-kind': 'error' }, `Reprocess failed: ${describeError(e, 'dead letters')}`));
    }
  }
}
