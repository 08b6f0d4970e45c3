// rates.js — per-stream publish rates on a uPlot chart, the streams table, and the
// per-type performance table of GET /v1/stats.
//
// The chart's rates are measured, not estimated: every POLL_MS the panel reads
// GET /v1/streams and plots Δevent_count / Δt per stream (events per second). Polling goes
// on while the page is open (not only while this tab is shown), so the chart has history
// when the operator looks; it pauses while the browser tab is hidden. GET /v1/stats
// (latency percentiles, success and error rates, throughput per minute) is read on the same
// beat; a server without that route gets a note instead of an error.

import { api, describeError } from './api.js';
import { h, $, say, table, fmtNum, fmtMs, fmtPct, timeEl, ago, fill } from './dom.js';

const POLL_MS = 5000;
const FIRST_MS = 1000;
const KEEP_POINTS = 180; // 15 minutes at 5 s
const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777',
  '#65a30d', '#ea580c', '#4f46e5', '#0d9488', '#9333ea', '#ca8a04', '#be123c', '#1d4ed8', '#15803d'];

export class Rates {
  constructor(root) {
    this.root = root;
    this.chartEl = $('#rates-chart', root);
    this.noteEl = $('#rates-note', root);
    this.streamsEl = $('#rates-streams', root);
    this.statsEl = $('#stats-table', root);
    this.statsNote = $('#stats-note', root);
    this.times = [];             // seconds since epoch, one per poll after the first
    this.series = new Map();     // stream → rates[] aligned with times (null = no data)
    this.prev = null;            // {t, counts: Map}
    this.plot = null;
    this.plotKeys = '';
    this.timer = null;
    this.gen = 0;
    this.statsMissing = false;
    this.statsCheckedAt = 0;
    this.lastStreams = [];
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(this.chartEl);
    this.hovering = false;
    this.chartEl.addEventListener('mouseenter', () => { this.hovering = true; });
    this.chartEl.addEventListener('mouseleave', () => { this.hovering = false; setTimeout(() => this.showLatest()); });
  }

  // Starts from an empty chart: a new token may be another tenant's view.
  start() {
    this.stop();
    this.times = [];
    this.series.clear();
    this.prev = null;
    const gen = this.gen;
    let first = true;
    const tick = async () => {
      if (!document.hidden) await this.poll();
      if (gen !== this.gen) return; // stopped while the poll was in flight
      // The second reading comes after one second, so the chart starts at once.
      this.timer = setTimeout(tick, first ? FIRST_MS : POLL_MS);
      first = false;
    };
    tick();
  }

  stop() { clearTimeout(this.timer); this.timer = null; this.gen++; }

  async poll() {
    await Promise.all([this.pollStreams(), this.pollStats()]);
  }

  // ------------------------------------------------------------ streams and the chart

  async pollStreams() {
    let body;
    try {
      body = await api('/v1/streams');
    } catch (e) {
      say(this.noteEl, describeError(e, 'streams'), 'error');
      return;
    }
    const streams = (body && body.streams) || [];
    this.lastStreams = streams;
    const now = Date.now() / 1000;
    const counts = new Map(streams.map((s) => [s.stream, Number(s.event_count) || 0]));
    if (this.prev) {
      const dt = Math.max(0.001, now - this.prev.t);
      this.times.push(now);
      for (const [name, count] of counts) {
        if (!this.series.has(name)) this.series.set(name, new Array(this.times.length - 1).fill(null));
        const before = this.prev.counts.get(name);
        // Retention deletes lower a count: never plot a negative rate.
        const rate = before === undefined ? count / dt : Math.max(0, count - before) / dt;
        this.series.get(name).push(Math.round(rate * 100) / 100);
      }
      for (const arr of this.series.values()) if (arr.length < this.times.length) arr.push(null);
      if (this.times.length > KEEP_POINTS) {
        const drop = this.times.length - KEEP_POINTS;
        this.times.splice(0, drop);
        for (const arr of this.series.values()) arr.splice(0, drop);
      }
      say(this.noteEl, '');
      this.draw();
    } else {
      say(this.noteEl, 'Measuring …', 'info');
    }
    this.prev = { t: now, counts };
    this.renderStreams(streams);
  }

  latestRate(name) {
    const arr = this.series.get(name);
    return arr && arr.length ? arr[arr.length - 1] : null;
  }

  renderStreams(streams) {
    const { el, tbody } = table(['Stream', ['Events', 'num'], ['Last position', 'num'], 'Last event',
      ['Events/s', 'num'], 'Retention'], { label: 'Streams' });
    for (const s of streams) {
      const rate = this.latestRate(s.stream);
      const ret = s.retention && s.retention.max_age_ms ? `${fmtNum(Math.round(s.retention.max_age_ms / 3600000))} h` : 'forever';
      tbody.append(h('tr', { dataset: { stream: s.stream } },
        h('td', null, s.stream),
        h('td', { class: 'num' }, fmtNum(s.event_count)),
        h('td', { class: 'num' }, fmtNum(s.last_position)),
        h('td', null, timeEl(s.last_event_time), h('span', { class: 'muted' }, ` · ${ago(s.last_event_time)}`)),
        h('td', { class: 'num' }, rate === null ? '—' : fmtNum(rate)),
        h('td', null, ret)));
    }
    if (!streams.length) tbody.append(h('tr', null, h('td', { colspan: 6, class: 'empty' }, 'No streams yet: publish an event.')));
    fill(this.streamsEl, el);
  }

