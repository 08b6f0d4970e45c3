// event.js — one event (GET /v1/events/{id}) and its correlation trace
// (GET /v1/correlations/{correlation_id}): every event of the flow in order, indented by
// causation (an event whose causation_id names an earlier event of the trace sits under
// it), with the time since the flow began.

import { api, seg, describeError } from './api.js';
import { h, $, table, fmtNum, timeEl, jsonView, fill } from './dom.js';

const TRACE_LIMIT = 1000;

export class EventView {
  constructor(root) {
    this.root = root;
    this.form = $('#event-form', root);
    this.out = $('#event-out', root);
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      const id = this.form.elements.id.value.trim();
      if (id) location.hash = `#event/${encodeURIComponent(id)}`;
    });
  }

  async show(id) {
    if (!id) {
      if (!this.out.childElementCount) fill(this.out, h('p', { class: 'muted' }, 'Enter an event id, or open one from the live feed.'));
      return;
    }
    this.form.elements.id.value = id;
    fill(this.out, h('p', { class: 'muted' }, `Loading ${id} …`));
    let ev;
    try {
      ev = await api(`/v1/events/${seg(id)}`);
    } catch (e) {
      const msg = e.status === 404 && !e.missingRoute ? `No event ${id} in this tenant.` : describeError(e, 'events');
      fill(this.out, h('p', { class: 'error', role: 'alert' }, msg));
      return;
    }
    const traceOut = h('div', { id: 'trace' }, h('p', { class: 'muted' }, 'Loading the trace …'));
    fill(this.out, 
      h('header', { class: 'detail-head' }, h('h3', null, h('code', null, ev.type), ' ', h('span', { class: 'muted' }, `#${fmtNum(ev.position)}`))),
      h('dl', { class: 'facts' },
        fact('ID', h('code', null, ev.id)), fact('Stream', ev.stream), fact('Key', ev.key ?? '—'),
        fact('Version', ev.version ?? '—'), fact('Time', timeEl(ev.time)), fact('Tenant', ev.tenant_id),
        fact('Correlation', h('code', null, ev.correlation_id ?? '—')), fact('Causation', ev.causation_id ?? '—'),
        fact('User', ev.user_id ?? '—'), fact('Source', ev.source ?? '—'), fact('Schema version', ev.schema_version ?? '—')),
      h('h4', null, 'Data'), jsonView(ev.data, { label: 'Event data' }),
      ev.metadata ? [h('h4', null, 'Metadata'), jsonView(ev.metadata, { label: 'Event metadata' })] : null,
      h('h4', null, 'Correlation trace'), traceOut);
    if (ev.correlation_id) this.trace(ev, traceOut);
    else fill(traceOut, h('p', { class: 'muted' }, 'No correlation id.'));
  }

  async trace(ev, out) {
    let body;
    try {
      body = await api(`/v1/correlations/${seg(ev.correlation_id)}?limit=${TRACE_LIMIT}`);
    } catch (e) {
      fill(out, h('p', { class: 'error' }, describeError(e, 'correlations')));
      return;
    }
    const events = (body && body.events) || [];
    const byId = new Map(events.map((e) => [e.id, e]));
    const depth = new Map();
    const depthOf = (e, seen = 0) => {
      if (depth.has(e.id)) return depth.get(e.id);
      const parent = e.causation_id && e.causation_id !== e.id ? byId.get(e.causation_id) : null;
      const d = parent && seen < 32 ? depthOf(parent, seen + 1) + 1 : 0;
      depth.set(e.id, d);
      return d;
    };
    const t0 = events.length ? new Date(events[0].time).getTime() : 0;
    const { el, tbody } = table([['#', 'num'], ['+ms', 'num'], 'Type', 'Stream', 'Key', 'ID', ['Position', 'num'], 'Time'],
      { label: `Events with correlation id ${ev.correlation_id}`, className: 'trace' });
    events.forEach((e, i) => {
      const here = e.id === ev.id;
      const d = Math.min(6, depthOf(e));
      tbody.append(h('tr', { class: here ? 'selected' : '', 'aria-current': here ? 'true' : undefined, dataset: { id: e.id } },
        h('td', { class: 'num' }, String(i + 1)),
        h('td', { class: 'num' }, fmtNum(new Date(e.time).getTime() - t0)),
        h('td', { class: `depth-${d}` }, d ? h('span', { class: 'muted', 'aria-hidden': 'true' }, '↳ ') : null, h('code', null, e.type)),
        h('td', null, e.stream),
        h('td', null, e.key ?? ''),
        h('td', null, here ? h('strong', null, e.id) : h('a', { href: `#event/${encodeURIComponent(e.id)}` }, e.id)),
        h('td', { class: 'num' }, fmtNum(e.position)),
        h('td', null, timeEl(e.time))));
    });
    fill(out, 
      h('p', null, `${fmtNum(events.length)} event${events.length === 1 ? '' : 's'} in flow `, h('code', null, ev.correlation_id),
        body.has_more ? ` (the first ${TRACE_LIMIT})` : '', '.'), el);
  }
}

function fact(name, value) {
  return [h('dt', null, name), h('dd', null, value ?? '—')];
}
