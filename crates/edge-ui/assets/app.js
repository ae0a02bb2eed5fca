// edge dashboard: a hash-routed page over the /v1 API. It builds the page
// from DOM nodes and text, never from HTML strings, so a job name or a log
// line cannot become markup. Live updates come from one blocking query: when
// the store's index moves, the sections of the page on screen load again.
'use strict';

const TOKEN_KEY = 'edge-token';
const NS_KEY = 'edge-namespace';
const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  ns: sessionStorage.getItem(NS_KEY) || '*',
  // null: ACLs are off, everything is allowed.
  grants: null,
  view: null,
};

// ---- DOM helpers ---------------------------------------------------------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const k of kids) {
    if (k === undefined || k === null || k === false) continue;
    if (Array.isArray(k)) append(el, k);
    else if (k instanceof Node) el.appendChild(k);
    else el.appendChild(document.createTextNode(String(k)));
  }
}

function link(href, ...kids) { return h('a', { href }, ...kids); }
function badge(s) { return h('span', { class: `badge s-${String(s).replace(/[^a-z_-]/gi, '')}` }, s); }
function short(id) { return String(id || '').slice(0, 8); }
function enc(s) { return encodeURIComponent(s); }

// On a phone each row becomes a small card: cells carry their column's
// name in data-label, which the stylesheet shows beside the value.
function table(head, rows, opts = {}) {
  if (!rows.length) return h('p', { class: 'muted' }, opts.empty || 'None.');
  const cols = head.map((c) => (Array.isArray(c) ? c : [c, '']));
  return h('div', { class: 'table-wrap' },
    h('table', { 'aria-label': opts.label },
      h('thead', {}, h('tr', {}, cols.map(([text, cls]) => h('th', { scope: 'col', class: cls }, text)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c, i) => {
        const [label, cls] = cols[i] || ['', ''];
        if (c && c.num !== undefined) return h('td', { class: `num ${cls}`, 'data-label': label }, c.num);
        return h('td', { class: cls, 'data-label': label }, c);
      }))))));
}

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter((p) => p).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

// ---- time ----------------------------------------------------------------

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

function ago(ms) {
  const s = Math.round((ms - Date.now()) / 1000);
  const abs = Math.abs(s);
  if (abs < 60) return rtf.format(s, 'second');
  if (abs < 3600) return rtf.format(Math.round(s / 60), 'minute');
  if (abs < 86400) return rtf.format(Math.round(s / 3600), 'hour');
  return rtf.format(Math.round(s / 86400), 'day');
}

// A time as "x ago", the local date and time in its tooltip.
function when(ms) {
  if (!ms) return h('span', { class: 'muted' }, '–');
  const d = new Date(ms);
  return h('time', { datetime: d.toISOString(), title: d.toLocaleString(), 'data-ms': ms }, ago(ms));
}

setInterval(() => {
  for (const t of document.querySelectorAll('time[data-ms]')) t.textContent = ago(Number(t.dataset.ms));
}, 15000);

// ---- API -----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

async function api(path, opts = {}) {
  const headers = {};
  if (state.token) headers['x-edge-token'] = state.token;
  let body;
  if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  }
  const r = await fetch(path, { method: opts.method || 'GET', headers, body, signal: opts.signal });
  const index = Number(r.headers.get('x-edge-index') || 0);
  const text = await r.text();
  let data = text;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON: keep the text */ }
  if (!r.ok) {
    const msg = data && data.error ? data.error : (text || r.statusText);
    throw new ApiError(r.status, `${r.status}: ${msg}`);
  }
  return { data, index };
}

async function get(path, params, signal) { return (await api(path + qs(params), { signal })).data; }

// Each write says what it did in the status line; the page updates itself
// from the index move it causes.
async function act(what, path, body) {
  setStatus(`${what}…`);
  try {
    await api(path, { method: 'POST', body: body === undefined ? {} : body });
    setStatus(`${what}: done`);
  } catch (e) {
    setStatus(`${what}: ${e.message}`, true);
  }
}

function setStatus(msg, bad) {
  const s = document.getElementById('status');
  s.textContent = msg;
  s.style.color = bad ? 'var(--bad)' : '';
}

// ---- permissions ---------------------------------------------------------

function can(ns, cap) {
  const g = state.grants;
  if (g === null) return true;
  if (g.management) return true;
  return (g.namespaces[ns] || []).includes(cap);
}
function canNodes() { return state.grants === null || state.grants.management || state.grants.node_write; }

