// schemas.js — the schema browser: every registered type (GET /v1/schemas) with a filter,
// one type's versions (GET /v1/schemas/{type}/versions), one version's schema
// (GET …/versions/{n}) and a diff between two versions (jsondiff.js).

import { api, seg, describeError } from './api.js';
import { h, $, say, fmtNum, timeEl, jsonView, badge, fill } from './dom.js';
import { diff } from './jsondiff.js';

export class Schemas {
  constructor(root) {
    this.root = root;
    this.listEl = $('#schema-list', root);
    this.note = $('#schema-note', root);
    this.search = $('#schema-search', root);
    this.view = $('#schema-view', root);
    this.types = null;
    this.type = null;
    this.cache = new Map(); // "type@n" → version document
    this.search.addEventListener('input', () => this.renderList());
  }

  async show(type) {
    if (!this.types) await this.loadList();
    if (type) this.open(type);
    else if (!this.type) fill(this.view, h('p', { class: 'muted' }, 'Choose a type to see its versions.'));
  }

  async loadList() {
    try {
      const body = await api('/v1/schemas');
      this.types = (body && body.schemas) || [];
      say(this.note, `${fmtNum(this.types.length)} registered types.`, 'info');
    } catch (e) {
      this.types = null;
      say(this.note, describeError(e, 'schemas'), 'error');
      return;
    }
    this.renderList();
  }

  renderList() {
    if (!this.types) return;
    const needle = this.search.value.trim().toLowerCase();
    const shown = this.types.filter((t) => !needle || t.type.toLowerCase().includes(needle) || String(t.stream).toLowerCase().includes(needle));
    fill(this.listEl, ...shown.map((t) => h('li', null,
      h('a', {
        href: `#schemas/${encodeURIComponent(t.type)}`,
        'aria-current': t.type === this.type ? 'true' : undefined,
        class: t.deprecated ? 'deprecated' : '',
      }, h('code', null, t.type), h('span', { class: 'muted' }, ` v${t.latest_version}`),
      t.deprecated ? [' ', badge('deprecated')] : null))));
    if (!shown.length) fill(this.listEl, h('li', { class: 'muted' }, 'No type matches.'));
  }

  async version(type, n) {
    const key = `${type}@${n}`;
    if (!this.cache.has(key)) this.cache.set(key, await api(`/v1/schemas/${seg(type)}/versions/${seg(n)}`));
    return this.cache.get(key);
  }

  async open(type) {
    this.type = type;
    this.renderList();
    const meta = (this.types || []).find((t) => t.type === type) || { type };
    fill(this.view, h('p', { class: 'muted' }, `Loading ${type} …`));
    let versions;
    try {
      versions = ((await api(`/v1/schemas/${seg(type)}/versions`)) || {}).versions || [];
    } catch (e) {
      fill(this.view, h('p', { class: 'error', role: 'alert' }, describeError(e, 'this schema')));
      return;
    }
    const nums = versions.map((v) => v.version);
    const latest = nums.length ? nums[nums.length - 1] : null;
    const pick = (id, label, value) => h('label', null, label, ' ',
      h('select', { id, name: id }, nums.map((n) => h('option', { value: String(n), selected: n === value }, `v${n}`))));

    const schemaOut = h('div', { id: 'schema-doc' });
    const diffOut = h('div', { id: 'schema-diff', 'aria-live': 'polite' });
    const viewSel = pick('schema-version', 'Version', latest);
    const fromSel = pick('diff-from', 'From', nums.length > 1 ? nums[nums.length - 2] : latest);
    const toSel = pick('diff-to', 'to', latest);
    viewSel.querySelector('select').addEventListener('change', (e) => this.showVersion(type, Number(e.target.value), schemaOut));
    const diffForm = h('form', { class: 'inline', 'aria-label': 'Compare two versions' }, fromSel, toSel,
      h('button', { type: 'submit' }, 'Compare'));
    diffForm.addEventListener('submit', (e) => {
      e.preventDefault();
      this.showDiff(type, Number(diffForm.elements['diff-from'].value), Number(diffForm.elements['diff-to'].value), diffOut);
    });

    fill(this.view, 
      h('header', { class: 'detail-head' }, h('h3', null, h('code', null, type), ' ', meta.deprecated ? badge('deprecated') : null)),
      meta.description ? h('p', { class: 'desc' }, meta.description) : null,
      h('dl', { class: 'facts' },
        h('dt', null, 'Stream'), h('dd', null, meta.stream ?? '—'),
        h('dt', null, 'Compatibility'), h('dd', null, meta.compatibility ?? '—'),
        h('dt', null, 'Versions'), h('dd', null, versions.map((v, i) => [i ? ', ' : '', `v${v.version} (`, timeEl(v.created_at), ')']))),
      h('section', { 'aria-label': 'Diff between two versions' }, h('h4', null, 'Diff'), diffForm, diffOut),
      h('section', { 'aria-label': 'One version' }, h('h4', null, 'Schema'), h('form', { class: 'inline', onsubmit: (e) => e.preventDefault() }, viewSel), schemaOut));

    if (latest !== null) {
      this.showVersion(type, latest, schemaOut);
      if (nums.length > 1) this.showDiff(type, nums[nums.length - 2], latest, diffOut);
      else fill(diffOut, h('p', { class: 'muted' }, 'Only one version: nothing to compare yet.'));
    }
  }

  async showVersion(type, n, out) {
    try {
      const v = await this.version(type, n);
      fill(out, jsonView(v.schema, { label: `${type} schema version ${n}` }));
    } catch (e) {
      fill(out, h('p', { class: 'error' }, describeError(e, 'this version')));
    }
  }

  async showDiff(type, from, to, out) {
    let a;
    let b;
    try {
      [a, b] = await Promise.all([this.version(type, from), this.version(type, to)]);
    } catch (e) {
      fill(out, h('p', { class: 'error' }, describeError(e, 'these versions')));
      return;
    }
    const changes = diff(a.schema, b.schema);
    if (!changes.length) {
      fill(out, h('p', { class: 'muted' }, `v${from} and v${to} are identical.`));
      return;
    }
    const sign = { add: '+', remove: '−', change: '~' };
    const show = (v) => h('code', { class: 'val' }, JSON.stringify(v));
    fill(out, 
      h('p', null, `v${from} → v${to}: ${changes.length} change${changes.length === 1 ? '' : 's'}.`),
      h('ul', { class: 'diff', 'aria-label': `Changes from v${from} to v${to}` }, changes.map((c) => h('li', { class: `d-${c.op}` },
        h('span', { class: 'sign', 'aria-label': c.op }, sign[c.op]), ' ',
        h('code', { class: 'path' }, c.path || '(root)'), ' ',
        c.op === 'add' ? show(c.to) : c.op === 'remove' ? show(c.from) : [show(c.from), ' → ', show(c.to)]))));
  }
}
