// mesh web UI: a client of the agent's /v1 API like any other. One file, no
// build step, no dependencies. The agent's CSP lets only this script and
// style.css run, so every element is built with the DOM API (never HTML
// strings) and styled by class; API data only ever lands in textContent.
'use strict';

// === settings ===

const WAIT = '60s';            // blocking-query wait; short enough to notice a dead agent
const POLL_MS = 3000;          // agent-local endpoints that do not block
const FETCH_PARALLEL = 3;      // one-shot reads at a time: a browser opens 6 connections per host and blocking queries hold some
const TOKEN_KEY = 'mesh.token';
const GATEWAY_KINDS = ['ingress-gateway', 'terminating-gateway', 'mesh-gateway', 'api-gateway'];

// === DOM helpers ===

const $ = (sel) => document.querySelector(sel);
const enc = encodeURIComponent;

/** h('a', {href, class, data: {test: 'x'}}, ...children): one element. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'data') {
      for (const [dk, dv] of Object.entries(v)) if (dv !== undefined && dv !== null) el.dataset[dk] = String(dv);
    } else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'disabled') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** Append children; strings become text nodes, so API data is never parsed as HTML. */
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const SVGNS = 'http://www.w3.org/2000/svg';

/** An SVG element; attributes set one by one (no markup parsing). */
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  return append(el, children);
}

const link = (href, text, attrs) => h('a', { href, ...attrs }, text);
const muted = (...text) => h('span', { class: 'muted' }, ...text);
const thead = (cols) => h('thead', null, h('tr', null, cols.map((c) => h('th', null, c))));
const card = (title, ...children) => h('section', { class: 'card' }, title && h('h2', null, title), ...children);
const chips = (list) => (list || []).map((t) => h('span', { class: 'chip' }, t));
const metaChips = (obj) => Object.entries(obj || {}).map(([k, v]) => h('span', { class: 'chip meta' }, h('b', null, k), ' = ', v));

/** A definition list of [label, value] pairs; empty values are left out. */
function facts(pairs) {
  const dl = h('dl', { class: 'facts' });
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === '' || (Array.isArray(v) && !v.length)) continue;
    append(dl, [h('dt', null, k), h('dd', null, v)]);
  }
  return dl;
}

function field(label, input, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'label' }, label), input, hint && h('small', { class: 'hint' }, hint));
}

function select(options, value, attrs) {
  const el = h('select', attrs, options.map(([v, text]) => h('option', { value: v }, text)));
  el.value = value;
  return el;
}

/** A message line that a form updates: ok, error or conflict. */
function message(test) {
  const el = h('div', { class: 'msg', data: { test }, role: 'status' });
  el.set = (kind, ...text) => {
    el.className = `msg ${kind || ''}`;
    fill(el, ...text);
  };
  return el;
}

/** A destructive button that asks once more on the first click (no native dialogs). */
function twoStep(label, confirmLabel, action, attrs) {
  const b = h('button', { type: 'button', class: 'danger', ...attrs }, label);
  let armed = false;
  let timer = 0;
  const reset = () => {
    armed = false;
    b.textContent = label;
    b.classList.remove('armed');
  };
  b.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      b.textContent = confirmLabel;
      b.classList.add('armed');
      timer = setTimeout(reset, 5000);
      return;
    }
    clearTimeout(timer);
    b.disabled = true;
    try {
      await action();
    } finally {
      b.disabled = false;
      reset();
    }
  });
  return b;
}

// === formatting ===

const RANK = { passing: 0, warning: 1, critical: 2 };

/** The worst of some check states; unknown states count as critical. */
function worst(statuses) {
  let w = null;
  for (const s of statuses) {
    const st = s in RANK ? s : 'critical';
    if (w === null || RANK[st] > RANK[w]) w = st;
  }
  return w || 'none';
}

function countStatus(checks) {
  const c = { passing: 0, warning: 0, critical: 0 };
  for (const k of checks) c[k.Status in c ? k.Status : 'critical']++;
  return c;
}

function badge(status, text) {
  return h('span', { class: `badge status-${status}`, data: { status } }, text ?? status);
}

/** "3 passing · 1 critical" with each part coloured. */
function healthSummary(counts) {
  const parts = [];
  for (const s of ['critical', 'warning', 'passing']) {
    if (counts[s]) parts.push(h('span', { class: `count status-text-${s}` }, `${counts[s]} ${s}`));
  }
  if (!parts.length) return muted('no checks');
  return parts.flatMap((p, i) => (i ? [' · ', p] : [p]));
}

function fmtTime(value) {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value ?? '');
  return d.toLocaleString();
}

/** "in 3 days" / "5 minutes ago". */
function relTime(value) {
  const d = value instanceof Date ? value : new Date(value);
  const ms = d.getTime() - Date.now();
  if (Number.isNaN(ms)) return '';
  const abs = Math.abs(ms);
  const units = [['year', 31536e6], ['day', 864e5], ['hour', 36e5], ['minute', 6e4], ['second', 1e3]];
  for (const [name, size] of units) {
    if (abs >= size || name === 'second') {
      const n = Math.round(abs / size);
      const word = `${n} ${name}${n === 1 ? '' : 's'}`;
      return ms >= 0 ? `in ${word}` : `${word} ago`;
    }
  }
  return '';
}

/** A Go duration ("40.358158ms", "1.5s", "0ns") rounded for people. */
function fmtDuration(text) {
  const m = /^([\d.]+)(ns|µs|us|ms|s)$/.exec(text || '');
  if (!m) return text || '';
  const ms = Number(m[1]) * { ns: 1e-6, µs: 1e-3, us: 1e-3, ms: 1, s: 1e3 }[m[2]];
  return ms < 1 ? '< 1 ms' : ms < 10000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

const shortId = (id) => (id && id.length > 16 ? `${id.slice(0, 8)}…` : id || '');

/** KV values are base64; text that is not UTF-8 stays base64 (null here). */
function b64ToText(b64) {
  try {
    const bin = atob(b64 || '');
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

// === owners ===

/** Objects written by the API (or with no owner) may be changed here; others belong to files or Terraform. */
const ownedElsewhere = (owner) => Boolean(owner) && owner !== 'api';

/** Where to change an object that something else owns. */
function ownerWhere(owner) {
  if (owner.startsWith('file:')) {
    const rest = owner.slice(5);
    const i = rest.indexOf(':');
    const node = i >= 0 ? rest.slice(0, i) : '';
    const path = i >= 0 ? rest.slice(i + 1) : rest;
    return `edit ${path}${node ? ` on agent ${node}` : ''}; the agent applies the file when it is saved (or on mesh reload).`;
  }
  if (owner === 'terraform') return 'change the Terraform configuration and run terraform apply.';
  return `change it through ${owner}.`;
}

function ownerNote(owner, what) {
  return h('div', { class: 'owner-note', data: { test: 'owner-note', owner } },
    h('strong', null, 'Read-only: '), `this ${what} is managed by `, h('code', null, owner), ' — ', ownerWhere(owner));
}

/** A short owner label for tables: the file's base name, with the full owner on hover. */
function ownerLabel(owner) {
  const o = owner || 'api';
  let text = o;
  if (o.startsWith('file:')) {
    const path = o.slice(5).replace(/^[^:]*:/, '');
    text = `file ${path.split('/').pop()}`;
  }
  return h('span', { class: `owner ${ownedElsewhere(o) ? 'owned' : ''}`, title: o, data: { test: 'owner', owner: o } }, text);
}

// === API ===

const token = {
  get: () => localStorage.getItem(TOKEN_KEY) || '',
  set: (t) => localStorage.setItem(TOKEN_KEY, t),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

class ApiError extends Error {
  constructor(status, text, path) {
    super(text ? `${status}: ${text}` : `HTTP ${status}`);
    this.status = status;
    this.text = text;
    this.path = path;
  }
}

/**
 * One API call with the stored token. Resolves to {data, index, filtered,
 * text}; a non-2xx answer throws ApiError carrying the server's text (a 403
 * names the missing permission). With notFound, a 404 resolves to null data.
 */
async function api(path, { method = 'GET', body, signal, notFound = false, tokenOverride, json = true } = {}) {
  const headers = {};
  const t = tokenOverride ?? token.get();
  if (t) headers['X-Consul-Token'] = t;
  if (body !== undefined && typeof body !== 'string') {
    body = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(path, { method, headers, body, signal, cache: 'no-store', credentials: 'omit' });
  const text = await res.text();
  const index = Number(res.headers.get('X-Consul-Index')) || 0;
  const filtered = res.headers.get('X-Consul-Results-Filtered-By-ACLs') === 'true';
  if (res.status === 404 && notFound) return { data: null, index, filtered, text: '' };
  if (!res.ok) throw new ApiError(res.status, text.trim(), path);
  let data = text;
  if (json) data = text ? JSON.parse(text) : null;
  return { data, index, filtered, text };
}

const withQuery = (path, q) => `${path}${path.includes('?') ? '&' : '?'}${q}`;
const isAbort = (e) => e && e.name === 'AbortError';

/** Run fn over items, at most `limit` at a time. */
async function pool(items, limit, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

// === view scope: the watches a view runs, all stopped when the route changes ===

class Scope {
  constructor() {
    this.ctrl = new AbortController();
    this.errors = new Map();
    this.errorBox = h('div', { class: 'errors' });
  }

  get signal() {
    return this.ctrl.signal;
  }

  get closed() {
    return this.ctrl.signal.aborted;
  }

  close() {
    this.ctrl.abort();
  }

  /** Resolves after ms, or at once when the view closes. */
  sleep(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.signal.addEventListener('abort', done);
    });
  }

  /** Show (or clear, with null) the error of one data source in the view's error box. */
  setError(label, err) {
    if (this.closed) return;
    const had = this.errors.has(label);
    if (err) this.errors.set(label, err);
    else if (had) this.errors.delete(label);
    else return;
    fill(this.errorBox, [...this.errors].map(([what, e]) => errorBlock(e, what)));
  }

  /**
   * Follow an endpoint with blocking queries: ask again with the last
   * X-Consul-Index so the server answers only on a change. onData runs on
   * the first answer and whenever the answer's body changes. Endpoints that
   * do not block (no index) are polled instead. opts: label, slot (where
   * an error replaces the data), notFound, poll, every, wait.
   */
  watch(path, onData, opts = {}) {
    watchLoop(this, path, onData, opts);
  }

  /** Run `task` now, or once more after the current run if asked meanwhile. */
  coalesce(label, task) {
    let running = false;
    let again = false;
    return async () => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          try {
            await task();
            this.setError(label, null);
          } catch (e) {
            if (this.closed || isAbort(e)) return;
            this.setError(label, e);
          }
        } while (again && !this.closed);
      } finally {
        running = false;
      }
    };
  }
}

async function watchLoop(scope, path, onData, opts) {
  const label = opts.label || path;
  let index = 0;
  let last = null;
  let failures = 0;
  while (!scope.closed) {
    const blocking = !opts.poll && index > 0;
    const url = blocking ? withQuery(path, `index=${index}&wait=${opts.wait || WAIT}`) : path;
    let r;
    try {
      r = await api(url, { signal: scope.signal, notFound: opts.notFound });
    } catch (e) {
      if (scope.closed || isAbort(e)) return;
      failures++;
      last = null;
      index = 0;
      // A view's own slot shows its error in place of the data; otherwise the error box at the top.
      if (opts.slot) fill(opts.slot, errorBlock(e));
      else scope.setError(label, e);
      if (opts.onError) opts.onError(e);
      // Back off 2, 4, 8, then 15 s so a down agent is not hammered.
      await scope.sleep(Math.min(1000 * 2 ** Math.min(failures, 4), 15000));
      continue;
    }
    if (scope.closed) return;
    failures = 0;
    scope.setError(label, null);
    const changed = r.text !== last;
    last = r.text;
    // An index that went backwards (a snapshot restore, a new leader) starts over, as Consul's clients do.
    index = r.index >= index ? r.index : 0;
    if (changed) {
      try {
        onData(r.data, r);
      } catch (e) {
        reportError(e);
      }
    }
    if (opts.poll || !r.index) await scope.sleep(opts.every || POLL_MS);
  }
}

/** An error as a view shows it: a 403 names the permission the token lacks. */
function errorBlock(err, what) {
  if (err instanceof ApiError && err.status === 403) return denied(err, what);
  const text = err instanceof ApiError ? err.text || `HTTP ${err.status}` : String(err && err.message ? err.message : err);
  return h('div', { class: 'error', data: { test: 'error' } }, what ? h('strong', null, `${what}: `) : null, text);
}

/** "Access denied: your token lacks acl:read" from the server's 403 text. */
function denied(err, what) {
  const text = err.text || `HTTP ${err.status}`;
  const m = /lacks permission '([^']+)'(?: on "([^"]*)")?/.exec(text);
  const perm = m ? m[1] : '';
  const lead = m
    ? ['Access denied: your token lacks ', h('code', null, perm), m[2] !== undefined ? [' on ', h('code', null, m[2] || '""')] : '', '.']
    : ['Access denied: ', text];
  return h('div', { class: 'denied', data: { test: 'denied', permission: perm } },
    what ? h('strong', null, `${what}: `) : null, lead,
    m ? h('div', { class: 'detail' }, text) : null,
    h('div', { class: 'detail' }, link('#/login', 'Log in with another token')));
}