  draw() {
    const uPlot = window.uPlot;
    if (!uPlot) {
      say(this.noteEl, 'The chart library (web/vendor/uplot) did not load; the table below still shows the rates.', 'error');
      return;
    }
    const names = [...this.series.keys()].sort();
    const data = [this.times.slice(), ...names.map((n) => this.series.get(n).slice())];
    const keys = names.join('\n');
    if (this.plot && keys === this.plotKeys) {
      this.plot.setData(data);
      this.showLatest();
      return;
    }
    if (this.plot) this.plot.destroy();
    this.plotKeys = keys;
    const css = getComputedStyle(document.documentElement);
    const ink = css.getPropertyValue('--muted').trim() || '#666';
    const grid = css.getPropertyValue('--grid').trim() || 'rgba(0,0,0,.08)';
    const axis = { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    this.plot = new uPlot({
      width: this.width(),
      height: 260,
      cursor: { drag: { x: false, y: false } },
      scales: {
        // At least the last minute, so the first readings do not stretch over years.
        x: { time: true, range: (u, min, max) => [Math.min(min, max - 60), max] },
        y: { range: (u, min, max) => [0, Math.max(1, (max || 0) * 1.15)] },
      },
      axes: [{ ...axis }, { ...axis, label: 'events / s', size: 60 }],
      series: [
        { label: 'time' },
        ...names.map((n, i) => ({
          label: n, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: false, value: (u, v) => (v === null || v === undefined ? '—' : `${fmtNum(v)}/s`),
        })),
      ],
    }, data, this.chartEl);
    this.showLatest();
  }

  // Away from the cursor, the legend shows the latest reading rather than dashes.
  showLatest() {
    if (!this.plot || this.hovering || !this.times.length) return;
    this.plot.setLegend({ idx: this.times.length - 1 });
  }

  width() { return Math.max(300, Math.floor(this.chartEl.clientWidth || 600)); }

  fit() { if (this.plot) this.plot.setSize({ width: this.width(), height: 260 }); }

  // ------------------------------------------------------------ /v1/stats

  async pollStats() {
    // A server without /v1/stats is asked again once a minute (it may be upgraded).
    if (this.statsMissing && Date.now() - this.statsCheckedAt < 60000) return;
    this.statsCheckedAt = Date.now();
    let body;
    try {
      body = await api('/v1/stats');
    } catch (e) {
      this.statsMissing = e.missingRoute;
      say(this.statsNote, e.missingRoute
        ? 'Latency and success rates need GET /v1/stats, which this Sluice does not serve.'
        : describeError(e, 'stats'), e.missingRoute ? 'info' : 'error');
      fill(this.statsEl);
      return;
    }
    this.statsMissing = false;
    const rows = (body && body.stats) || [];
    rows.sort((a, b) => String(a.stream).localeCompare(b.stream) || String(a.type).localeCompare(b.type));
    const { el, tbody } = table(['Stream', 'Type', ['Published', 'num'], ['Rejected', 'num'], ['p50', 'num'],
      ['p95', 'num'], ['p99', 'num'], ['Success', 'num'], ['Errors', 'num'], ['Per minute', 'num']], { label: 'Publish performance by stream and type' });
    for (const r of rows) {
      tbody.append(h('tr', null,
        h('td', null, r.stream ?? '—'),
        h('td', null, h('code', null, r.type ?? '—')),
        h('td', { class: 'num' }, fmtNum(r.published)),
        h('td', { class: `num${r.rejected ? ' warn' : ''}` }, fmtNum(r.rejected)),
        h('td', { class: 'num' }, fmtMs(r.p50_ms)),
        h('td', { class: 'num' }, fmtMs(r.p95_ms)),
        h('td', { class: 'num' }, fmtMs(r.p99_ms)),
        h('td', { class: 'num' }, fmtPct(r.success_rate)),
        h('td', { class: `num${r.error_rate ? ' warn' : ''}` }, fmtPct(r.error_rate)),
        h('td', { class: 'num' }, fmtNum(typeof r.per_minute === 'number' ? Math.round(r.per_minute * 10) / 10 : r.per_minute))));
    }
    if (!rows.length) tbody.append(h('tr', null, h('td', { colspan: 10, class: 'empty' }, 'Nothing published in the window yet.')));
    fill(this.statsEl, el);
    say(this.statsNote, body && body.window_seconds ? `Over the last ${fmtNum(body.window_seconds)} s.` : '', 'info');
  }
}
