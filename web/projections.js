// projections.js — projections with status, position and lag (GET /v1/projections,
// refreshed while shown) and a state lookup (GET /v1/projections/{name}/state?key=K; with
// no key, the first page of every key's state).

import { api, seg, describeError } from './api.js';
import { h, $, say, table, fmtNum, jsonView, badge, fill } from './dom.js';

const REFRESH_MS = 5000;

export class Projections {
  constructor(root) {
    this.root = root;
    this.out = $('#proj-table', root);
    this.note = $('#proj-note', root);
    this.form = $('#proj-lookup', root);
    this.select = $('#proj-name', root);
    this.result = $('#proj-result', root);
    this.timer = null;
    this.form.addEventListener('submit', (e) => { e.preventDefault(); this.lookup(); });
  }

  show() {
    this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => { if (!document.hidden) this.load(); }, REFRESH_MS);
  }

  hide() { clearInterval(this.timer); this.timer = null; }

  async load() {
    let body;
    try {
      body = await api('/v1/projections');
    } catch (e) {
      say(this.note, describeError(e, 'projections'), 'error');
      return;
    }
    const list = (body && body.projections) || [];
    const { el, tbody } = table(['Name', 'Reduce', 'Filter', 'Key', 'Path', 'Status', ['Position', 'num'], ['Lag', 'num'], 'Error'],
      { label: 'Projections' });
    for (const p of list) {
      const f = p.filter || {};
      const filter = [f.streams && f.streams.length ? `streams ${f.streams.join(', ')}` : '',
        f.types && f.types.length ? `types ${f.types.join(', ')}` : ''].filter(Boolean).join('; ') || 'every event';
      tbody.append(h('tr', { dataset: { name: p.name } },
        h('td', null, h('strong', null, p.name)),
        h('td', null, p.reduce ?? ''),
        h('td', null, filter),
        h('td', null, h('code', null, p.key || '(global)')),
        h('td', null, h('code', null, p.path || '/data')),
        h('td', { 'data-col': 'status' }, badge(p.status ?? 'unknown')),
        h('td', { class: 'num' }, fmtNum(p.position)),
        h('td', { class: `num${p.lag ? ' warn' : ''}`, 'data-col': 'lag' }, fmtNum(p.lag)),
        h('td', { class: 'bad' }, p.error ?? '')));
    }
    if (!list.length) tbody.append(h('tr', null, h('td', { colspan: 9, class: 'empty' }, 'No projections. Define one with POST /v1/projections.')));
    fill(this.out, el);
    say(this.note, '');
    // Keep the lookup's choices in step with the list, without losing the selection.
    const current = this.select.value;
    const names = list.map((p) => p.name);
    if (names.join('\n') !== [...this.select.options].map((o) => o.value).join('\n')) {
      fill(this.select, ...names.map((n) => h('option', { value: n }, n)));
      if (names.includes(current)) this.select.value = current;
    }
    this.form.querySelector('button').disabled = !names.length;
  }

  async lookup() {
    const name = this.select.value;
    const key = this.form.elements.key.value;
    if (!name) return;
    const q = new URLSearchParams();
    if (key !== '') q.set('key', key);
    else q.set('limit', '100');
    fill(this.result, h('p', { class: 'muted' }, 'Looking up …'));
    try {
      const body = await api(`/v1/projections/${seg(name)}/state?${q}`);
      if (key !== '') {
        fill(this.result, 
          h('p', null, `State of key `, h('code', null, body.key ?? key), ` in `, h('strong', null, name),
            ` at position ${fmtNum(body.position)}`,
            body.projection_position !== undefined ? ` (projection at ${fmtNum(body.projection_position)})` : '', ':'),
          jsonView(body.state, { label: `State of ${key}` }));
      } else {
        const states = body.states || [];
        const { el, tbody } = table(['Key', 'State', ['Position', 'num']], { label: `States of ${name}` });
        for (const s of states) {
          tbody.append(h('tr', null, h('td', null, h('code', null, s.key === '' ? '(global)' : s.key)),
            h('td', null, h('code', { class: 'clip-wide' }, JSON.stringify(s.state))), h('td', { class: 'num' }, fmtNum(s.position))));
        }
        if (!states.length) tbody.append(h('tr', null, h('td', { colspan: 3, class: 'empty' }, 'No state yet.')));
        fill(this.result, h('p', null, `${fmtNum(states.length)} key${states.length === 1 ? '' : 's'}${body.has_more ? ' (first 100)' : ''}:`), el);
      }
    } catch (e) {
      const msg = e.status === 404 && !e.missingRoute ? `No state for key "${key}" in ${name}.` : describeError(e, 'projection state');
      fill(this.result, h('p', { class: 'error', role: 'alert' }, msg));
    }
  }
}