/** The note a list shows when the server left out what the token may not read. */
function filteredNote(r, perm) {
  return r && r.filtered ? h('p', { class: 'filtered', data: { test: 'filtered' } }, `Some entries are hidden: your token lacks ${perm} on them.`) : null;
}

// === keyed lists ===

/**
 * Render items into `container` by key: an item whose signature did not
 * change keeps its element (and any state in it, such as a pending confirm),
 * so a change to one of 1,000 rows touches one row.
 */
function keyed(container, cache, items, keyOf, sigOf, build) {
  const seen = new Set();
  const els = [];
  const swaps = [];
  for (const item of items) {
    const key = keyOf(item);
    const sig = sigOf(item);
    seen.add(key);
    let entry = cache.get(key);
    if (!entry || entry.sig !== sig) {
      const el = build(item);
      if (entry && entry.el.parentNode === container) swaps.push([entry.el, el]);
      entry = { el, sig, item };
      cache.set(key, entry);
    } else {
      entry.item = item;
    }
    els.push(entry.el);
  }
  const gone = [];
  for (const [key, entry] of cache) {
    if (!seen.has(key)) {
      gone.push(entry.el);
      cache.delete(key);
    }
  }
  // Many changed rows: one replaceChildren is far cheaper than a DOM edit per row.
  if (swaps.length > 32) {
    const frag = document.createDocumentFragment();
    frag.append(...els);
    container.replaceChildren(frag);
    return;
  }
  for (const [from, to] of swaps) from.replaceWith(to);
  for (const el of gone) el.remove();
  // Reorder only when needed: moving every row on each change costs a relayout.
  const kids = container.children;
  let inOrder = kids.length === els.length;
  for (let i = 0; inOrder && i < els.length; i++) inOrder = kids[i] === els[i];
  if (!inOrder) {
    const frag = document.createDocumentFragment();
    frag.append(...els);
    container.append(frag);
  }
}

// === catalog aggregates ===

/** The summaries of every service this token may read: one blocking read, the list view's only source. */
const UI_SERVICES = '/v1/internal/ui/services';

/**
 * Every sidecar's upstreams, for downstream edges: each connect-proxy
 * service in the summaries read once (service:read on it is all it takes).
 * Returns [{from, to: [upstream names]}], `from` being the proxied service.
 */
async function loadSidecars(scope, proxies) {
  const out = [];
  await pool(proxies, FETCH_PARALLEL, async (proxy) => {
    const r = await api(`/v1/catalog/service/${enc(proxy)}`, { signal: scope.signal, notFound: true });
    for (const e of r.data || []) {
      const p = e.ServiceProxy || {};
      out.push({ from: p.DestinationServiceName || e.ServiceName, to: (p.Upstreams || []).map((u) => u.DestinationName) });
    }
  });
  return out;
}

/** What a service is in the mesh, in words. */
function meshRole(kind, dest, hasSidecar) {
  if (kind === 'connect-proxy') return dest ? `sidecar proxy for ${dest}` : 'sidecar proxy';
  if (GATEWAY_KINDS.includes(kind)) return kind.replace('-', ' ');
  if (hasSidecar) return 'in mesh (sidecar)';
  return '';
}

// === layout ===

function page(scope, main, title, ...children) {
  fill(main, h('div', { class: 'page-head' }, h('h1', null, title)), scope.errorBox, ...children);
}

function breadcrumbs(parts) {
  return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumbs' },
    parts.map(([href, text], i) => [i ? h('span', { class: 'sep' }, '/') : null, href ? link(href, text) : h('span', null, text)]));
}

// === services ===

function viewServices(scope, main) {
  const summary = h('p', { class: 'summary', data: { test: 'services-summary' } }, 'Loading…');
  const filter = h('input', { type: 'search', class: 'filter', placeholder: 'Filter by name, tag or role', 'aria-label': 'Filter services', data: { test: 'services-filter' } });
  const body = h('tbody', { data: { test: 'services-body' } });
  page(scope, main, 'Services', summary, h('div', { class: 'toolbar' }, filter),
    h('table', { class: 'list services' }, thead(['Service', 'Health', 'Instances', 'Mesh', 'Tags', 'Owner']), body));
  const cache = new Map();

  const applyFilter = () => {
    const q = filter.value.trim().toLowerCase();
    for (const { el, item } of cache.values()) el.hidden = Boolean(q) && !item.search.includes(q);
  };
  filter.addEventListener('input', applyFilter);

  scope.watch(UI_SERVICES, (d, r) => {
    const rows = (d || []).map(serviceSummary);
    keyed(body, cache, rows, (row) => row.name, (row) => row.sig, serviceRow);
    applyFilter();
    renderServicesSummary(summary, rows, r.filtered);
    // Marks for the benchmark; the summaries carry health, so rows and colours land together.
    if (rows.length) markOnce('mesh:services-rendered', 'mesh:services-health');
  }, { label: 'Services' });
}

/** performance.mark each name the first time only (later renders are updates, not loads). */
function markOnce(...names) {
  for (const n of names) if (!performance.getEntriesByName(n).length) performance.mark(n);
}

/** One row of the list from a service's summary; `sig` covers only what the row shows. */
function serviceSummary(s) {
  const counts = { passing: s.ChecksPassing || 0, warning: s.ChecksWarning || 0, critical: s.ChecksCritical || 0 };
  const tags = s.Tags || [];
  const owners = [...new Set((s.Owners || []).map((o) => o || 'api'))];
  const role = meshRole(s.Kind || '', '', s.ConnectedWithProxy);
  const status = worst(Object.keys(counts).filter((k) => counts[k]));
  return {
    name: s.Name, tags, counts, owners, role, status, instances: s.InstanceCount || 0,
    search: [s.Name, role, ...tags].join(' ').toLowerCase(),
    sig: JSON.stringify([counts, s.InstanceCount, role, tags, owners]),
  };
}

function serviceRow(r) {
  const tags = r.tags.slice(0, 6);
  return h('tr', { class: `row status-${r.status}`, data: { test: 'service-row', service: r.name, status: r.status } },
    h('td', null, link(`#/services/${enc(r.name)}`, r.name, { data: { test: 'service-link' } })),
    h('td', null, badge(r.status, r.status === 'none' ? 'no checks' : r.status), ' ', r.status === 'none' ? null : h('span', { class: 'counts' }, healthSummary(r.counts))),
    h('td', { class: 'num', data: { test: 'instance-count' } }, String(r.instances)),
    h('td', null, r.role),
    h('td', null, chips(tags), r.tags.length > tags.length ? muted(` +${r.tags.length - tags.length}`) : null),
    h('td', null, r.owners.length === 1 ? ownerLabel(r.owners[0]) : r.owners.length ? h('span', { class: 'muted', title: r.owners.join('\n') }, 'several') : null));
}

function renderServicesSummary(el, rows, filtered) {
  const by = { passing: 0, warning: 0, critical: 0, none: 0 };
  for (const r of rows) by[r.status]++;
  fill(el, `${rows.length} service${rows.length === 1 ? '' : 's'}: `,
    ['critical', 'warning', 'passing'].filter((s) => by[s]).flatMap((s, i) => [i ? ' · ' : '', h('span', { class: `status-text-${s}` }, `${by[s]} ${s}`)]),
    by.none ? ` · ${by.none} without checks` : '',
    filtered ? h('span', { class: 'filtered', data: { test: 'filtered' } }, ' (some hidden: your token may not read them)') : '');
}

// === one service ===

