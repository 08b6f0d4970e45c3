// dead_letters.js — dead letters: list with filters (GET /v1/dead-letters), inspect one
// (GET /v1/dead-letters/{id}: the event, every error and the history), reprocess
// (POST …/{id}/reprocess) and discard (POST …/{id}/discard, confirmed by a second click).
// Every answer updates the row in place, so the operator sees the status change.

import { api, seg, describeError } from './api.js';
import { h, $, say, table, fmtNum, timeEl, jsonView, badge, fill } from './dom.js';

const REFRESH_MS = 10000;

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
  }

  // params: {stream, group} from a link such as #dead-letters?stream=s&group=g
  show(params) {
    if (params && [...params.keys()].length) {
      for (const name of ['stream', 'group', 'type', 'status']) {
        if (this.form.elements[name]) this.form.elements[name].value = params.get(name) || '';
      }
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
      // A projection's letter has no group: its source (projection:<name>) stands there.
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
    const projection = String(d.source || '').startsWith('projection:');
    const discard = h('button', { type: 'button', class: 'danger', disabled: !open, 'aria-label': `Discard dead letter ${id}` }, 'Discard');
    discard.addEventListener('click', () => this.discard(id, discard));
    return [
      h('button', { type: 'button', 'aria-label': `Inspect dead letter ${id}`, onclick: () => this.inspect(id) }, 'Inspect'),
      h('button', {
        type: 'button', class: 'primary', disabled: !open || projection,
        title: projection ? 'A projection\'s dead letter: fix the data or definition and reset the projection, or discard.' : undefined,
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
      say(this.live, `Dead letter ${id} is now ${d.status}: its event goes back to group ${d.group ?? '—'}.`, 'ok');
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
