// groups.js — consumer groups per stream with pending and lag: GET /v1/streams, then
// GET /v1/streams/{stream}/groups for each (at most four at a time). Refreshed every
// REFRESH_MS while the panel is shown.

import { api, seg, describeError } from './api.js';
import { h, $, say, table, fmtNum, mapLimit, fill } from './dom.js';

const REFRESH_MS = 5000;

export class Groups {
  constructor(root) {
    this.root = root;
    this.out = $('#groups-table', root);
    this.note = $('#groups-note', root);
    this.timer = null;
    this.busy = false;
    $('#groups-refresh', root).addEventListener('click', () => this.load());
  }

  show() {
    this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => { if (!document.hidden) this.load(); }, REFRESH_MS);
  }

  hide() { clearInterval(this.timer); this.timer = null; }

  async load() {
    if (this.busy) return;
    this.busy = true;
    try {
      const { streams = [] } = (await api('/v1/streams')) || {};
      const answers = await mapLimit(streams, 4, async (s) => {
        try {
          return await api(`/v1/streams/${seg(s.stream)}/groups`);
        } catch (e) {
          return { stream: s.stream, error: e };
        }
      });
      const denied = answers.find((a) => a && a.error && a.error.status === 403);
      if (denied) {
        say(this.note, describeError(denied.error, 'consumer groups (admin scope)'), 'error');
        fill(this.out);
        return;
      }
      this.render(streams, answers);
    } catch (e) {
      say(this.note, describeError(e, 'streams'), 'error');
    } finally {
      this.busy = false;
    }
  }

  render(streams, answers) {
    const { el, tbody } = table(['Stream', 'Group', ['Consumers', 'num'], ['Pending', 'num'], ['Lag', 'num'],
      ['Dead letters', 'num'], ['Max deliveries', 'num'], ['Ack timeout', 'num'], 'Last delivered'],
    { label: 'Consumer groups' });
    let groups = 0;
    let noRedis = 0;
    const failed = [];
    for (const a of answers) {
      if (!a) continue;
      if (a.error) { failed.push(`${a.stream}: ${describeError(a.error, 'its groups')}`); continue; }
      if (a.redis_available === false) noRedis++;
      for (const g of a.groups || []) {
        groups++;
        const dlq = Number(g.dead_letters) || 0;
        const q = new URLSearchParams({ stream: a.stream, group: g.name });
        tbody.append(h('tr', { dataset: { stream: a.stream, group: g.name } },
          h('td', null, a.stream),
          h('td', null, h('strong', null, g.name)),
          h('td', { class: 'num' }, fmtNum(g.consumers)),
          h('td', { class: `num${g.pending ? ' warn' : ''}`, 'data-col': 'pending' }, fmtNum(g.pending)),
          h('td', { class: `num${g.lag ? ' warn' : ''}`, 'data-col': 'lag' }, g.lag === null || g.lag === undefined ? '—' : fmtNum(g.lag)),
          h('td', { class: 'num', 'data-col': 'dead_letters' }, dlq
            ? h('a', { href: `#dead-letters?${q}`, class: 'bad', title: 'Show these dead letters' }, fmtNum(dlq))
            : '0'),
          h('td', { class: 'num' }, fmtNum(g.max_deliveries)),
          h('td', { class: 'num' }, g.ack_timeout_ms ? `${fmtNum(g.ack_timeout_ms / 1000)} s` : '—'),
          h('td', null, h('code', null, g.last_delivered_id ?? '—'))));
      }
    }
    if (!groups) tbody.append(h('tr', null, h('td', { colspan: 9, class: 'empty' }, 'No consumer groups. Create one with POST /v1/streams/{stream}/groups.')));
    fill(this.out, el);
    const notes = [`${fmtNum(groups)} group${groups === 1 ? '' : 's'} on ${fmtNum(streams.length)} stream${streams.length === 1 ? '' : 's'}.`];
    if (noRedis) notes.push('Redis is unreachable: pending and lag are unknown.');
    if (failed.length) notes.push(...failed);
    say(this.note, notes.join(' '), failed.length || noRedis ? 'error' : 'info');
  }
}