function viewService(scope, main, [name]) {
  const st = { health: null, connect: null, sidecars: [], hidden: false, intentions: null, decisions: new Map(), gateway: null, ingress: [] };
  const head = h('div', { class: 'service-head' });
  const instances = h('div', { class: 'instances', data: { test: 'instances' } }, muted('Loading…'));
  const proxies = h('div', { data: { test: 'proxies' } }, muted('Loading…'));
  const gateway = h('div', { data: { test: 'gateway' } });
  const graph = h('div', { class: 'graph-wrap', data: { test: 'topology' } }, muted('Loading…'));
  const ixns = h('div', { data: { test: 'service-intentions' } }, muted('Loading…'));
  page(scope, main, name, breadcrumbs([['#/services', 'Services'], [null, name]]), head,
    card('Instances', instances), card('Sidecars and gateways', proxies, gateway),
    card('Upstreams and downstreams', graph), card('Intentions', ixns));
  const instCache = new Map();

  const renderHead = () => {
    const all = (st.health || []).flatMap((e) => e.Checks || []);
    const tags = [...new Set((st.health || []).flatMap((e) => e.Service.Tags || []))];
    const kinds = [...new Set((st.health || []).map((e) => e.Service.Kind).filter(Boolean))];
    const status = worst(all.map((c) => c.Status));
    fill(head, facts([
      ['Health', [badge(status, status === 'none' ? 'no checks' : status), ' ', healthSummary(countStatus(all))]],
      ['Instances', String((st.health || []).length)],
      ['Kind', kinds.join(', ')],
      ['Tags', chips(tags)],
    ]));
    head.dataset.status = status;
  };

  const renderInstances = () => {
    renderHead();
    if (!st.health.length) {
      instCache.clear();
      fill(instances, muted(`No instance of ${name} is registered.`));
      return;
    }
    if (!instances.querySelector('[data-test="instance"]')) instances.replaceChildren();
    keyed(instances, instCache, st.health, (e) => `${e.Node.Node}/${e.Service.ID}`, (e) => JSON.stringify(e), (e) => instanceCard(e));
  };

  const renderProxies = () => {
    if (!st.connect.length) {
      const kind = (st.health || []).map((e) => e.Service.Kind).find((k) => GATEWAY_KINDS.includes(k));
      fill(proxies, muted(kind ? `${name} is itself a ${kind.replace('-', ' ')}.` : `No sidecar proxy or gateway serves ${name} in the mesh.`));
      return;
    }
    fill(proxies, h('table', { class: 'list' }, thead(['Proxy', 'Role', 'Node', 'Address', 'Health', 'Upstreams', 'Owner']),
      h('tbody', null, st.connect.map(proxyRow))));
  };

  const refreshGateway = scope.coalesce('Gateway', async () => {
    const kind = (st.health || []).map((e) => e.Service.Kind).find((k) => GATEWAY_KINDS.includes(k));
    if (!kind) {
      st.gateway = null;
      gateway.replaceChildren();
      return;
    }
    const r = await api(`/v1/config/${enc(kind)}/${enc(name)}`, { signal: scope.signal, notFound: true });
    st.gateway = r.data;
    fill(gateway, h('h3', null, `${kind} configuration`), r.data ? gatewayConfig(kind, r.data) : muted(`No ${kind} config entry named ${name}.`),
      r.data ? h('p', null, 'Managed by ', ownerLabel(r.data.Owner)) : null);
    renderGraph();
    refreshDecisions();
  });

  const renderGraph = () => {
    const topo = topology(name, st);
    const decision = (src, dst) => st.decisions.get(`${src}\n${dst}`);
    fill(graph, topo.up.length || topo.down.length ? graphSvg(name, topo, decision) : null,
      edgeList(name, topo, decision),
      st.hidden ? h('p', { class: 'muted' }, 'Some services are hidden from this token (service:read), so downstreams may be missing.') : null);
  };

  const refreshDecisions = scope.coalesce('Intention decisions', async () => {
    const topo = topology(name, st);
    const edges = [...topo.down.map((d) => [d, name]), ...topo.up.map((u) => [name, u])];
    const next = new Map();
    await pool(edges, FETCH_PARALLEL, async ([src, dst]) => {
      try {
        const q = `source=${enc(src)}&destination=${enc(dst)}`;
        const d = (await api(`/v1/connect/intentions/check?${q}`, { signal: scope.signal })).data;
        // The check answers for L4; an edge governed by HTTP permissions is decided per request.
        const by = decidingIntention(st.intentions, src, dst);
        next.set(`${src}\n${dst}`, { ...d, l7: Boolean(by && by.Permissions) });
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        next.set(`${src}\n${dst}`, { error: e });
      }
    });
    st.decisions = next;
    renderGraph();
  });

  let proxyNames = [];
  let proxySig = null;
  const refreshDownstreams = scope.coalesce('Downstreams', async () => {
    const [sidecars, ingress] = await Promise.all([loadSidecars(scope, proxyNames), listEntries(scope, 'ingress-gateway')]);
    st.sidecars = sidecars;
    st.ingress = ingress;
    renderGraph();
    refreshDecisions();
  });

  scope.watch(`/v1/health/service/${enc(name)}`, (d) => {
    st.health = d || [];
    renderInstances();
    refreshGateway();
    refreshDecisions();
  }, { label: 'Instances', slot: instances });
  scope.watch(`/v1/health/connect/${enc(name)}`, (d) => {
    st.connect = d || [];
    renderProxies();
    refreshDecisions();
  }, { label: 'Sidecars', slot: proxies });
  // Downstreams are other services' sidecars and ingress gateways. The summaries also change
  // with every check, so those are read again only when a proxy or gateway comes, goes or moves.
  scope.watch(UI_SERVICES, (d, r) => {
    const kinded = (d || []).filter((s) => s.Kind);
    const sig = JSON.stringify([r.filtered, kinded.map((s) => [s.Name, s.Kind, s.InstanceCount, s.Nodes])]);
    if (sig === proxySig) return;
    proxySig = sig;
    proxyNames = kinded.filter((s) => s.Kind === 'connect-proxy').map((s) => s.Name);
    st.hidden = r.filtered;
    refreshDownstreams();
  }, { label: 'Catalog' });
  scope.watch('/v1/connect/intentions', (d) => {
    st.intentions = d || [];
    fill(ixns, serviceIntentions(name, st.intentions));
    refreshDecisions();
  }, { label: 'Intentions', slot: ixns });
}

function instanceCard(e) {
  const svc = e.Service;
  const checks = e.Checks || [];
  const status = worst(checks.map((c) => c.Status));
  const owner = svc.Owner || 'api';
  const addr = `${svc.Address || e.Node.Address}:${svc.Port}`;
  const msg = message('instance-msg');
  return h('article', { class: `instance status-${status}`, data: { test: 'instance', instance: svc.ID, node: e.Node.Node, status } },
    h('header', null,
      h('strong', { class: 'instance-id' }, svc.ID), ' ',
      badge(status, status === 'none' ? 'no checks' : status), ' ',
      muted('on '), link(`#/nodes/${enc(e.Node.Node)}`, e.Node.Node), muted(` · ${addr}`), ' ', ownerLabel(owner)),
    facts([
      ['Tags', chips(svc.Tags)],
      ['Meta', metaChips(svc.Meta)],
      ['Kind', svc.Kind],
      ['Proxy for', svc.Proxy && svc.Proxy.DestinationServiceName],
      ['Connect', svc.Connect && svc.Connect.Native ? 'native' : ''],
    ]),
    checks.length ? checkTable(checks) : muted('No health checks.'),
    ownedElsewhere(owner) ? ownerNote(owner, 'service instance')
      : h('div', { class: 'actions' },
        twoStep('Deregister', `Really deregister ${svc.ID}?`, () => deregister(e, msg), { data: { test: 'service-deregister' } }), msg));
}

/** Deregister through the agent that holds the instance if it is this one, else the catalog. */
async function deregister(e, msg) {
  try {
    try {
      await api(`/v1/agent/service/deregister/${enc(e.Service.ID)}`, { method: 'PUT' });
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404) throw err;
      await api('/v1/catalog/deregister', { method: 'PUT', body: { Node: e.Node.Node, ServiceID: e.Service.ID } });
    }
    msg.set('ok', 'Deregistered.');
  } catch (err) {
    msg.set('bad', errorBlock(err));
  }
}

function checkTable(checks) {
  return h('table', { class: 'list checks' }, thead(['Check', 'Status', 'Type', 'Output']),
    h('tbody', null, checks.map((c) => h('tr', { class: `status-${c.Status}`, data: { test: 'check', check: c.CheckID, status: c.Status } },
      h('td', null, c.Name || c.CheckID, c.ServiceID ? null : muted(' (node)'), c.Notes ? h('div', { class: 'muted' }, c.Notes) : null),
      h('td', null, h('span', { class: `badge status-${c.Status}`, data: { test: 'check-status', check: c.CheckID, status: c.Status } }, c.Status)),
      h('td', null, c.Type || ''),
      h('td', null, c.Output ? h('pre', { class: 'output' }, c.Output) : muted('—'))))));
}

function proxyRow(e) {
  const svc = e.Service;
  const status = worst((e.Checks || []).map((c) => c.Status));
  const ups = (svc.Proxy && svc.Proxy.Upstreams) || [];
  return h('tr', { class: `status-${status}`, data: { test: 'proxy-row', proxy: svc.ID, status } },
    h('td', null, svc.ID),
    h('td', null, meshRole(svc.Kind || '', svc.Proxy && svc.Proxy.DestinationServiceName, false) || (svc.Connect && svc.Connect.Native ? 'connect native' : '')),
    h('td', null, link(`#/nodes/${enc(e.Node.Node)}`, e.Node.Node)),
    h('td', null, `${svc.Address || e.Node.Address}:${svc.Port}`),
    h('td', null, badge(status, status === 'none' ? 'no checks' : status)),
    h('td', null, ups.length ? ups.map((u) => h('div', null, link(`#/services/${enc(u.DestinationName)}`, u.DestinationName), muted(` on ${u.LocalBindAddress || '127.0.0.1'}:${u.LocalBindPort}`))) : muted('none')),
    h('td', null, ownerLabel(svc.Owner)));
}

function gatewayConfig(kind, entry) {
  if (kind === 'ingress-gateway') {
    return h('table', { class: 'list' }, thead(['Listener', 'Protocol', 'Services']),
      h('tbody', null, (entry.Listeners || []).map((l) => h('tr', null, h('td', null, String(l.Port)), h('td', null, l.Protocol || 'tcp'),
        h('td', null, (l.Services || []).map((s) => h('div', null, link(`#/services/${enc(s.Name)}`, s.Name), s.Hosts && s.Hosts.length ? muted(` hosts ${s.Hosts.join(', ')}`) : null)))))));
  }
  if (kind === 'terminating-gateway') {
    return h('table', { class: 'list' }, thead(['Linked service', 'SNI', 'CA file']),
      h('tbody', null, (entry.Services || []).map((s) => h('tr', null, h('td', null, link(`#/services/${enc(s.Name)}`, s.Name)), h('td', null, s.SNI || ''), h('td', null, s.CAFile || '')))));
  }
  return h('pre', { class: 'output' }, JSON.stringify(entry, null, 2));
}

/** Config entries of one kind; a token that may not read them gets none (the graph is then partial). */
async function listEntries(scope, kind) {
  try {
    return (await api(`/v1/config/${kind}`, { signal: scope.signal, notFound: true })).data || [];
  } catch (e) {
    if (e instanceof ApiError) return [];
    throw e;
  }
}

/** The services a gateway entry sends traffic to. */
function gatewayTargets(entry) {
  if (!entry) return [];
  const names = entry.Listeners ? entry.Listeners.flatMap((l) => (l.Services || []).map((s) => s.Name)) : (entry.Services || []).map((s) => s.Name);
  return names.filter((n) => n && n !== '*');
}

/**
 * Upstreams from this service's sidecars (its own proxy config, or its
 * gateway entry); downstreams from other sidecars and ingress gateways.
 */
function topology(name, st) {
  const up = new Set(gatewayTargets(st.gateway));
  const down = new Set();
  for (const e of [...(st.connect || []), ...(st.health || [])]) {
    for (const u of (e.Service.Proxy && e.Service.Proxy.Upstreams) || []) up.add(u.DestinationName);
  }
  for (const g of st.ingress || []) if (gatewayTargets(g).includes(name)) down.add(g.Name);
  for (const { from, to } of st.sidecars) if (to.includes(name)) down.add(from);
  up.delete('');
  return { up: [...up].sort(), down: [...down].sort() };
}

/** The decision on an edge as a class and a word. */
function edgeState(d) {
  if (!d) return ['unknown', '…'];
  if (d.error) return ['unknown', 'unknown'];
  if (d.l7) return ['l7', 'L7 rules'];
  return d.Allowed ? ['allow', 'allowed'] : ['deny', 'denied'];
}

/** The intention that governs src → dst: the most precedent one whose names match (or are *). */
function decidingIntention(list, src, dst) {
  let best = null;
  for (const i of list || []) {
    if ((i.SourceName !== src && i.SourceName !== '*') || (i.DestinationName !== dst && i.DestinationName !== '*')) continue;
    if (!best || i.Precedence > best.Precedence) best = i;
  }
  return best;
}

