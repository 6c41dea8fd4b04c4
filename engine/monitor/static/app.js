// Sluice web monitor: reads the admin JSON API with the login cookie and
// redraws every few seconds. No framework: plain DOM and hand-drawn SVG.
'use strict';
(() => {
  const REFRESH_MS = 2000;
  const SVG = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#2a6fdb', '#2a9d5b', '#e39b1b', '#d0453a', '#7b4fd0', '#1b9fb0', '#b0407a', '#6b7482'];
  const $ = (id) => document.getElementById(id);
  let timer = null;
  let busy = false;

  // api fetches a JSON endpoint with the cookie; a 401 throws {status: 401}.
  async function api(path, opts) {
    const o = Object.assign({ credentials: 'same-origin', cache: 'no-store' }, opts || {});
    o.headers = Object.assign({ Accept: 'application/json' }, o.headers || {});
    const r = await fetch(path, o);
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
    if (!r.ok) {
      const e = new Error((body && body.error) || r.statusText || ('HTTP ' + r.status));
      e.status = r.status;
      throw e;
    }
    return body;
  }

  // rows finds the list in a response: the response itself, or its first
  // array-valued field among keys (then any).
  function rows(x, ...keys) {
    if (Array.isArray(x)) return x;
    if (!x || typeof x !== 'object') return [];
    for (const k of keys) if (Array.isArray(x[k])) return x[k];
    for (const v of Object.values(x)) if (Array.isArray(v)) return v;
    return [];
  }

  function pick(o, ...names) {
    for (const n of names) if (o && o[n] !== undefined && o[n] !== null) return o[n];
    return undefined;
  }

  function fmtNum(n) { return (n === undefined || n === null) ? '–' : String(n); }

  function fmtTime(s) {
    if (!s || String(s).startsWith('0001-')) return '';
    const d = new Date(s);
    if (isNaN(d)) return String(s);
    const secs = Math.round((d - Date.now()) / 1000);
    if (Math.abs(secs) < 3600) return (secs >= 0 ? 'in ' : '') + Math.abs(secs) + ' s' + (secs < 0 ? ' ago' : '');
    return d.toISOString().replace('T', ' ').replace(/\..*/, 'Z');
  }

  function fmtCell(v) {
    if (v === undefined || v === null) return '';
    if (Array.isArray(v)) return v.map(fmtCell).join(', ');
    if (typeof v === 'object') return Object.entries(v).map(([k, x]) => k.replace(/_/g, ' ') + ' ' + fmtCell(x)).join(' · ');
    if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)) return fmtTime(v);
    return String(v);
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // ---- login ----

  function showLogin(msg) {
    stop();
    $('dashboard').classList.add('hidden');
    $('logout').classList.add('hidden');
    $('login').classList.remove('hidden');
    $('login-error').textContent = msg || '';
    $('token').focus();
  }

  function showDashboard() {
    $('login').classList.add('hidden');
    $('dashboard').classList.remove('hidden');
    $('logout').classList.remove('hidden');
    start();
  }

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const tok = $('token').value.trim();
    try {
      await api('/ui/login', { method: 'POST', headers: { Authorization: 'Bearer ' + tok } });
      $('token').value = '';
      showDashboard();
    } catch (e) {
      $('login-error').textContent = e.status === 401 ? 'Wrong token.' : 'Login failed: ' + e.message;
    }
  });

  $('logout').addEventListener('click', async () => {
    try { await api('/ui/logout', { method: 'POST' }); } catch (_) { /* cookie cleared or not: show the form */ }
    showLogin('Logged out.');
  });

  // ---- refresh loop ----

  function start() {
    if (timer === null) {
      refresh();
      timer = setInterval(refresh, REFRESH_MS);
    }
  }

  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const names = ['rates', 'queues', 'status', 'vmtas', 'jobs'];
      const paths = ['/api/v1/monitor/rates', '/api/v1/queues', '/api/v1/status', '/api/v1/vmtas', '/api/v1/jobs'];
      const res = await Promise.allSettled(paths.map((p) => api(p)));
      if (res.some((r) => r.status === 'rejected' && r.reason.status === 401)) {
        showLogin('');
        return;
      }
      const got = {};
      res.forEach((r, i) => { if (r.status === 'fulfilled') got[names[i]] = r.value; });
      if (got.rates) renderRates(got.rates);
      const queues = got.queues ? rows(got.queues, 'queues') : null;
      if (queues) { renderQueues(queues); renderDepth(queues); }
      if (got.status) renderStatus(got.status);
      if (got.vmtas) renderGeneric($('vmtas-table'), rows(got.vmtas, 'vmtas'));
      if (got.jobs) renderGeneric($('jobs-table'), rows(got.jobs, 'jobs'));
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    } finally {
      busy = false;
    }
  }

  // ---- rates and charts ----

  function renderRates(s) {
    const lm = s.last_minute || {}, tot = s.totals || {};
    for (const k of ['delivered', 'deferred', 'bounced', 'received']) {
      $('stat-' + k + '-min').textContent = fmtNum(lm[k]);
      $('stat-' + k + '-total').textContent = fmtNum(tot[k]);
    }
    drawLines($('chart-traffic'), 900, 220, [
      { values: s.delivered || [], color: '#2a9d5b' },
      { values: s.deferred || [], color: '#e39b1b' },
      { values: s.bounced || [], color: '#d0453a' },
    ], '/s');
    const names = Object.keys(s.vmtas || {}).sort();
    const keys = $('vmta-keys');
    clear(keys);
    const series = names.map((n, i) => {
      const color = PALETTE[i % PALETTE.length];
      const k = el('span', { class: 'key' }, n + ' ');
      k.style.color = color;
      keys.appendChild(k);
      return { values: s.vmtas[n].delivered || [], color };
    });
    drawLines($('chart-vmta'), 900, 220, series, '/10s');
  }

  // drawLines draws each series as a polyline scaled to the largest value.
  function drawLines(svg, w, h, series, unit) {
    clear(svg);
    const top = 14, bottom = h - 4;
    let max = 1;
    for (const s of series) for (const v of s.values) if (v > max) max = v;
    for (const f of [0.5, 1]) {
      const y = bottom - f * (bottom - top);
      svg.appendChild(svgEl('line', { x1: 0, x2: w, y1: y, y2: y, stroke: '#dde1e7', 'stroke-width': 1, 'vector-effect': 'non-scaling-stroke' }));
    }
    const label = document.getElementById(svg.id + '-max');
    if (label) label.textContent = 'max ' + max + unit;
    for (const s of series) {
      const n = s.values.length;
      if (n < 2) continue;
      const pts = s.values.map((v, i) => (i * w / (n - 1)).toFixed(1) + ',' + (bottom - v / max * (bottom - top)).toFixed(1));
      svg.appendChild(svgEl('polyline', { points: pts.join(' '), fill: 'none', stroke: s.color, 'stroke-width': 1.5, 'vector-effect': 'non-scaling-stroke' }));
    }
  }

  function renderDepth(queues) {
    const bySite = new Map();
    for (const q of queues) {
      const site = pick(q, 'site') || String(pick(q, 'name') || '').split('/')[0];
      bySite.set(site, (bySite.get(site) || 0) + (Number(pick(q, 'queued')) || 0));
    }
    const top = [...bySite.entries()].filter((e) => e[1] > 0).sort((a, b) => b[1] - a[1]).slice(0, 10);
    const svg = $('chart-depth');
    clear(svg);
    if (top.length === 0) {
      svg.appendChild(svgEl('text', { x: 8, y: 20 }, 'no queued mail'));
      return;
    }
    const max = Math.max(1, ...top.map((e) => e[1]));
    const rowH = 21, left = 150, width = 600 - left - 60;
    top.forEach(([site, n], i) => {
      const y = 4 + i * rowH;
      svg.appendChild(svgEl('text', { x: left - 6, y: y + 14, 'text-anchor': 'end' }, site.length > 22 ? site.slice(0, 21) + '…' : site));
      svg.appendChild(svgEl('rect', { x: left, y: y + 3, height: rowH - 6, width: Math.max(1, n / max * width), fill: '#2a6fdb', 'data-site': site }));
      svg.appendChild(svgEl('text', { x: left + n / max * width + 4, y: y + 14 }, String(n)));
    });
  }

  // ---- tables ----

  function renderQueues(queues) {
    const tbody = $('queues-table').querySelector('tbody');
    clear(tbody);
    let queued = 0, conns = 0;
    for (const q of queues) {
      const name = String(pick(q, 'name', 'queue') || '');
      const mode = String(pick(q, 'mode') || 'normal');
      queued += Number(pick(q, 'queued')) || 0;
      conns += Number(pick(q, 'connections')) || 0;
      const tr = el('tr', { class: mode, 'data-queue': name });
      tr.appendChild(el('td', {}, name));
      for (const k of ['queued', 'ready', 'deferred', 'connections', 'delivered_last_hour']) tr.appendChild(el('td', { class: 'num' }, fmtNum(pick(q, k))));
      tr.appendChild(el('td', { class: 'mode ' + mode }, mode));
      tr.appendChild(el('td', {}, String(pick(q, 'reason') || '')));
      tr.appendChild(el('td', { class: 'err' }, lastError(pick(q, 'last_error'))));
      tr.appendChild(el('td', {}, fmtTime(pick(q, 'next_attempt', 'retry_at'))));
      const td = el('td');
      const paused = mode === 'paused';
      const b = el('button', { type: 'button', 'data-action': paused ? 'resume' : 'pause', 'data-queue': name }, paused ? 'Resume' : 'Pause');
      b.addEventListener('click', () => queueAction(paused ? 'resume' : 'pause', name));
      td.appendChild(b);
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
    $('stat-queued').textContent = String(queued);
    $('stat-queues').textContent = String(queues.length);
    if ($('stat-conns').dataset.fromStatus !== '1') $('stat-conns').textContent = '– / ' + conns;
  }

  // lastError renders the admin API's last-error event: when, status, text.
  function lastError(e) {
    if (!e) return '';
    if (typeof e !== 'object') return String(e);
    return [fmtTime(e.time), e.status, e.text].filter(Boolean).join(' ');
  }

  async function queueAction(action, name) {
    const msg = $('action-msg');
    try {
      const res = await api('/api/v1/queues/' + action, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(action === 'pause' ? { pattern: name, reason: 'paused from the web monitor' } : { pattern: name }),
      });
      msg.textContent = action + ' ' + name + ': ' + (res && typeof res === 'object' ? JSON.stringify(res) : 'done');
    } catch (e) {
      msg.textContent = action + ' ' + name + ' failed: ' + e.message;
    }
    refresh();
  }

  function renderGeneric(table, list) {
    const thead = table.querySelector('thead'), tbody = table.querySelector('tbody');
    clear(thead);
    clear(tbody);
    if (list.length === 0) {
      tbody.appendChild(el('tr')).appendChild(el('td', { class: 'muted' }, 'none'));
      return;
    }
    const cols = [];
    for (const r of list.slice(0, 20)) for (const k of Object.keys(r)) if (!cols.includes(k) && cols.length < 12) cols.push(k);
    const hr = thead.appendChild(el('tr'));
    for (const c of cols) hr.appendChild(el('th', {}, c.replace(/_/g, ' ')));
    for (const r of list) {
      const tr = tbody.appendChild(el('tr'));
      for (const c of cols) {
        const v = r[c];
        tr.appendChild(el('td', typeof v === 'number' ? { class: 'num' } : {}, fmtCell(v)));
      }
    }
  }

  // renderStatus lists the status object's fields, one level deep, and
  // fills the header and the connections card when it names them.
  function renderStatus(st) {
    const tbody = $('status-table').querySelector('tbody');
    clear(tbody);
    const flat = [];
    for (const [k, v] of Object.entries(st || {})) {
      if (v && typeof v === 'object' && !Array.isArray(v)) {
        for (const [k2, v2] of Object.entries(v)) flat.push([k + '.' + k2, v2]);
      } else {
        flat.push([k, v]);
      }
    }
    for (const [k, v] of flat) {
      const tr = tbody.appendChild(el('tr'));
      tr.appendChild(el('th', {}, k.replace(/_/g, ' ')));
      tr.appendChild(el('td', {}, fmtCell(v)));
    }
    const get = (names) => { for (const [k, v] of flat) if (names.includes(k)) return v; return undefined; };
    const host = get(['hostname', 'host']);
    if (host) $('host').textContent = host;
    const cin = get(['connections.in', 'connections_in', 'conns_in']);
    const cout = get(['connections.out', 'connections_out', 'conns_out']);
    if (cin !== undefined || cout !== undefined) {
      $('stat-conns').textContent = fmtNum(cin) + ' / ' + fmtNum(cout);
      $('stat-conns').dataset.fromStatus = '1';
    }
  }

  // On load: the cookie decides which view shows.
  api('/api/v1/healthz').then(showDashboard, (e) => showLogin(e.status === 401 ? '' : 'Cannot reach the admin API: ' + e.message));
})();