async function loadGrants() {
  const who = document.getElementById('who');
  try {
    state.grants = await get('/v1/acl/token/self/grants');
    const self = await get('/v1/acl/token/self');
    who.textContent = `${self.name || short(self.accessor_id)} (${self.token_type})`;
  } catch (e) {
    if (e.status === 400) {
      state.grants = null;
      who.textContent = 'ACLs off';
    } else {
      state.grants = { management: false, node_write: false, namespaces: {} };
      who.textContent = state.token ? 'token refused' : 'no token';
    }
  }
}

// ---- live sections -------------------------------------------------------

// A part of the page that loads its data and builds itself, again at each
// change of the cluster. Inputs outside sections keep their state.
function section(load, build) {
  const view = state.view;
  const el = h('div', { class: 'section' });
  const s = { el, load, build, data: undefined, err: null };
  view.sections.push(s);
  refresh(view, s);
  return el;
}

async function refresh(view, s) {
  try {
    s.data = await s.load(view.abort.signal);
    s.err = null;
  } catch (e) {
    if (view.abort.signal.aborted) return;
    s.err = e;
  }
  if (view === state.view) rebuild(s);
}

function rebuild(s) {
  const focused = document.activeElement && document.activeElement.dataset.key;
  const node = s.err ? h('div', { class: 'alert', role: 'alert' }, s.err.message) : s.build(s.data);
  s.el.replaceChildren(node);
  if (focused) {
    const again = s.el.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

async function watch() {
  let index = 0;
  let last = 0;
  for (;;) {
    try {
      const r = await api(`/v1/namespaces${qs({ index, wait: '60s' })}`);
      fillNamespaces(r.data);
      if (r.index !== index) {
        const first = index === 0;
        index = r.index;
        if (!first) {
          // A busy cluster moves many times a second: at most one reload a second.
          const wait = 1000 - (Date.now() - last);
          if (wait > 0) await sleep(wait);
          last = Date.now();
          const view = state.view;
          if (view) await Promise.all(view.sections.map((s) => refresh(view, s)));
        }
      }
      if (document.getElementById('status').dataset.down) {
        delete document.getElementById('status').dataset.down;
        setStatus('connected');
      }
    } catch (e) {
      document.getElementById('status').dataset.down = '1';
      if (e.status === 401 || e.status === 403) setStatus('live updates need an ACL token: enter one above', true);
      else setStatus(`server unreachable (${e.message}); retrying`, true);
      await Promise.race([sleep(3000), tokenChanged]);
    }
  }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// Resolved (and made anew) when the user enters a token, so a watch that
// was refused tries again at once.
let tokenChanged;
let wakeWatch;
function armTokenChanged() { tokenChanged = new Promise((r) => { wakeWatch = r; }); }
armTokenChanged();

function fillNamespaces(list) {
  const sel = document.getElementById('namespace');
  const names = (list || []).map((n) => n.name);
  const have = [...sel.options].map((o) => o.value).slice(1);
  if (names.join() === have.join()) return;
  sel.replaceChildren(h('option', { value: '*' }, 'all'), names.map((n) => h('option', { value: n }, n)));
  sel.value = names.includes(state.ns) ? state.ns : '*';
}

// ---- router --------------------------------------------------------------

const routes = [
  [/^$/, 'overview', overview],
  [/^jobs$/, 'jobs', jobs],
  [/^job\/([^/]+)\/([^/]+)$/, 'jobs', job],
  [/^alloc\/([^/]+)$/, 'jobs', alloc],
  [/^nodes$/, 'nodes', nodes],
  [/^node\/([^/]+)$/, 'nodes', node],
  [/^services$/, 'services', services],
  [/^service\/([^/]+)\/([^/]+)$/, 'services', service],
  [/^models$/, 'models', models],
];

function route() {
  // Matched before decoding, so an id with an encoded '/' stays one part.
  const path = location.hash.replace(/^#\/?/, '');
  if (state.view) state.view.abort.abort();
  state.view = { sections: [], abort: new AbortController() };
  const main = document.getElementById('main');
  let found = null;
  for (const [re, nav, fn] of routes) {
    const m = path.match(re);
    if (m) {
      try {
        found = [nav, fn, m.slice(1).map(decodeURIComponent)];
      } catch (_) {
        found = null;
      }
      break;
    }
  }
  for (const a of document.querySelectorAll('nav a')) {
    if (found && a.dataset.nav === found[0]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!found) {
    main.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, 'No page ', h('code', {}, path), '. ', link('#/', 'Overview')));
    return;
  }
  main.replaceChildren(...[].concat(found[1](...found[2])));
  document.title = `${main.querySelector('h1')?.textContent || 'edge'} · edge`;
}

// ---- overview ------------------------------------------------------------

const sum = (xs, f) => xs.reduce((a, x) => a + f(x), 0);

function countBy(xs, f) {
  const out = {};
  for (const x of xs) { const k = f(x); out[k] = (out[k] || 0) + 1; }
  return out;
}

function card(title, big, counts) {
  return h('div', { class: 'card' },
    h('div', { class: 'muted' }, title),
    h('div', { class: 'big' }, big),
    h('dl', {}, Object.entries(counts).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
}

function use(used, total, unit) {
  const pct = total ? Math.round((100 * used) / total) : 0;
  return h('span', { class: 'use' },
    h('meter', { min: 0, max: total || 1, value: used, high: total * 0.9, 'aria-label': `${pct}% of ${unit}` }),
    ` ${used} / ${total} ${unit}`);
}

function overview() {
  const ns = state.ns;
  return [
    h('h1', {}, 'Cluster overview'),
    section(async (signal) => ({
      nodes: await get('/v1/nodes', {}, signal),
      jobs: await get('/v1/jobs', { namespace: ns }, signal),
    }), ({ nodes, jobs }) => {
      const allocs = {};
      for (const j of jobs) for (const g of Object.values(j.summary)) for (const [k, v] of Object.entries(g)) allocs[k] = (allocs[k] || 0) + v;
      const byStatus = countBy(nodes, (n) => n.status);
      const cpu = sum(nodes, (n) => n.resources.cpu);
      const mem = sum(nodes, (n) => n.resources.memory);
      const cpuUsed = sum(nodes, (n) => (n.allocated || {}).cpu || 0);
      const memUsed = sum(nodes, (n) => (n.allocated || {}).memory || 0);
      const busiest = [...nodes].sort((a, b) => ((b.allocated || {}).cpu || 0) / (b.resources.cpu || 1) - ((a.allocated || {}).cpu || 0) / (a.resources.cpu || 1)).slice(0, 50);
      if (document.body.dataset.ready !== 'overview') {
        document.body.dataset.ready = 'overview';
        // User Timing for benches/ui.sh: the first frame with the data in it.
        requestAnimationFrame(() => setTimeout(() => performance.mark('edge-overview-painted')));
      }
      return h('div', {},
        h('div', { class: 'cards' },
          card('Nodes', nodes.length, {
            ready: byStatus.ready || 0,
            down: byStatus.down || 0,
            draining: nodes.filter((n) => n.drain).length,
            ineligible: nodes.filter((n) => !n.eligible).length,
          }),
          card('Jobs', jobs.length, countBy(jobs, (j) => j.status)),
          card('Allocations', sum(Object.values(allocs), (v) => v), allocs),
          h('div', { class: 'card' },
            h('div', { class: 'muted' }, 'Reserved of the cluster'),
            h('div', {}, use(cpuUsed, cpu, 'MHz')),
            h('div', {}, use(memUsed, mem, 'MB')))),
        h('h2', {}, nodes.length > busiest.length ? `Busiest ${busiest.length} of ${nodes.length} nodes` : 'Nodes'),
        nodeTable(busiest, false));
    }),
  ];
}

function nodeTable(list, actions) {
  return table(
    ['Name', 'Status', 'Eligible', 'Drain', ['Allocs', 'num'], 'CPU reserved', 'Memory reserved', ['Drivers', 'hide-sm'], 'Heartbeat', actions ? 'Actions' : null].filter((c) => c),
    list.map((n) => [
      link(`#/node/${enc(n.id)}`, n.name),
      badge(n.status),
      n.eligible ? 'yes' : badge('ineligible'),
      n.drain ? badge('draining') : 'no',
      { num: n.allocs_running },
      use((n.allocated || {}).cpu || 0, n.resources.cpu, 'MHz'),
      use((n.allocated || {}).memory || 0, n.resources.memory, 'MB'),
      n.drivers.join(', '),
      when(n.last_heartbeat),
      actions ? nodeButtons(n) : null,
    ].filter((c) => c !== null)),
    { label: 'Nodes', empty: 'No nodes have registered.' });
}

function nodeButtons(n) {
  if (!canNodes()) return h('span', { class: 'muted' }, 'read-only');
  return h('span', { class: 'row' },
    h('button', {
      type: 'button', 'data-key': `drain-${n.id}`, class: n.drain ? '' : 'danger',
      onclick: () => act(`${n.drain ? 'Stop draining' : 'Drain'} ${n.name}`, `/v1/node/${enc(n.id)}/drain`, { enable: !n.drain }),
    }, n.drain ? 'Stop drain' : 'Drain'),
    h('button', {
      type: 'button', 'data-key': `elig-${n.id}`,
      onclick: () => act(`Mark ${n.name} ${n.eligible ? 'ineligible' : 'eligible'}`, `/v1/node/${enc(n.id)}/eligibility`, { eligible: !n.eligible }),
    }, n.eligible ? 'Make ineligible' : 'Make eligible'));
}

// ---- jobs ----------------------------------------------------------------

function filterBox(label, onchange) {
  const id = `filter-${label.replace(/\W/g, '')}`;
  return h('div', { class: 'row' },
    h('label', { for: id }, label),
    h('input', { id, type: 'search', oninput: (e) => onchange(e.target.value.toLowerCase()) }));
}

function jobs() {
  let filter = '';
  const ns = state.ns;
  const sec = section((signal) => get('/v1/jobs', { namespace: ns }, signal), (list) => {
    const [rows, more] = capped(list.filter((j) => !filter || j.id.toLowerCase().includes(filter)), 'jobs');
    return h('div', {}, jobTable(rows), more);
  });
  const s = state.view.sections[state.view.sections.length - 1];
  return [
    h('h1', {}, 'Jobs'),
    filterBox('Filter by name', (v) => { filter = v; if (s.data) rebuild(s); }),
    sec,
  ];
}

function jobTable(list) {
  return table(
    ['Job', 'Namespace', 'Type', 'Status', 'Groups', ['Version', 'num'], 'Submitted'],
    list.map((j) => [
      link(`#/job/${enc(j.namespace)}/${enc(j.id)}`, j.id),
      j.namespace,
      j.type,
      badge(j.stop ? 'stopped' : j.status),
      groupSummary(j.summary),
      { num: j.version },
      when(j.submit_time),
    ]),
    { label: 'Jobs', empty: 'No jobs. Run one with `edge job run FILE.hcl`.' });
}

function countsText(counts) {
  return Object.keys(counts).length ? Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(', ') : 'none';
}

function groupSummary(summary) {
  return Object.entries(summary).map(([g, counts]) => h('div', {},
    h('span', { class: 'mono' }, g), ': ', countsText(counts)));
}

function placementFailures(evals) {
  // The newest evaluation the scheduler ran says whether the last placement
  // failed, and why; a blocked one keeps its reasons while it waits for room.
  const ran = evals.filter((e) => ['complete', 'blocked', 'failed'].includes(e.status))
    .sort((a, b) => b.modify_index - a.modify_index)[0];
  if (!ran || !ran.failed_tg_allocs || !Object.keys(ran.failed_tg_allocs).length) return null;
  return h('div', { class: 'failures', role: 'alert' },
    h('h2', {}, 'Placement failures'),
    Object.entries(ran.failed_tg_allocs).map(([group, m]) => {
      const why = [];
      if (m.nodes_evaluated === 0) why.push('No nodes were eligible for evaluation');
      for (const [dc, n] of Object.entries(m.nodes_available || {})) if (n === 0) why.push(`No nodes are available in datacenter "${dc}"`);
      for (const [c, n] of Object.entries(m.constraint_filtered || {})) why.push(`Constraint "${c}": ${n} nodes excluded by filter`);
      if (m.nodes_exhausted) why.push(`Resources exhausted on ${m.nodes_exhausted} nodes`);
      for (const [d, n] of Object.entries(m.dimension_exhausted || {})) why.push(`Dimension "${d}" exhausted on ${n} nodes`);
      const n = m.coalesced_failures + 1;
      return h('div', { class: 'failure' },
        h('h3', {}, `Task group "${group}" (failed to place ${n} allocation${n === 1 ? '' : 's'})`),
        h('ul', {}, why.map((w) => h('li', {}, w))));
    }));
}

function allocTable(list, showJob) {
  return table(
    ['ID', showJob ? 'Job' : null, 'Group', 'Node', 'Status', 'Desired', ['Version', 'num'], 'Modified'].filter((c) => c),
    list.sort((a, b) => b.modify_index - a.modify_index).map((a) => [
      link(`#/alloc/${enc(a.id)}`, h('code', {}, short(a.id))),
      showJob ? link(`#/job/${enc(a.namespace)}/${enc(a.job_id)}`, a.job_id) : null,
      a.group,
      link(`#/node/${enc(a.node_id)}`, a.node_name || short(a.node_id)),
      badge(a.client_status),
      a.desired_status,
      { num: a.job_version },
      when(a.modify_time),
    ].filter((c) => c !== null)),
    { label: 'Allocations', empty: 'No allocations.' });
}

function job(ns, id) {
  const p = { namespace: ns };
  const base = `/v1/job/${enc(id)}`;
  let diffFrom = null;
  let diffTo = null;
  const diffOut = h('div', { 'aria-live': 'polite' });
  const showDiff = async () => {
    try {
      const d = await get(`${base}/diff`, { ...p, from: diffFrom, to: diffTo });
      diffOut.replaceChildren(d.diff_type === 'none'
        ? h('p', { class: 'muted' }, `Versions ${d.from} and ${d.to} have the same spec.`)
        : h('pre', { class: 'diff', 'aria-label': `Diff of version ${d.from} to ${d.to}` }, d.diff.map((l) =>
          h('span', { class: l.startsWith('+') ? 'add' : l.startsWith('-') ? 'del' : '' }, `${l}\n`))));
    } catch (e) {
      diffOut.replaceChildren(h('div', { class: 'alert', role: 'alert' }, e.message));
    }
  };
  return [
    h('h1', {}, `Job ${id}`),
    section(async (signal) => {
      const j = await get(base, p, signal);
      const [allocs, evals, dep] = await Promise.all([
        get(`${base}/allocations`, p, signal),
        get(`${base}/evaluations`, p, signal),
        get(`${base}/deployment`, p, signal).catch((e) => { if (e.status === 404) return null; throw e; }),
      ]);
      return { j, allocs, evals, dep };
    }, ({ j, allocs, evals, dep }) => h('div', {},
      h('div', { class: 'row' },
        badge(j.stop ? 'stopped' : j.status),
        h('span', {}, `${j.type} job, namespace ${j.namespace}, version ${j.version}, submitted `), when(j.submit_time),
        can(ns, 'submit-job') && !j.stop ? h('button', {
          type: 'button', class: 'danger', 'data-key': 'stop-job',
          onclick: () => confirm(`Stop job ${id}?`) && api(`${base}${qs(p)}`, { method: 'DELETE' }).then(() => setStatus(`Stopped ${id}`), (e) => setStatus(e.message, true)),
        }, 'Stop job') : null),
      placementFailures(evals),
      h('h2', {}, 'Task groups'),
      table(['Group', ['Count', 'num'], 'Allocations'], j.groups.map((g) => [
        g.name, { num: g.count }, countsText(countBy(allocs.filter((a) => a.group === g.name), (a) => a.client_status))]),
      { label: 'Task groups' }),
      dep ? deployment(ns, dep) : null,
      h('h2', {}, 'Allocations'),
      allocTable(allocs, false))),
    h('h2', {}, 'Versions'),
    section((signal) => get(`${base}/versions`, p, signal), (versions) => {
      const numbers = versions.map((v) => v.version);
      if (diffTo === null || !numbers.includes(diffTo)) diffTo = numbers[0];
      if (diffFrom === null || !numbers.includes(diffFrom)) diffFrom = numbers[1] ?? numbers[0];
      const pick = (label, key, value, set) => [
        h('label', { for: key }, label),
        h('select', { id: key, 'data-key': key, onchange: (e) => set(Number(e.target.value)) },
          numbers.map((n) => h('option', { value: n, selected: n === value }, `v${n}`)))];
      return h('div', {},
        table(['Version', 'Submitted', 'Stable'], versions.map((v) => [`v${v.version}`, when(v.submit_time), v.stable ? 'yes' : 'no']),
          { label: 'Versions' }),
        numbers.length > 1 ? h('div', { class: 'row' },
          pick('Diff from', 'diff-from', diffFrom, (n) => { diffFrom = n; }),
          pick('to', 'diff-to', diffTo, (n) => { diffTo = n; }),
          h('button', { type: 'button', 'data-key': 'show-diff', onclick: showDiff }, 'Show diff'),
          can(ns, 'submit-job') ? h('button', {
            type: 'button', 'data-key': 'revert',
            onclick: () => confirm(`Register version ${diffFrom} of ${id} again as a new version?`)
              && act(`Revert ${id} to v${diffFrom}`, `${base}/revert${qs(p)}`, { version: diffFrom }),
          }, 'Revert to the "from" version') : null) : null);
    }),
    diffOut,
  ];
}

function deployment(ns, d) {
  const active = d.status === 'running' || d.status === 'paused';
  const canary = Object.values(d.groups).some((g) => g.desired_canaries > 0 && !g.promoted);
  return h('div', {},
    h('h2', {}, 'Latest deployment'),
    h('div', { class: 'row' },
      h('code', {}, short(d.id)), badge(d.status), h('span', { class: 'muted' }, d.status_description),
      active && can(ns, 'submit-job') && canary ? h('button', {
        type: 'button', 'data-key': 'promote', onclick: () => act('Promote deployment', `/v1/deployment/${enc(d.id)}/promote`, { groups: [] }),
      }, 'Promote') : null,
      active && can(ns, 'submit-job') ? h('button', {
        type: 'button', class: 'danger', 'data-key': 'fail', onclick: () => act('Fail deployment', `/v1/deployment/${enc(d.id)}/fail`),
      }, 'Fail') : null),
    table(['Group', ['Desired', 'num'], ['Canaries', 'num'], ['Placed', 'num'], ['Healthy', 'num'], ['Unhealthy', 'num'], 'Promoted'],
      Object.entries(d.groups).map(([g, s]) => [g, { num: s.desired_total }, { num: s.desired_canaries }, { num: s.placed },
        { num: s.healthy }, { num: s.unhealthy }, s.promoted ? 'yes' : 'no']),
      { label: 'Deployment groups' }));
}

// ---- allocation ----------------------------------------------------------

function alloc(id) {
  const logs = logPanel(id);
  return [
    h('h1', {}, `Allocation ${short(id)}`),
    section((signal) => get(`/v1/allocation/${enc(id)}`, {}, signal), (a) => {
      logs.tasks(Object.keys(a.task_states).length ? Object.keys(a.task_states) : [], a.namespace);
      return h('div', {},
        kv([
          ['ID', h('code', {}, a.id)],
          ['Job', link(`#/job/${enc(a.namespace)}/${enc(a.job_id)}`, `${a.job_id} (v${a.job_version})`)],
          ['Group', a.group],
          ['Node', link(`#/node/${enc(a.node_id)}`, a.node_name || a.node_id)],
          ['Status', h('span', {}, badge(a.client_status), ' ', a.client_description)],
          ['Desired', `${a.desired_status}${a.desired_description ? ` (${a.desired_description})` : ''}`],
          a.address ? ['Address', a.address] : null,
          ['Ports', (a.resources.ports || []).map((p) => `${p.label} ${p.value}`).join(', ') || '–'],
        ]),
        h('h2', {}, 'Tasks'),
        Object.entries(a.task_states).map(([name, t]) => h('div', {},
          h('h3', {}, name, ' ', badge(t.state), t.failed ? [' ', badge('failed')] : null,
            h('span', { class: 'muted' }, ` restarts ${t.restarts}`)),
          table(['Time', 'Event', 'Message'], [...t.events].reverse().map((e) => [when(e.time), e.type, e.message]),
            { label: `Events of task ${name}`, empty: 'No events yet.' }))));
    }),
    logs.el,
  ];
}

// Logs are a stream, not a section: it is built once and follows the task.
function logPanel(id) {
  let names = [];
  let ns = 'default';
  let reader = null;
  const out = h('pre', { class: 'logs', tabindex: 0, 'aria-label': 'Task log', 'aria-live': 'off' });
  const taskSel = h('select', { id: 'log-task', onchange: start });
  const streamSel = h('select', { id: 'log-stream', onchange: start },
    h('option', { value: 'stdout' }, 'stdout'), h('option', { value: 'stderr' }, 'stderr'));
  const follow = h('input', { id: 'log-follow', type: 'checkbox', checked: true, onchange: start });
  const note = h('span', { class: 'muted', role: 'status' });
  const view = state.view;
  view.abort.signal.addEventListener('abort', stop);
  function stop() {
    if (reader) reader.cancel().catch(() => {});
    reader = null;
  }
  async function start() {
    stop();
    out.textContent = '';
    if (!taskSel.value) return;
    if (!can(ns, 'read-logs')) { note.textContent = 'this token may not read logs'; return; }
    const headers = state.token ? { 'x-edge-token': state.token } : {};
    const url = `/v1/client/allocation/${enc(id)}/logs${qs({ task: taskSel.value, type: streamSel.value, follow: follow.checked, tail: 64 * 1024 })}`;
    note.textContent = follow.checked ? 'following…' : 'loading…';
    try {
      const r = await fetch(url, { headers, signal: view.abort.signal });
      if (!r.ok) { note.textContent = `${r.status}: ${(await r.text()).slice(0, 300)}`; return; }
      const mine = r.body.getReader();
      reader = mine;
      const dec = new TextDecoder();
      for (;;) {
        const { value, done } = await mine.read();
        if (done) break;
        const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.append(dec.decode(value, { stream: true }));
        // Keep the page light under a chatty task: the newest 256 KiB.
        if (out.textContent.length > 256 * 1024) out.textContent = out.textContent.slice(-192 * 1024);
        if (atEnd) out.scrollTop = out.scrollHeight;
      }
      note.textContent = 'end of log';
    } catch (e) {
      if (!view.abort.signal.aborted) note.textContent = e.message;
    }
  }
  const el = h('div', {},
    h('h2', {}, 'Logs'),
    h('div', { class: 'row' },
      h('label', { for: 'log-task' }, 'Task'), taskSel,
      h('label', { for: 'log-stream' }, 'Stream'), streamSel,
      follow, h('label', { for: 'log-follow' }, 'Follow'), note),
    out);
  return {
    el,
    tasks(list, namespace) {
      ns = namespace;
      if (list.join() === names.join()) return;
      names = list;
      const keep = taskSel.value;
      taskSel.replaceChildren(...list.map((t) => h('option', { value: t }, t)));
      if (list.includes(keep)) taskSel.value = keep;
      start();
    },
  };
}

// ---- nodes ---------------------------------------------------------------

// A page of thousands of rows rebuilt at every change would stall a phone:
// lists show this many and say how to narrow them.
const MAX_ROWS = 500;

function capped(list, what) {
  if (list.length <= MAX_ROWS) return [list, null];
  return [list.slice(0, MAX_ROWS), h('p', { class: 'muted' }, `Showing ${MAX_ROWS} of ${list.length} ${what}: filter to narrow.`)];
}

function nodes() {
  let filter = '';
  const sec = section((signal) => get('/v1/nodes', {}, signal), (list) => {
    const [rows, more] = capped(
      list.filter((n) => !filter || n.name.toLowerCase().includes(filter) || n.id.startsWith(filter))
        .sort((a, b) => a.name.localeCompare(b.name)),
      'nodes');
    return h('div', {}, nodeTable(rows, true), more);
  });
  const s = state.view.sections[state.view.sections.length - 1];
  return [
    h('h1', {}, 'Nodes'),
    filterBox('Filter by name', (v) => { filter = v; if (s.data) rebuild(s); }),
    sec,
  ];
}

function node(id) {
  return [
    h('h1', {}, 'Node'),
    section(async (signal) => {
      const n = await get(`/v1/node/${enc(id)}`, {}, signal);
      const [stub, allocs] = await Promise.all([
        get('/v1/nodes', {}, signal).then((l) => l.find((x) => x.id === n.id)),
        get('/v1/allocations', { node: n.id, namespace: '*' }, signal),
      ]);
      return { n, stub, allocs };
    }, ({ n, stub, allocs }) => h('div', {},
      h('h2', {}, n.name),
      stub ? h('div', { class: 'row' }, nodeButtons(stub)) : null,
      kv([
        ['ID', h('code', {}, n.id)],
        ['Status', h('span', {}, badge(n.status), ' ', n.status_description || '')],
        ['Datacenter', n.datacenter],
        ['Address', n.address],
        ['Eligible', n.eligible ? 'yes' : 'no'],
        ['Drain', n.drain ? 'yes' : 'no'],
        ['Agent', n.agent_version],
        ['Heartbeat', when(n.last_heartbeat)],
        stub ? ['CPU reserved', use(stub.allocated.cpu, n.resources.cpu, 'MHz')] : null,
        stub ? ['Memory reserved', use(stub.allocated.memory, n.resources.memory, 'MB')] : null,
      ]),
      h('h2', {}, 'Drivers'),
      table(['Driver', 'Detected', 'Health', 'Description'], Object.entries(n.drivers).map(([name, d]) => [
        name, d.detected ? 'yes' : 'no', badge(d.healthy ? 'healthy' : 'unhealthy'), d.description]), { label: 'Drivers' }),
      h('h2', {}, 'Allocations'),
      allocTable(allocs, true),
      h('h2', {}, 'Attributes'),
      table(['Attribute', 'Value'], Object.entries(n.attributes).map(([k, v]) => [h('code', {}, k), v]), { label: 'Attributes' }),
      Object.keys(n.meta).length ? [h('h2', {}, 'Meta'),
        table(['Key', 'Value'], Object.entries(n.meta).map(([k, v]) => [h('code', {}, k), v]), { label: 'Meta' })] : null)),
  ];
}

// ---- services ------------------------------------------------------------

function dnsName(s) {
  return s.namespace === 'default' ? `${s.name}.service.edge` : `${s.name}.${s.namespace}.service.edge`;
}

function services() {
  const ns = state.ns;
  return [
    h('h1', {}, 'Services'),
    section((signal) => get('/v1/services', { namespace: ns }, signal), (list) => table(
      ['Service', 'Namespace', 'DNS name', 'Instances', 'Published', ['Tags', 'hide-sm']],
      list.map((s) => [
        link(`#/service/${enc(s.namespace)}/${enc(s.name)}`, s.name),
        s.namespace,
        h('code', {}, dnsName(s)),
        h('span', {}, badge(s.passing === s.instances ? 'passing' : s.passing ? 'warning' : 'critical'), ` ${s.passing} / ${s.instances} passing`),
        s.publish ? `${s.publish.port}/${s.publish.protocol || 'tcp'} on every node` : '–',
        s.tags.join(', '),
      ]),
      { label: 'Services', empty: 'No services registered.' })),
  ];
}

function service(ns, name) {
  return [
    h('h1', {}, `Service ${name}`),
    h('p', {}, 'DNS: ', h('code', {}, dnsName({ name, namespace: ns })), ', ', h('code', {}, `tasks.${dnsName({ name, namespace: ns })}`)),
    section((signal) => get(`/v1/service/${enc(name)}`, { namespace: ns }, signal), (list) => table(
      ['Allocation', 'Job', 'Node', 'Address', 'Health', ['Tags', 'hide-sm']],
      list.map((i) => [
        link(`#/alloc/${enc(i.alloc_id)}`, h('code', {}, short(i.alloc_id))),
        link(`#/job/${enc(i.namespace)}/${enc(i.job_id)}`, `${i.job_id} / ${i.group}`),
        link(`#/node/${enc(i.node_id)}`, i.node_name),
        h('code', {}, `${i.address}:${i.port}`),
        badge(i.status),
        (i.tags || []).join(', '),
      ]),
      { label: 'Instances', empty: 'No instances.' })),
  ];
}

// ---- models --------------------------------------------------------------

// A request of zeros in the shapes the model declares (-1 as 1), for the
// user to edit.
function sampleRequest(meta) {
  const inputs = (meta.inputs || []).map((i) => {
    const shape = (i.shape || []).map((d) => (d < 0 ? 1 : d));
    const n = shape.reduce((a, d) => a * d, 1);
    return { name: i.name, shape, datatype: i.datatype, data: new Array(Math.min(n, 1 << 16)).fill(i.datatype === 'BYTES' ? '' : 0) };
  });
  return JSON.stringify({ inputs }, null, 1);
}

function models() {
  const ns = state.ns;
  const form = h('div', {});
  const openForm = (m, model) => {
    const p = { namespace: m.namespace };
    const body = h('textarea', { id: 'infer-body', 'aria-label': 'Inference request (KServe V2 JSON)', spellcheck: 'false' }, '{"inputs": []}');
    const answer = h('pre', { id: 'infer-answer', 'aria-live': 'polite', 'aria-label': 'Answer' });
    const send = h('button', { type: 'submit' }, 'Send');
    get(`/v1/model/${enc(m.service)}/meta/${enc(model)}`, p).then(
      (meta) => { body.value = sampleRequest(meta); },
      (e) => { answer.textContent = `metadata: ${e.message}`; });
    form.replaceChildren(h('form', {
      onsubmit: async (e) => {
        e.preventDefault();
        send.disabled = true;
        const t0 = performance.now();
        try {
          const r = await api(`/v1/model/${enc(m.service)}/infer/${enc(model)}${qs(p)}`, { method: 'POST', body: body.value });
          answer.textContent = `${Math.round(performance.now() - t0)} ms\n${JSON.stringify(r.data, null, 1)}`;
        } catch (err) {
          answer.textContent = err.message;
        } finally {
          send.disabled = false;
        }
      },
    },
    h('h2', {}, `Ask ${model} (service ${m.service})`),
    h('label', { for: 'infer-body' }, 'Request body, as POST /v2/models/', model, '/infer takes it'),
    body, h('div', { class: 'row' }, send), answer));
    body.focus();
  };
  return [
    h('h1', {}, 'Models'),
    section((signal) => get('/v1/models', { namespace: ns }, signal), (list) => table(
      ['Service', 'Job', 'Namespace', 'Instances', 'Models'],
      list.map((m) => [
        link(`#/service/${enc(m.namespace)}/${enc(m.service)}`, m.service),
        link(`#/job/${enc(m.namespace)}/${enc(m.job_id)}`, `${m.job_id} / ${m.group}`),
        m.namespace,
        `${m.passing} / ${m.instances} passing`,
        h('span', { class: 'row' }, m.models.map((model) => h('button', {
          type: 'button', 'data-key': `ask-${m.service}-${model}`, onclick: () => openForm(m, model),
        }, `Ask ${model}`))),
      ]),
      { label: 'Model services', empty: 'No model jobs: run a job with a `model` block.' })),
    form,
  ];
}

// ---- start ---------------------------------------------------------------

document.getElementById('token-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = document.getElementById('token');
  state.token = input.value.trim();
  input.value = '';
  if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
  else sessionStorage.removeItem(TOKEN_KEY);
  await loadGrants();
  route();
  const wake = wakeWatch;
  armTokenChanged();
  wake();
});

document.getElementById('namespace').addEventListener('change', (e) => {
  state.ns = e.target.value;
  sessionStorage.setItem(NS_KEY, state.ns);
  route();
});

window.addEventListener('hashchange', () => {
  route();
  document.getElementById('main').focus({ preventScroll: true });
});

(async () => {
  await loadGrants();
  route();
  watch();
})();