/** The graph: downstreams on the left, the service in the middle, upstreams on the right. */
function graphSvg(name, topo, decision) {
  const boxW = 190;
  const boxH = 30;
  const rowH = 44;
  const gap = 150;
  const rows = Math.max(topo.down.length, topo.up.length, 1);
  const height = rows * rowH + 16;
  const width = boxW * 3 + gap * 2 + 20;
  const cx = 10 + boxW + gap;
  const cy = height / 2;
  const yAt = (i, n) => (height - n * rowH) / 2 + i * rowH + rowH / 2;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'graph', role: 'img', 'aria-label': `Upstreams and downstreams of ${name}` });
  const edge = (x1, y1, x2, y2, d, src, dst, labelAtEnd) => {
    const [cls, word] = edgeState(d);
    const mx = (x1 + x2) / 2;
    // The label sits at the outer end, on the side the curve does not bend towards.
    const lx = labelAtEnd ? x2 - 48 : x1 + 48;
    const [anchor, other] = labelAtEnd ? [y2, y1] : [y1, y2];
    const ly = other < anchor ? anchor + 15 : anchor - 6;
    const g = svg('g', { class: `edge edge-${cls}`, 'data-test': 'graph-edge', 'data-source': src, 'data-destination': dst, 'data-decision': cls });
    append(g, [
      svg('title', null, `${src} → ${dst}: ${d && d.Reason ? d.Reason : word}`),
      svg('path', { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 6},${y2}` }),
      svg('polygon', { points: `${x2},${y2} ${x2 - 8},${y2 - 4} ${x2 - 8},${y2 + 4}` }),
      svg('text', { x: lx, y: ly, 'text-anchor': 'middle' }, word),
    ]);
    root.append(g);
  };
  const box = (x, y, label, center) => {
    const short = label.length > 24 ? `${label.slice(0, 23)}…` : label;
    const g = svg('a', { href: `#/services/${enc(label)}`, class: center ? 'gnode center' : 'gnode' });
    append(g, [svg('title', null, label), svg('rect', { x, y: y - boxH / 2, width: boxW, height: boxH, rx: 6 }),
      svg('text', { x: x + boxW / 2, y: y + 4, 'text-anchor': 'middle' }, short)]);
    root.append(g);
  };
  topo.down.forEach((d, i) => edge(10 + boxW, yAt(i, topo.down.length), cx, cy, decision(d, name), d, name, false));
  topo.up.forEach((u, i) => edge(cx + boxW, cy, cx + boxW + gap, yAt(i, topo.up.length), decision(name, u), name, u, true));
  topo.down.forEach((d, i) => box(10, yAt(i, topo.down.length), d, false));
  box(cx, cy, name, true);
  topo.up.forEach((u, i) => box(cx + boxW + gap, yAt(i, topo.up.length), u, false));
  return root;
}

/** The same edges as a list, with the reason the intention check gave. */
function edgeList(name, topo, decision) {
  const edges = [...topo.down.map((d) => [d, name, 'downstream']), ...topo.up.map((u) => [name, u, 'upstream'])];
  if (!edges.length) return muted(`${name} has no upstreams and no downstreams in the mesh.`);
  return h('table', { class: 'list edges' }, thead(['Edge', 'Source', 'Destination', 'Decision', 'Why']),
    h('tbody', null, edges.map(([src, dst, kind]) => {
      const d = decision(src, dst);
      const [cls, word] = edgeState(d);
      return h('tr', { data: { test: 'edge', source: src, destination: dst, decision: cls } },
        h('td', null, kind),
        h('td', null, link(`#/services/${enc(src)}`, src)),
        h('td', null, link(`#/services/${enc(dst)}`, dst)),
        h('td', null, h('span', { class: `badge decision-${cls}` }, word)),
        h('td', null, d && d.error ? errorBlock(d.error) : d ? d.Reason || '' : muted('checking…')));
    })));
}

function serviceIntentions(name, list) {
  const mine = list.filter((i) => i.DestinationName === name || i.SourceName === name || i.DestinationName === '*');
  if (!mine.length) return muted(`No intention names ${name}; the default policy decides.`);
  return intentionTable(mine);
}

// === nodes ===

function viewNodes(scope, main) {
  const st = { nodes: null, checks: [], filtered: false };
  const body = h('tbody');
  const summary = h('p', { class: 'summary' });
  page(scope, main, 'Nodes', summary, h('table', { class: 'list' }, thead(['Node', 'Address', 'Health', 'Checks', 'Meta']), body));
  const cache = new Map();
  const render = () => {
    if (!st.nodes) return;
    const byNode = new Map();
    for (const c of st.checks) {
      if (!byNode.has(c.Node)) byNode.set(c.Node, []);
      byNode.get(c.Node).push(c);
    }
    const rows = st.nodes.map((n) => ({ n, checks: byNode.get(n.Node) || [] }));
    keyed(body, cache, rows, (r) => r.n.Node, (r) => JSON.stringify(r), nodeRow);
    const crit = rows.filter((r) => worst(r.checks.map((c) => c.Status)) === 'critical').length;
    fill(summary, `${rows.length} node${rows.length === 1 ? '' : 's'}`, crit ? [' · ', h('span', { class: 'status-text-critical' }, `${crit} critical`)] : '',
      filteredNote({ filtered: st.filtered }, 'node:read'));
  };
  scope.watch('/v1/catalog/nodes', (d, r) => {
    st.nodes = d || [];
    st.filtered = r.filtered;
    render();
  }, { label: 'Nodes' });
  // Node-level checks only (ServiceID empty): far smaller than every check in the cluster.
  scope.watch(`/v1/health/state/any?filter=${enc('ServiceID == ""')}`, (d) => {
    st.checks = d || [];
    render();
  }, { label: 'Node checks' });
}

function nodeRow({ n, checks }) {
  const status = worst(checks.map((c) => c.Status));
  return h('tr', { class: `row status-${status}`, data: { test: 'node-row', node: n.Node, status } },
    h('td', null, link(`#/nodes/${enc(n.Node)}`, n.Node)),
    h('td', null, n.Address),
    h('td', null, badge(status, status === 'none' ? 'no checks' : status)),
    h('td', null, checks.map((c) => h('div', { class: `status-text-${c.Status}` }, `${c.Name || c.CheckID}: ${c.Status}`))),
    h('td', null, metaChips(n.Meta)));
}

function viewNode(scope, main, [name]) {
  const info = h('div', null, muted('Loading…'));
  const checks = h('div', { data: { test: 'node-checks' } });
  const services = h('div');
  page(scope, main, name, breadcrumbs([['#/nodes', 'Nodes'], [null, name]]), info, card('Checks', checks), card('Services', services));
  scope.watch(`/v1/health/node/${enc(name)}`, (d) => {
    fill(checks, d && d.length ? checkTable(d) : muted('No checks.'));
  }, { label: 'Checks', slot: checks });
  scope.watch(`/v1/catalog/node/${enc(name)}`, (d) => {
    if (!d) {
      fill(info, muted(`No node named ${name} is in the catalog.`));
      services.replaceChildren();
      return;
    }
    const n = d.Node;
    fill(info, facts([['ID', n.ID], ['Address', n.Address], ['Datacenter', n.Datacenter],
      ['Tagged addresses', metaChips(n.TaggedAddresses)], ['Meta', metaChips(n.Meta)]]));
    const list = Object.values(d.Services || {});
    fill(services, list.length ? h('table', { class: 'list' }, thead(['Instance', 'Service', 'Address', 'Kind', 'Tags', 'Owner']),
      h('tbody', null, list.map((s) => h('tr', null, h('td', null, s.ID), h('td', null, link(`#/services/${enc(s.Service)}`, s.Service)),
        h('td', null, `${s.Address || n.Address}:${s.Port}`), h('td', null, s.Kind || ''), h('td', null, chips(s.Tags)), h('td', null, ownerLabel(s.Owner)))))) : muted('No services on this node.'));
  }, { label: 'Node', notFound: true, slot: info });
}

// === cluster: members and Raft ===

const MEMBER_STATUS = { 1: 'alive', 2: 'leaving', 3: 'left', 4: 'failed' };

function viewCluster(scope, main) {
  const members = h('div', null, muted('Loading…'));
  const raft = h('div', null, muted('Loading…'));
  const st = { config: null, health: null, leader: '' };
  page(scope, main, 'Cluster', card('Raft peers', raft), card('Members (LAN gossip)', members));
  const renderRaft = () => {
    if (!st.config) return;
    const byId = new Map(((st.health && st.health.Servers) || []).map((s) => [s.ID, s]));
    fill(raft,
      st.health ? facts([['Cluster health', badge(st.health.Healthy ? 'passing' : 'critical', st.health.Healthy ? 'healthy' : 'unhealthy')],
        ['Failure tolerance', String(st.health.FailureTolerance)], ['Leader', st.leader]]) : facts([['Leader', st.leader]]),
      h('table', { class: 'list' }, thead(['Node', 'ID', 'Address', 'Role', 'Voter', 'Health', 'Last contact', 'Last term', 'Last index', 'Stable since']),
        h('tbody', null, (st.config.Servers || []).slice().sort((a, b) => a.Node.localeCompare(b.Node)).map((s) => {
          const a = byId.get(s.ID) || {};
          const healthy = a.Healthy === undefined ? null : a.Healthy;
          return h('tr', { data: { test: 'raft-peer', node: s.Node, leader: String(Boolean(s.Leader)) } },
            h('td', null, s.Node), h('td', null, h('code', { title: s.ID }, shortId(s.ID))), h('td', null, s.Address),
            h('td', null, s.Leader ? h('strong', null, 'leader') : 'follower'), h('td', null, s.Voter ? 'yes' : 'no'),
            h('td', null, healthy === null ? muted('—') : badge(healthy ? 'passing' : 'critical', healthy ? 'healthy' : 'unhealthy')),
            h('td', null, a.LastContact ? fmtDuration(a.LastContact) : muted('—')), h('td', null, a.LastTerm ?? ''), h('td', null, a.LastIndex ?? ''),
            h('td', null, a.StableSince ? fmtTime(a.StableSince) : ''));
        }))));
  };
  scope.watch('/v1/operator/raft/configuration', (d) => {
    st.config = d;
    renderRaft();
  }, { label: 'Raft configuration', poll: true, slot: raft });
  scope.watch('/v1/operator/autopilot/health', (d) => {
    st.health = d;
    renderRaft();
  }, { label: 'Autopilot health', poll: true });
  scope.watch('/v1/status/leader', (d) => {
    st.leader = d || '(none)';
    renderRaft();
  }, { label: 'Leader', poll: true });
  scope.watch('/v1/agent/members', (d, r) => {
    fill(members, filteredNote(r, 'node:read'), h('table', { class: 'list' }, thead(['Name', 'Address', 'Status', 'Role', 'Datacenter', 'Version']),
      h('tbody', null, (d || []).map((m) => {
        const status = MEMBER_STATUS[m.Status] || m.State || String(m.Status);
        const cls = status === 'alive' ? 'passing' : status === 'failed' ? 'critical' : 'warning';
        const tags = m.Tags || {};
        return h('tr', { data: { test: 'member', member: m.Name, status } },
          h('td', null, m.Name), h('td', null, `${m.Addr}:${m.Port}`), h('td', null, badge(cls, status)),
          h('td', null, tags.role === 'consul' ? 'server' : 'client'), h('td', null, tags.dc || ''), h('td', null, tags.version || ''));
      }))));
  }, { label: 'Members', poll: true, slot: members });
}

// === key/value ===

const kvPath = (key) => key.split('/').map(enc).join('/');
const kvHref = (key) => `#/kv/${kvPath(key)}`;

function viewKv(scope, main, [rest]) {
  let key;
  try {
    key = (rest || '').split('/').map(decodeURIComponent).join('/');
  } catch {
    page(scope, main, 'Key/Value', h('p', { class: 'error' }, 'That key path is not valid URL encoding.'), link('#/kv/', 'Back to the root'));
    return;
  }
  if (key === '' || key.endsWith('/')) kvFolder(scope, main, key);
  else kvKey(scope, main, key);
}

function kvCrumbs(key) {
  const parts = key.split('/');
  const out = [['#/kv/', 'Key/Value']];
  let acc = '';
  parts.forEach((p, i) => {
    if (p === '' && i === parts.length - 1) return;
    acc += p + (i < parts.length - 1 ? '/' : '');
    out.push([i === parts.length - 1 || (i === parts.length - 2 && parts[parts.length - 1] === '') ? null : kvHref(acc), p]);
  });
  return breadcrumbs(out);
}

function kvFolder(scope, main, prefix) {
  const list = h('tbody', { data: { test: 'kv-list' } });
  const empty = h('p', { class: 'muted' });
  const newKey = h('input', { type: 'text', placeholder: 'name, or name/ for a folder', data: { test: 'kv-new-key' }, autocomplete: 'off' });
  const newValue = h('textarea', { rows: 6, data: { test: 'kv-new-value' }, spellcheck: 'false' });
  const msg = message('kv-create-msg');
  const create = h('form', { class: 'card form', data: { test: 'kv-create-form' } },
    h('h2', null, `Create in ${prefix || '/'}`),
    field('Key', newKey, prefix ? `Created under ${prefix}` : 'A name ending in / makes a folder.'),
    field('Value', newValue),
    h('div', { class: 'actions' }, h('button', { type: 'submit', data: { test: 'kv-create' } }, 'Create'), msg));
  create.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const rel = newKey.value.trim();
    if (!rel || rel.startsWith('/')) {
      msg.set('bad', 'Give a key name that does not start with /.');
      return;
    }
    const full = prefix + rel;
    try {
      // cas=0: create only; an existing key is not overwritten.
      const r = await api(`/v1/kv/${kvPath(full)}?cas=0`, { method: 'PUT', body: full.endsWith('/') ? '' : newValue.value });
      if (r.data !== true) {
        msg.set('conflict', `${full} already exists: `, link(kvHref(full), 'open it'), ' to edit it.');
        return;
      }
      newKey.value = '';
      newValue.value = '';
      if (full.endsWith('/')) msg.set('ok', `Created folder ${full}.`);
      else location.hash = kvHref(full);
    } catch (e) {
      msg.set('bad', errorBlock(e));
    }
  });
  const folderActions = h('div', { class: 'actions' });
  if (prefix) {
    const dmsg = message('kv-folder-msg');
    append(folderActions, [twoStep('Delete folder', `Delete ${prefix} and everything in it?`, async () => {
      try {
        await api(`/v1/kv/${kvPath(prefix)}?recurse`, { method: 'DELETE' });
        location.hash = kvHref(prefix.replace(/[^/]*\/$/, ''));
      } catch (e) {
        dmsg.set('bad', errorBlock(e));
      }
    }, { data: { test: 'kv-delete-folder' } }), dmsg]);
  }
  page(scope, main, 'Key/Value', kvCrumbs(prefix), card(null, h('table', { class: 'list kv' }, thead(['Key', 'Type']), list), empty, folderActions), create);
  const cache = new Map();
  scope.watch(`/v1/kv/${kvPath(prefix)}?keys&separator=/`, (d) => {
    const keys = (d || []).filter((k) => k !== prefix).sort();
    keyed(list, cache, keys, (k) => k, (k) => k, (k) => {
      const rel = k.slice(prefix.length);
      const folder = k.endsWith('/');
      return h('tr', { data: { test: 'kv-row', key: k } },
        h('td', null, link(kvHref(k), rel, { class: folder ? 'folder' : 'key' })),
        h('td', { class: 'muted' }, folder ? 'folder' : 'key'));
    });
    fill(empty, keys.length ? '' : d === null
      ? `No keys under ${prefix || '/'} (or none your token may read: reading needs key:read on them).`
      : 'This folder is empty.');
  }, { label: 'Keys', notFound: true, slot: empty });
}

function kvKey(scope, main, key) {
  const st = { entry: undefined, loadedIndex: 0, loadedText: '', dirty: false };
  const value = h('textarea', { rows: 14, data: { test: 'kv-value' }, spellcheck: 'false' });
  const info = h('div');
  const stale = h('div', { class: 'msg warn', data: { test: 'kv-stale' }, hidden: true });
  const msg = message('kv-msg');
  const save = h('button', { type: 'submit', data: { test: 'kv-save' } }, 'Save');
  const reload = h('button', { type: 'button', class: 'secondary', data: { test: 'kv-reload' } }, 'Load current value');
  const remove = twoStep('Delete', `Delete ${key}?`, () => kvDelete(key, st, msg), { data: { test: 'kv-delete' } });
  const form = h('form', { class: 'card form', data: { test: 'kv-form' } }, info, field('Value', value), stale,
    h('div', { class: 'actions' }, save, reload, remove, msg));
  const parent = key.includes('/') ? key.slice(0, key.lastIndexOf('/') + 1) : '';
  const holder = h('div', null, muted('Loading…'));
  page(scope, main, 'Key/Value', kvCrumbs(key), holder, h('p', null, link(kvHref(parent), `Back to ${parent || '/'}`)));

  const load = (entry) => {
    st.entry = entry;
    st.loadedIndex = entry ? entry.ModifyIndex : 0;
    const text = entry ? b64ToText(entry.Value) : '';
    st.binary = text === null;
    st.loadedText = text === null ? entry.Value || '' : text;
    value.value = st.loadedText;
    value.readOnly = st.binary;
    st.dirty = false;
    stale.hidden = true;
    fill(info, entry ? facts([['Key', h('code', null, key)], ['Version (ModifyIndex)', String(entry.ModifyIndex)], ['Flags', String(entry.Flags)],
      ['Locked by session', entry.Session], ['Encoding', st.binary ? 'binary: shown as base64, read-only here' : '']])
      : h('p', { class: 'muted', data: { test: 'kv-missing' } }, `${key} does not exist. Save creates it.`));
    remove.hidden = !entry;
  };
  value.addEventListener('input', () => {
    st.dirty = value.value !== st.loadedText;
  });
  reload.addEventListener('click', async () => {
    try {
      const r = await api(`/v1/kv/${kvPath(key)}`, { notFound: true });
      load(r.data ? r.data[0] : null);
      msg.set('', '');
    } catch (e) {
      msg.set('bad', errorBlock(e));
    }
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (st.binary) return;
    await kvSave(key, value.value, st, msg, load);
  });
  scope.watch(`/v1/kv/${kvPath(key)}`, (d) => {
    const entry = d ? d[0] : null;
    const index = entry ? entry.ModifyIndex : 0;
    if (form.parentNode !== holder) fill(holder, form);
    if (st.entry === undefined || (!st.dirty && index !== st.loadedIndex)) {
      load(entry);
      return;
    }
    // The user is editing: keep their text and say that saving will conflict.
    stale.hidden = index === st.loadedIndex;
    fill(stale, entry ? `This key changed on the server (now version ${index}; you are editing version ${st.loadedIndex}). Saving will be refused; use “Load current value” to start from the new value.`
      : 'This key was deleted on the server since you loaded it.');
  }, { label: 'Key', notFound: true, slot: holder });
}

/** Save with check-and-set on the version the user loaded, so a concurrent change is never overwritten. */
async function kvSave(key, text, st, msg, load) {
  const flags = st.entry ? `&flags=${st.entry.Flags}` : '';
  try {
    const r = await api(`/v1/kv/${kvPath(key)}?cas=${st.loadedIndex}${flags}`, { method: 'PUT', body: text });
    if (r.data === true) {
      const fresh = await api(`/v1/kv/${kvPath(key)}`, { notFound: true });
      load(fresh.data ? fresh.data[0] : null);
      msg.set('ok', `Saved (version ${fresh.data ? fresh.data[0].ModifyIndex : '?'}).`);
      return;
    }
    const now = await api(`/v1/kv/${kvPath(key)}`, { notFound: true });
    const cur = now.data ? `it is now at version ${now.data[0].ModifyIndex}` : 'it has been deleted';
    msg.set('conflict', h('strong', null, 'Conflict — not saved. '),
      st.loadedIndex ? `Someone changed ${key} after you loaded version ${st.loadedIndex}; ${cur}. ` : `${key} was created by someone else meanwhile. `,
      'Your text is still in the box: copy it, use “Load current value”, and apply your change again.');
  } catch (e) {
    msg.set('bad', errorBlock(e));
  }
}

async function kvDelete(key, st, msg) {
  try {
    const r = await api(`/v1/kv/${kvPath(key)}?cas=${st.loadedIndex}`, { method: 'DELETE' });
    if (r.data === true) {
      location.hash = kvHref(key.slice(0, key.lastIndexOf('/') + 1));
      return;
    }
    msg.set('conflict', h('strong', null, 'Conflict — not deleted. '), `${key} changed after you loaded version ${st.loadedIndex}. Load the current value first.`);
  } catch (e) {
    msg.set('bad', errorBlock(e));
  }
}

// === intentions ===

const ixnHref = (src, dst) => `#/intentions/edit/${enc(src)}/${enc(dst)}`;

function intentionDecision(i) {
  if (i.Permissions) return h('span', { class: 'badge decision-l7' }, `L7: ${i.Permissions.length} rule${i.Permissions.length === 1 ? '' : 's'}`);
  return h('span', { class: `badge decision-${i.Action === 'allow' ? 'allow' : 'deny'}` }, i.Action);
}

function intentionTable(list, highlight) {
  return h('table', { class: 'list intentions' }, thead(['Source', '', 'Destination', 'Decision', 'Precedence', 'Description', 'Owner']),
    h('tbody', null, list.map((i) => h('tr', { class: highlight === i ? 'deciding' : '', data: { test: 'intention-row', source: i.SourceName, destination: i.DestinationName } },
      h('td', null, link(ixnHref(i.SourceName, i.DestinationName), i.SourceName)),
      h('td', { class: 'muted' }, '→'),
      h('td', null, link(ixnHref(i.SourceName, i.DestinationName), i.DestinationName)),
      h('td', null, intentionDecision(i)),
      h('td', { class: 'num' }, String(i.Precedence ?? '')),
      h('td', null, i.Description || ''),
      h('td', null, ownerLabel(i.Owner))))));
}

function viewIntentions(scope, main) {
  const body = h('div', null, muted('Loading…'));
  const filter = h('input', { type: 'search', class: 'filter', placeholder: 'Filter by source or destination', data: { test: 'intentions-filter' } });
  let list = [];
  const render = () => {
    const q = filter.value.trim().toLowerCase();
    const shown = q ? list.filter((i) => `${i.SourceName} ${i.DestinationName}`.toLowerCase().includes(q)) : list;
    fill(body, shown.length ? intentionTable(shown) : muted(list.length ? 'No intention matches the filter.' : 'No intentions: the default policy decides every connection.'));
  };
  filter.addEventListener('input', render);
  page(scope, main, 'Intentions',
    h('div', { class: 'toolbar' }, filter, link('#/intentions/new', 'New intention', { class: 'button', data: { test: 'intention-new' } })),
    card(null, body), checkTool(scope));
  scope.watch('/v1/connect/intentions', (d) => {
    list = (d || []).slice().sort((a, b) => (b.Precedence - a.Precedence) || a.DestinationName.localeCompare(b.DestinationName) || a.SourceName.localeCompare(b.SourceName));
    render();
  }, { label: 'Intentions', slot: body });
}

/** "Which intention decides source → destination": the check's answer and the intention it names. */
function checkTool(scope) {
  const src = h('input', { type: 'text', placeholder: 'source service', data: { test: 'check-source' } });
  const dst = h('input', { type: 'text', placeholder: 'destination service', data: { test: 'check-destination' } });
  const out = h('div', { data: { test: 'check-result' } });
  const form = h('form', { class: 'card form inline' }, h('h2', null, 'Which intention decides?'),
    h('div', { class: 'row-fields' }, field('Source', src), h('span', { class: 'arrow' }, '→'), field('Destination', dst),
      h('button', { type: 'submit', data: { test: 'check-run' } }, 'Check')), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const s = src.value.trim();
    const d = dst.value.trim();
    if (!s || !d) return;
    try {
      const q = `source=${enc(s)}&destination=${enc(d)}`;
      const [check, match] = await Promise.all([
        api(`/v1/connect/intentions/check?${q}`, { signal: scope.signal }),
        api(`/v1/connect/intentions/match?by=destination&name=${enc(d)}`, { signal: scope.signal }),
      ]);
      const candidates = ((match.data && match.data[d]) || []).slice().sort((a, b) => b.Precedence - a.Precedence);
      const decider = candidates.find((i) => i.SourceName === s || i.SourceName === '*');
      const allowed = check.data.Allowed;
      out.dataset.allowed = String(allowed);
      fill(out, h('p', { class: 'verdict' }, badge(allowed ? 'passing' : 'critical', allowed ? 'allowed' : 'denied'), ' ', check.data.Reason || ''),
        decider ? [h('p', null, 'Decided by:'), intentionTable([decider], decider)] : h('p', { class: 'muted' }, 'No intention matches: the default policy decides.'),
        candidates.length > 1 ? h('details', null, h('summary', null, `All ${candidates.length} intentions for ${d}, by precedence`), intentionTable(candidates, decider)) : null);
    } catch (e) {
      delete out.dataset.allowed;
      fill(out, errorBlock(e));
    }
  });
  return form;
}

const PATH_KINDS = [['', 'any path'], ['PathExact', 'exact'], ['PathPrefix', 'prefix'], ['PathRegex', 'regex']];
const HEADER_KINDS = [['Present', 'present'], ['Exact', 'exact'], ['Prefix', 'prefix'], ['Suffix', 'suffix'], ['Regex', 'regex']];

/** The L7 permissions editor: rows of action, path match, methods and header matches. */
function permissionsEditor(perms, disabled) {
  const rows = h('div', { class: 'perms', data: { test: 'ixn-permissions' } });
  const addRow = (p) => rows.append(permissionRow(p || { Action: 'allow' }, disabled));
  for (const p of perms) addRow(p);
  const add = h('button', { type: 'button', class: 'secondary', data: { test: 'perm-add' }, disabled }, 'Add permission');
  add.addEventListener('click', () => addRow(null));
  const el = h('div', null, rows, add, h('p', { class: 'hint' }, 'The first permission that matches a request decides it; a request no permission matches is denied. HTTP permissions need the destination to speak http, http2 or grpc (service-defaults Protocol).'));
  el.read = () => [...rows.children].map((r, n) => r.read(n));
  return el;
}

function permissionRow(p, disabled) {
  const http = p.HTTP || {};
  const pathKind = PATH_KINDS.find(([k]) => k && http[k] !== undefined);
  const action = select([['allow', 'allow'], ['deny', 'deny']], p.Action || 'allow', { data: { test: 'perm-action' }, disabled });
  const kind = select(PATH_KINDS, pathKind ? pathKind[0] : '', { data: { test: 'perm-path-kind' }, disabled });
  const path = h('input', { type: 'text', placeholder: '/api', value: pathKind ? http[pathKind[0]] : '', data: { test: 'perm-path' }, disabled });
  const methods = h('input', { type: 'text', placeholder: 'GET POST (empty: any)', value: (http.Methods || []).join(' '), data: { test: 'perm-methods' }, disabled });
  const headers = h('div', { class: 'headers' });
  for (const hd of http.Header || []) headers.append(headerRow(hd, disabled));
  const addHeader = h('button', { type: 'button', class: 'secondary small', data: { test: 'perm-header-add' }, disabled }, 'Add header match');
  addHeader.addEventListener('click', () => headers.append(headerRow({ Name: '', Present: true }, disabled)));
  const removeBtn = h('button', { type: 'button', class: 'secondary small', data: { test: 'perm-remove' }, disabled }, 'Remove');
  const row = h('div', { class: 'perm', data: { test: 'ixn-perm' } },
    h('div', { class: 'row-fields' }, field('Action', action), field('Path', kind), field('', path), field('Methods', methods), removeBtn),
    headers, addHeader);
  removeBtn.addEventListener('click', () => row.remove());
  row.read = (n) => {
    const out = { Action: action.value };
    const hp = {};
    if (kind.value) {
      if (!path.value.trim()) throw new Error(`Permission ${n + 1}: give the path to match, or choose “any path”.`);
      hp[kind.value] = path.value.trim();
    }
    const ms = methods.value.split(/[\s,]+/).filter(Boolean).map((m) => m.toUpperCase());
    if (ms.length) hp.Methods = ms;
    const hs = [...headers.children].map((r) => r.read(n));
    if (hs.length) hp.Header = hs;
    if (Object.keys(hp).length) out.HTTP = hp;
    return out;
  };
  return row;
}

function headerRow(hd, disabled) {
  const kindNow = HEADER_KINDS.find(([k]) => hd[k] !== undefined && hd[k] !== false);
  const name = h('input', { type: 'text', placeholder: 'header name', value: hd.Name || '', data: { test: 'perm-header-name' }, disabled });
  const kind = select(HEADER_KINDS, kindNow ? kindNow[0] : 'Present', { data: { test: 'perm-header-kind' }, disabled });
  const val = h('input', { type: 'text', placeholder: 'value', value: kindNow && kindNow[0] !== 'Present' ? hd[kindNow[0]] : '', data: { test: 'perm-header-value' }, disabled });
  const invert = h('input', { type: 'checkbox', checked: hd.Invert, data: { test: 'perm-header-invert' }, disabled });
  const rm = h('button', { type: 'button', class: 'secondary small', disabled }, '×');
  const row = h('div', { class: 'row-fields header-row' }, field('Header', name), field('Match', kind), field('', val), h('label', { class: 'check' }, invert, ' invert'), rm);
  rm.addEventListener('click', () => row.remove());
  const sync = () => {
    val.disabled = disabled || kind.value === 'Present';
  };
  kind.addEventListener('change', sync);
  sync();
  row.read = (n) => {
    if (!name.value.trim()) throw new Error(`Permission ${n + 1}: a header match needs a header name.`);
    const out = { Name: name.value.trim() };
    out[kind.value] = kind.value === 'Present' ? true : val.value;
    if (invert.checked) out.Invert = true;
    return out;
  };
  return row;
}

function viewIntentionEdit(scope, main, args, query) {
  const editing = args.length === 2;
  const [src0, dst0] = editing ? args : [query.get('source') || '', query.get('destination') || ''];
  const title = editing ? `${src0} → ${dst0}` : 'New intention';
  const slot = h('div', null, editing ? muted('Loading…') : null);
  page(scope, main, title, breadcrumbs([['#/intentions', 'Intentions'], [null, title]]), slot);
  if (!editing) {
    fill(slot, intentionForm(null, src0, dst0));
    return;
  }
  let shown = null;
  let form = null;
  scope.watch(`/v1/connect/intentions/exact?source=${enc(src0)}&destination=${enc(dst0)}`, (d) => {
    if (form && form.dirty()) {
      form.stale(d ? `This intention changed on the server (now version ${d.ModifyIndex}) while you were editing; saving overwrites that change.` : 'This intention was deleted on the server while you were editing.');
      return;
    }
    shown = d;
    form = intentionForm(shown, src0, dst0);
    fill(slot, d ? null : h('p', { class: 'muted' }, `No intention ${src0} → ${dst0} exists yet; saving creates it.`), form);
  }, { label: 'Intention', notFound: true, slot });
}

/** The create/edit form; an intention another owner manages is shown disabled with a note. */
function intentionForm(ixn, src0, dst0) {
  const owner = ixn ? ixn.Owner || 'api' : 'api';
  const ro = ownedElsewhere(owner);
  const isL7 = Boolean(ixn && ixn.Permissions);
  const source = h('input', { type: 'text', value: ixn ? ixn.SourceName : src0, data: { test: 'ixn-source' }, disabled: ro || Boolean(ixn), placeholder: 'web, or * for any' });
  const dest = h('input', { type: 'text', value: ixn ? ixn.DestinationName : dst0, data: { test: 'ixn-destination' }, disabled: ro || Boolean(ixn), placeholder: 'api, or * for any' });
  const mode = select([['l4', 'allow or deny every connection (L4)'], ['l7', 'HTTP permissions (L7)']], isL7 ? 'l7' : 'l4', { data: { test: 'ixn-mode' }, disabled: ro });
  const action = select([['allow', 'allow'], ['deny', 'deny']], ixn && ixn.Action ? ixn.Action : 'allow', { data: { test: 'ixn-action' }, disabled: ro });
  const desc = h('input', { type: 'text', value: ixn ? ixn.Description : '', data: { test: 'ixn-description' }, disabled: ro });
  const perms = permissionsEditor((ixn && ixn.Permissions) || [], ro);
  const actionField = field('Action', action);
  const permsField = h('div', { class: 'field' }, h('span', { class: 'label' }, 'Permissions'), perms);
  const sync = () => {
    actionField.hidden = mode.value !== 'l4';
    permsField.hidden = mode.value !== 'l7';
  };
  mode.addEventListener('change', sync);
  sync();
  const msg = message('ixn-msg');
  const stale = h('div', { class: 'msg warn', data: { test: 'ixn-stale' }, hidden: true });
  const form = h('form', { class: 'card form', data: { test: 'ixn-form', owner } },
    ro ? ownerNote(owner, 'intention') : null,
    h('div', { class: 'row-fields' }, field('Source', source), h('span', { class: 'arrow' }, '→'), field('Destination', dest)),
    field('Kind', mode), actionField, permsField, field('Description', desc),
    ixn ? facts([['Precedence', String(ixn.Precedence)], ['ID', ixn.ID], ['Owner', ownerLabel(owner)], ['Version (ModifyIndex)', String(ixn.ModifyIndex)], ['Meta', metaChips(ixn.Meta)]]) : null,
    stale,
    ro ? null : h('div', { class: 'actions' }, h('button', { type: 'submit', data: { test: 'ixn-save' } }, ixn ? 'Save' : 'Create'),
      ixn ? twoStep('Delete', `Delete ${ixn.SourceName} → ${ixn.DestinationName}?`, async () => {
        try {
          await api(`/v1/connect/intentions/exact?source=${enc(ixn.SourceName)}&destination=${enc(ixn.DestinationName)}`, { method: 'DELETE' });
          location.hash = '#/intentions';
        } catch (e) {
          msg.set('bad', errorBlock(e));
        }
      }, { data: { test: 'ixn-delete' } }) : null, msg));
  let dirty = false;
  form.addEventListener('input', () => { dirty = true; });
  form.addEventListener('click', (ev) => { if (ev.target.closest('button[type="button"]')) dirty = true; });
  form.dirty = () => dirty;
  form.stale = (text) => {
    stale.hidden = false;
    stale.textContent = text;
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (ro) return;
    const s = source.value.trim();
    const d = dest.value.trim();
    if (!s || !d) {
      msg.set('bad', 'Source and destination are required (use * for any).');
      return;
    }
    const body = { Description: desc.value };
    try {
      if (mode.value === 'l4') body.Action = action.value;
      else {
        body.Permissions = perms.read();
        if (!body.Permissions.length) throw new Error('Add at least one permission, or choose L4.');
      }
    } catch (e) {
      msg.set('bad', e.message);
      return;
    }
    if (ixn && ixn.Meta && Object.keys(ixn.Meta).length) body.Meta = ixn.Meta;
    try {
      await api(`/v1/connect/intentions/exact?source=${enc(s)}&destination=${enc(d)}`, { method: 'PUT', body });
      msg.set('ok', 'Saved.');
      location.hash = '#/intentions';
    } catch (e) {
      msg.set('bad', errorBlock(e));
    }
  });
  return form;
}

// === Connect CA ===

function viewCa(scope, main) {
  const roots = h('div', null, muted('Loading…'));
  const rotation = h('div', { data: { test: 'ca-rotation' } }, muted('Loading…'));
  const config = h('div');
  page(scope, main, 'Connect CA', card('Rotation', rotation), card('Roots', roots), card('Configuration', config), leafTool(scope));
  const refreshConfig = scope.coalesce('CA configuration', async () => {
    const r = await api('/v1/connect/ca/configuration', { signal: scope.signal });
    fill(config, caConfig(r.data || {}));
  });
  scope.watch('/v1/connect/ca/roots', (d) => {
    fill(roots, facts([['Trust domain', d.TrustDomain], ['Active root', h('code', null, d.ActiveRootID)]]),
      h('table', { class: 'list' }, thead(['Name', 'ID', 'Stage', 'Key', 'Valid from', 'Expires']),
        h('tbody', null, (d.Roots || []).map(rootRow))));
    refreshConfig();
  }, { label: 'Roots', slot: roots });
  // Progress counts leaves re-issued, which need not move the CA index: ask again every few seconds.
  scope.watch('/v1/connect/ca/rotation', (d) => fill(rotation, rotationView(d)), { label: 'Rotation', wait: '5s', slot: rotation });
}

function rootRow(r) {
  const stage = r.Stage || (r.Active ? 'active' : '');
  const days = (new Date(r.NotAfter).getTime() - Date.now()) / 864e5;
  const expiry = days < 0 ? 'critical' : days < 30 ? 'warning' : 'passing';
  return h('tr', { data: { test: 'ca-root', stage } },
    h('td', null, r.Name), h('td', null, h('code', { title: r.ID }, shortId(r.ID))),
    h('td', null, h('span', { class: `badge stage-${stage}` }, stage || '—')),
    h('td', null, `${r.PrivateKeyType || ''} ${r.PrivateKeyBits || ''}`),
    h('td', null, fmtTime(r.NotBefore)),
    h('td', null, h('span', { class: `status-text-${expiry}` }, fmtTime(r.NotAfter)), muted(` (${relTime(r.NotAfter)})`)));
}

const ROTATION_STEPS = [['pending', 'New root pending'], ['reissuing', 'Re-issuing leaves'], ['active', 'New root active'], ['retired', 'Old root retired']];

function rotationView(d) {
  if (!d || d.Stage === 'none') {
    return h('p', { data: { test: 'ca-stage', stage: 'none' } }, 'No rotation in progress. ', muted('Active root '), h('code', null, shortId(d && d.ActiveRootID)));
  }
  const at = ROTATION_STEPS.findIndex(([k]) => k === d.Stage);
  const steps = h('ol', { class: 'steps' }, ROTATION_STEPS.map(([k, text], i) => h('li', { class: i < at ? 'done' : i === at ? 'current' : '' }, text)));
  const total = Number(d.Total) || 0;
  const done = Number(d.Reissued) || 0;
  return h('div', { data: { test: 'ca-stage', stage: d.Stage } }, steps,
    h('div', { class: 'progress-line' }, h('progress', { max: total || 1, value: total ? done : 0 }), ` ${done} of ${total} leaves re-issued`),
    facts([['Stage', d.Stage], ['New root', h('code', { title: d.NewRootID }, shortId(d.NewRootID))], ['Old root', h('code', { title: d.OldRootID }, shortId(d.OldRootID))],
      ['Started', d.StartedAt && `${fmtTime(d.StartedAt)} (${relTime(d.StartedAt)})`], ['Activated', d.ActivatedAt && `${fmtTime(d.ActivatedAt)} (${relTime(d.ActivatedAt)})`],
      ['Spread window', d.SpreadWindow], ['Old root retires', d.OldRootRetiresAt && `${fmtTime(d.OldRootRetiresAt)} (${relTime(d.OldRootRetiresAt)})`]]));
}

/** CA settings worth reading; key material (PrivateKey, RootCert) is never shown. */
function caConfig(c) {
  const inner = c.Config || {};
  const pairs = [['Provider', c.Provider]];
  for (const [k, v] of Object.entries(inner)) {
    if (/key$|cert$|pem$/i.test(k) && !/type|bits/i.test(k)) continue;
    if (v !== null && typeof v !== 'object') pairs.push([k, String(v)]);
  }
  pairs.push(['RotationPendingPeriod', c.RotationPendingPeriod], ['RotationSpreadWindow', c.RotationSpreadWindow]);
  return facts(pairs);
}

/** Leaf expiry for one service, on request: asking signs a leaf if the agent has none cached. */
function leafTool(scope) {
  const svc = h('input', { type: 'text', placeholder: 'service name', data: { test: 'leaf-service' } });
  const out = h('div', { data: { test: 'leaf-result' } });
  const form = h('form', { class: 'card form inline' }, h('h2', null, 'Leaf certificate expiry'),
    h('p', { class: 'hint' }, 'Shows the leaf this agent holds for a service (it signs one if it has none; needs service:write). The private key is dropped as soon as it arrives and never shown.'),
    h('div', { class: 'row-fields' }, field('Service', svc), h('button', { type: 'submit', data: { test: 'leaf-show' } }, 'Show leaf')), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = svc.value.trim();
    if (!name) return;
    try {
      const r = await api(`/v1/agent/connect/ca/leaf/${enc(name)}`, { signal: scope.signal });
      const leaf = r.data || {};
      delete leaf.PrivateKeyPEM;
      const left = (new Date(leaf.ValidBefore).getTime() - Date.now()) / 36e5;
      const cls = left < 0 ? 'critical' : left < 24 ? 'warning' : 'passing';
      fill(out, facts([['Service URI', h('code', null, leaf.ServiceURI)], ['Serial', h('code', null, leaf.SerialNumber)],
        ['Valid from', fmtTime(leaf.ValidAfter)],
        ['Expires', [h('span', { class: `status-text-${cls}`, data: { test: 'leaf-expiry' } }, fmtTime(leaf.ValidBefore)), muted(` (${relTime(leaf.ValidBefore)})`)]],
        ['Signed by root', h('code', { title: leaf.RootID }, shortId(leaf.RootID))]]));
    } catch (e) {
      fill(out, errorBlock(e));
    }
  });
  return form;
}

// === mesh.d config status ===

const AT_RE = /^(.+?):(\d+):(\d+):?\s*(.*)$/s;

/** "path:line:col: message" split so the place stands out. */
function placed(text, test) {
  const m = AT_RE.exec(text || '');
  if (!m) return h('div', { class: 'placed', data: { test } }, text);
  return h('div', { class: 'placed', data: { test, file: m[1], line: m[2], col: m[3] } },
    h('code', { class: 'where' }, `${m[1]}:${m[2]}:${m[3]}`), m[4] ? [' ', m[4]] : null);
}

/** Every agent's last reload: the node check `mesh-config` each agent keeps in the catalog. */
const MESH_CONFIG_CHECKS = `/v1/health/state/any?filter=${enc('CheckID == "mesh-config"')}`;
const REPORT_HEAD_RE = /^(applied|refused) \((.*), reload (\d+)\)(?:: (\d+) change)?/;
const REPORT_CHANGE_RE = /^(\S+) (.+) \(([^()]*)\)$/;

/**
 * A mesh-config check's Output: "applied (<trigger>, reload <n>): <k> change(s)"
 * or "refused (<trigger>, reload <n>); ...", then lines "<action> <resource>
 * (<file:line:col>)", "error: <file:line:col: message>", "needs a restart: <setting>".
 */
function parseConfigReport(output) {
  const [head = '', ...rest] = String(output || '').split('\n');
  const m = REPORT_HEAD_RE.exec(head);
  const r = { outcome: m ? m[1] : 'unknown', trigger: m ? m[2] : '', count: m ? Number(m[3]) : null, head, changes: [], errors: [], restart: [] };
  let inError = false; // a line that is none of the three continues an error message of several lines
  for (const line of rest) {
    const change = REPORT_CHANGE_RE.exec(line);
    if (line.startsWith('error: ')) {
      r.errors.push(line.slice(7));
      inError = true;
    } else if (line.startsWith('needs a restart: ')) {
      r.restart.push(line.slice(17));
      inError = false;
    } else if (inError && !change) {
      r.errors[r.errors.length - 1] += `\n${line}`;
    } else if (change) {
      r.changes.push({ action: change[1], resource: change[2], at: change[3] });
      inError = false;
    }
  }
  r.changeCount = m && m[4] !== undefined ? Number(m[4]) : r.changes.length;
  return r;
}

/** The 403 a token without node:read would get: the checks are filtered out, not refused. */
function nodeReadDenied(path) {
  return new ApiError(403, "Permission denied: this token lacks permission 'node:read' on the agents' nodes, so their mesh-config checks were left out.", path);
}

function viewConfig(scope, main) {
  const status = h('div', { data: { test: 'config-status' } }, muted('Loading…'));
  const history = h('div');
  const agents = h('div', { data: { test: 'config-agents' } }, muted('Loading…'));
  const agentsBody = h('tbody', { data: { test: 'agents-body' } });
  const agentsTable = h('table', { class: 'list', data: { test: 'config-agents-table' } },
    thead(['Node', 'Last reload', 'Trigger', 'Reload #', 'Changes', 'Errors', 'Member', 'UI']), agentsBody);
  const agentsNote = h('div');
  const membersNote = h('div');
  const agentsCache = new Map();
  const st = { checks: null, filtered: false, members: new Map(), self: '' };
  const seen = new Map();
  const msg = message('reload-msg');
  const reload = h('button', { type: 'button', class: 'secondary', data: { test: 'config-reload' } }, 'Reload now');
  reload.addEventListener('click', async () => {
    try {
      await api('/v1/agent/reload', { method: 'PUT' });
      msg.set('ok', 'Reload requested.');
    } catch (e) {
      msg.set('bad', errorBlock(e));
    }
  });
  page(scope, main, 'mesh.d configuration', card('This agent', status, h('div', { class: 'actions' }, reload, msg)),
    card('All agents', agents), card('Reloads seen since this page opened', history));

  const renderAgents = () => {
    if (!st.checks) return;
    if (!st.checks.length && st.filtered) {
      fill(agents, errorBlock(nodeReadDenied(MESH_CONFIG_CHECKS)));
      return;
    }
    const rows = new Map();
    for (const c of st.checks) rows.set(c.Node, { node: c.Node, report: parseConfigReport(c.Output) });
    // An agent in the gossip pool without a check has not reported yet (starting, or older than this UI).
    for (const name of st.members.keys()) if (!rows.has(name)) rows.set(name, { node: name, report: null });
    const list = [...rows.values()].sort((a, b) => a.node.localeCompare(b.node));
    for (const r of list) {
      r.member = st.members.get(r.node) || null;
      r.self = r.node === st.self;
    }
    keyed(agentsBody, agentsCache, list, (r) => r.node, (r) => JSON.stringify(r), agentRow);
    const refused = list.filter((r) => r.report && r.report.outcome === 'refused').length;
    fill(agentsNote, list.length ? null : muted('No agent has reported a reload yet.'),
      refused ? h('p', { class: 'status-text-critical', data: { test: 'agents-refused' } }, `${refused} agent${refused === 1 ? '' : 's'} refused the last reload; each keeps its last good configuration.`) : null,
      filteredNote({ filtered: st.filtered }, 'node:read'));
    if (agentsTable.parentNode !== agents) {
      fill(agents, h('p', { class: 'hint' }, 'Each agent applies its own mesh.d files and publishes its last reload as the node check “mesh.d configuration” (always passing, so it never affects service health).'),
        agentsTable, agentsNote, membersNote);
    }
  };

  scope.watch('/v1/agent/self', (d) => {
    const cs = d.ConfigStatus || {};
    const cfg = d.Config || {};
    fill(status, configStatus(cfg, cs));
    if ((cfg.NodeName || '') !== st.self) {
      st.self = cfg.NodeName || '';
      renderAgents();
    }
    if (cs.Count !== undefined && !seen.has(cs.Count)) {
      seen.set(cs.Count, cs);
      fill(history, h('table', { class: 'list' }, thead(['#', 'When', 'Trigger', 'Result', 'Changes', 'Errors']),
        h('tbody', null, [...seen.values()].reverse().map((s) => h('tr', { data: { test: 'reload-row' } },
          h('td', null, String(s.Count)), h('td', null, s.FinishedAtMs ? fmtTime(s.FinishedAtMs) : ''), h('td', null, s.Trigger),
          h('td', null, badge(s.Ok ? 'passing' : 'critical', s.Ok ? 'applied' : 'refused')),
          h('td', null, String((s.Changes || []).length)), h('td', null, (s.Errors || []).map((e) => placed(e, 'history-error'))))))));
    }
  }, { label: 'Agent', poll: true, every: 2000, slot: status });
  scope.watch(MESH_CONFIG_CHECKS, (d, r) => {
    st.checks = d || [];
    st.filtered = r.filtered;
    renderAgents();
  }, { label: 'All agents', slot: agents });
  scope.watch('/v1/agent/members', (d) => {
    fill(membersNote);
    st.members = new Map((d || []).map((m) => [m.Name, { status: MEMBER_STATUS[m.Status] || '', addr: (m.Tags || {}).http_addr || '' }]));
    renderAgents();
  }, { label: 'Members', poll: true, every: 10000, slot: membersNote });
}

/** One agent's last reload, from its mesh-config check. */
function agentRow(r) {
  const rep = r.report;
  const outcome = rep ? rep.outcome : 'none';
  const status = outcome === 'applied' ? 'passing' : outcome === 'refused' ? 'critical' : 'none';
  const m = r.member;
  return h('tr', { class: `row status-${status}`, data: { test: 'agent-row', node: r.node, outcome } },
    h('td', null, link(`#/nodes/${enc(r.node)}`, r.node), r.self ? muted(' (this agent)') : null),
    h('td', { data: { test: 'agent-outcome' }, title: rep ? rep.head : '' },
      rep ? badge(status, outcome === 'unknown' ? 'unreadable' : outcome) : muted('not reported')),
    h('td', null, rep ? rep.trigger : ''),
    h('td', { class: 'num', data: { test: 'agent-count' } }, rep && rep.count !== null ? String(rep.count) : ''),
    h('td', { class: 'num', data: { test: 'agent-changes' }, title: rep ? rep.changes.map((c) => `${c.action} ${c.resource} (${c.at})`).join('\n') : '' },
      rep ? String(rep.changeCount) : ''),
    h('td', null, rep ? rep.errors.map((e) => placed(e, 'agent-error')) : null,
      rep ? rep.restart.map((s) => h('div', { class: 'hint', data: { test: 'agent-restart' } }, `needs a restart: ${s}`)) : null),
    h('td', null, m ? m.status : muted('—')),
    h('td', null, m && m.addr ? link(`http://${m.addr}/ui/#/config`, m.addr, { rel: 'noopener' }) : muted('—')));
}

function configStatus(cfg, cs) {
  const ok = Boolean(cs.Ok);
  return h('div', null,
    facts([['Agent', `${cfg.NodeName || ''} (${cfg.Server ? 'server' : 'client'}, ${cfg.Datacenter || ''})`],
      ['Last reload', [h('span', { data: { test: 'config-ok', ok: String(ok) } }, badge(ok ? 'passing' : 'critical', ok ? 'applied' : 'refused')),
        ' ', cs.FinishedAtMs ? `${fmtTime(cs.FinishedAtMs)} (${relTime(cs.FinishedAtMs)})` : '']],
      ['Trigger', cs.Trigger], ['Took', cs.DurationMs !== undefined ? `${Number(cs.DurationMs).toFixed(1)} ms` : ''],
      ['Reloads since start', String(cs.Count ?? '')]]),
    cs.Errors && cs.Errors.length ? h('div', { class: 'config-errors' }, h('h3', null, 'Errors (the last good configuration stays in force)'),
      cs.Errors.map((e) => placed(e, 'config-error'))) : null,
    h('h3', null, 'Changes applied'),
    cs.Changes && cs.Changes.length ? h('table', { class: 'list' }, thead(['Action', 'Object', 'Declared at']),
      h('tbody', null, cs.Changes.map((c) => h('tr', { data: { test: 'config-change' } }, h('td', null, h('span', { class: `badge action-${c.Action}` }, c.Action)),
        h('td', null, c.Resource), h('td', null, placed(c.At, 'config-at')))))) : muted('None.'),
    cs.NeedsRestart && cs.NeedsRestart.length ? [h('h3', null, 'Changed settings that need a restart'), h('ul', null, cs.NeedsRestart.map((s) => h('li', null, s)))] : null);
}

// === ACL ===

function aclTabs(active) {
  return h('nav', { class: 'tabs' }, [['tokens', 'Tokens'], ['policies', 'Policies']].map(([k, text]) =>
    link(`#/acl/${k}`, text, { class: k === active ? 'active' : '' })));
}

function viewAclTokens(scope, main) {
  const body = h('div', null, muted('Loading…'));
  page(scope, main, 'ACL', aclTabs('tokens'), card(null, body));
  scope.watch('/v1/acl/tokens', (d) => {
    fill(body, h('table', { class: 'list' }, thead(['Accessor ID', 'Description', 'Policies', 'Scope', 'Created']),
      h('tbody', null, (d || []).map((t) => h('tr', { data: { test: 'token-row', accessor: t.AccessorID } },
        h('td', null, link(`#/acl/tokens/${enc(t.AccessorID)}`, h('code', null, t.AccessorID))),
        h('td', null, t.Description || ''),
        h('td', null, (t.Policies || []).map((p) => link(`#/acl/policies/${enc(p.ID)}`, p.Name, { class: 'chip' }))),
        h('td', null, t.Local ? 'local' : 'global'),
        h('td', null, t.CreateTime ? fmtTime(t.CreateTime) : ''))))));
  }, { label: 'Tokens', poll: true, every: 5000, slot: body });
}

function viewAclToken(scope, main, [accessor]) {
  const body = h('div', null, muted('Loading…'));
  page(scope, main, 'ACL token', breadcrumbs([['#/acl/tokens', 'Tokens'], [null, accessor]]), card(null, body));
  scope.watch(`/v1/acl/token/${enc(accessor)}`, (t) => {
    const secret = h('code', { class: 'secret', data: { test: 'token-secret' } }, '•••••••• (hidden)');
    const reveal = h('button', { type: 'button', class: 'secondary small', data: { test: 'token-reveal' } }, 'Reveal');
    reveal.addEventListener('click', () => {
      secret.textContent = t.SecretID || '';
      reveal.remove();
    });
    fill(body, facts([['Accessor ID', h('code', null, t.AccessorID)], ['Secret ID', [secret, ' ', reveal]],
      ['Description', t.Description], ['Policies', (t.Policies || []).map((p) => link(`#/acl/policies/${enc(p.ID)}`, p.Name, { class: 'chip' }))],
      ['Scope', t.Local ? 'local' : 'global'], ['Created', t.CreateTime && fmtTime(t.CreateTime)], ['Expires', t.ExpirationTime && fmtTime(t.ExpirationTime)]]));
  }, { label: 'Token', poll: true, every: 5000, slot: body });
}

function viewAclPolicies(scope, main) {
  const body = h('div', null, muted('Loading…'));
  page(scope, main, 'ACL', aclTabs('policies'), card(null, body));
  scope.watch('/v1/acl/policies', (d) => {
    fill(body, h('table', { class: 'list' }, thead(['Name', 'Description', 'ID']),
      h('tbody', null, (d || []).map((p) => h('tr', { data: { test: 'policy-row', policy: p.Name } },
        h('td', null, link(`#/acl/policies/${enc(p.ID)}`, p.Name)), h('td', null, p.Description || ''), h('td', null, h('code', null, p.ID)))))));
  }, { label: 'Policies', poll: true, every: 5000, slot: body });
}

function viewAclPolicy(scope, main, [id]) {
  const body = h('div', null, muted('Loading…'));
  page(scope, main, 'ACL policy', breadcrumbs([['#/acl/policies', 'Policies'], [null, id]]), card(null, body));
  scope.watch(`/v1/acl/policy/${enc(id)}`, (p) => {
    fill(body, facts([['Name', p.Name], ['ID', h('code', null, p.ID)], ['Description', p.Description], ['Datacenters', (p.Datacenters || []).join(', ')]]),
      h('h3', null, 'Rules'), p.Rules ? h('pre', { class: 'output', data: { test: 'policy-rules' } }, p.Rules) : muted('Built in: every permission.'));
  }, { label: 'Policy', poll: true, every: 5000, slot: body });
}

// === login ===

function viewLogin(scope, main, _args, query) {
  const input = h('input', { type: 'password', autocomplete: 'off', placeholder: 'SecretID', data: { test: 'login-token' }, 'aria-label': 'Token' });
  const msg = message('login-error');
  const form = h('form', { class: 'card form login' }, h('h2', null, 'Log in with an ACL token'),
    h('p', { class: 'hint' }, 'The token is kept in this browser (localStorage) and sent with every request as X-Consul-Token.'),
    field('Token', input), h('div', { class: 'actions' }, h('button', { type: 'submit', data: { test: 'login-submit' } }, 'Log in'), msg));
  page(scope, main, 'Log in', form);
  input.focus();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (!t) {
      msg.set('bad', 'Paste a token SecretID.');
      return;
    }
    try {
      await api('/v1/acl/token/self', { tokenOverride: t });
    } catch (e) {
      // ACLs off (401): any token works, so keep it; an unknown token is refused.
      if (!(e instanceof ApiError) || e.status !== 401) {
        msg.set('bad', e instanceof ApiError && e.status === 403 ? 'This token is not known to the cluster.' : errorBlock(e));
        return;
      }
    }
    token.set(t);
    await showWho();
    location.hash = query.get('next') || '#/services';
  });
}

async function showWho() {
  const who = $('#who');
  if (!token.get()) {
    fill(who, link('#/login', 'Log in', { class: 'button', data: { test: 'login-link' } }));
    return;
  }
  const out = h('button', { type: 'button', class: 'secondary small', data: { test: 'logout' } }, 'Log out');
  out.addEventListener('click', () => {
    token.clear();
    showWho();
    location.hash = '#/login';
  });
  let label = 'token set';
  try {
    const r = await api('/v1/acl/token/self');
    label = r.data.Description || shortId(r.data.AccessorID);
  } catch (e) {
    label = e instanceof ApiError && e.status === 401 ? 'ACLs off' : e instanceof ApiError && e.status === 403 ? 'unknown token' : 'token set';
  }
  fill(who, h('span', { class: 'whoami', data: { test: 'whoami' } }, label), out);
}

// === router ===

const ROUTES = [
  [/^\/services$/, viewServices, 'services'],
  [/^\/services\/([^/]+)$/, viewService, 'services'],
  [/^\/nodes$/, viewNodes, 'nodes'],
  [/^\/nodes\/([^/]+)$/, viewNode, 'nodes'],
  [/^\/cluster$/, viewCluster, 'cluster'],
  [/^\/kv(?:\/(.*))?$/, viewKv, 'kv', true],
  [/^\/intentions$/, viewIntentions, 'intentions'],
  [/^\/intentions\/new$/, viewIntentionEdit, 'intentions'],
  [/^\/intentions\/edit\/([^/]+)\/([^/]+)$/, viewIntentionEdit, 'intentions'],
  [/^\/ca$/, viewCa, 'ca'],
  [/^\/config$/, viewConfig, 'config'],
  [/^\/acl(?:\/tokens)?$/, viewAclTokens, 'acl'],
  [/^\/acl\/tokens\/([^/]+)$/, viewAclToken, 'acl'],
  [/^\/acl\/policies$/, viewAclPolicies, 'acl'],
  [/^\/acl\/policies\/([^/]+)$/, viewAclPolicy, 'acl'],
  [/^\/login$/, viewLogin, 'login'],
];

let current = null;

function route() {
  if (current) current.close();
  const scope = new Scope();
  current = scope;
  const raw = location.hash.replace(/^#/, '') || '/services';
  const q = raw.indexOf('?');
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const query = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  const main = $('#main');
  for (const [re, view, nav, rawArgs] of ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === nav);
    let args;
    try {
      args = m.slice(1).map((a) => (a === undefined ? '' : rawArgs ? a : decodeURIComponent(a)));
    } catch {
      break;
    }
    window.scrollTo(0, 0);
    view(scope, main, args, query);
    return;
  }
  page(scope, main, 'Not found', h('p', null, 'No view here. ', link('#/services', 'Go to services')));
}

// === errors the page itself hits: shown, never swallowed ===

function reportError(e) {
  const banner = $('#banner');
  banner.hidden = false;
  append(banner, h('div', null, `UI error: ${e && e.message ? e.message : String(e)}`));
  console.error(e);
}

window.addEventListener('error', (ev) => reportError(ev.error || ev.message));
window.addEventListener('unhandledrejection', (ev) => {
  if (!isAbort(ev.reason)) reportError(ev.reason);
});
document.addEventListener('securitypolicyviolation', (ev) => reportError(new Error(`CSP blocked ${ev.blockedURI || ev.violatedDirective}`)));

window.addEventListener('hashchange', route);
// A page left for another keeps no blocking queries open: each holds one of the six
// connections a browser allows per host. A page restored from the back/forward cache starts them again.
window.addEventListener('pagehide', () => {
  if (current) current.close();
});
window.addEventListener('pageshow', (ev) => {
  if (ev.persisted) route();
});
showWho();
if (!location.hash || location.hash === '#' || location.hash === '#/') history.replaceState(null, '', '#/services');
route();
