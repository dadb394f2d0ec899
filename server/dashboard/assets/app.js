// The consensus dashboard: polls this node's JSON API once a second and
// renders what it answers. Data goes into the page with textContent and
// dataset only, never as markup.
'use strict';

(() => {
  const TOKEN_KEY = 'consensus.dashboard.token';
  const POLL_MS = 1000;
  const MAX_EVENTS = 200;        // list entries kept in the page
  const RATE_WINDOW_MS = 10000;  // write rate averaged over this window
  const CHART_POINTS = 60;       // one bar per poll

  const $ = (id) => document.getElementById(id);

  const state = {
    after: 0,       // last event sequence number shown
    since: null,    // start time of the node's event log; a change means a restart
    samples: [],    // {t, revision, applied} within RATE_WINDOW_MS
    chart: [],      // writes/s between consecutive polls
    timer: null,
  };

  class AuthError extends Error {}

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  }

  // api fetches path from this node and returns its JSON body; it throws
  // AuthError on 401 and Error (with the API's code and message) otherwise.
  async function api(path) {
    const headers = { Accept: 'application/json' };
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    const resp = await fetch(path, { headers, cache: 'no-store', credentials: 'same-origin' });
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      // handled below
    }
    const err = body && body.error;
    if (resp.status === 401) {
      throw new AuthError(err ? err.message : 'a bearer token is required');
    }
    if (!resp.ok || body === null) {
      throw new Error(path + ': ' + (err ? err.code + ': ' + err.message : 'HTTP ' + resp.status));
    }
    return body;
  }

  // optional fetches a route the page can live without (an older node, a
  // leaderless cluster): it yields null on failure but passes on AuthError.
  function optional(path) {
    return api(path).catch((e) => {
      if (e instanceof AuthError) throw e;
      return null;
    });
  }

  function text(id, value) {
    $(id).textContent = value === undefined || value === null || value === '' ? '—' : String(value);
  }

  function cell(row, value, cls) {
    const td = document.createElement('td');
    td.textContent = value === undefined || value === null || value === '' ? '—' : String(value);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  // safeClass turns a word from the API into a class-name suffix, or ''.
  function safeClass(word) {
    return /^[a-z_]{1,40}$/.test(word || '') ? word : '';
  }

  function clock(date) {
    return date.toLocaleTimeString([], { hour12: false });
  }

  function setConn(kind, message) {
    const el = $('conn');
    el.className = 'conn conn-' + kind;
    el.textContent = message;
  }

  function roleOf(member, leaderId) {
    if (member.id === leaderId) return 'leader';
    return member.voter ? 'follower' : 'learner';
  }

  function renderStatus(status) {
    text('node', 'node ' + status.nodeId + (status.removed ? ' (removed)' : ''));
    text('leader', status.leaderId || 'none');
    text('term', status.term);
    text('commit', status.commitIndex);
    text('applied', status.appliedIndex);
  }

  function renderMembers(status, nodes) {
    const health = new Map();
    if (nodes && Array.isArray(nodes.nodes)) {
      for (const n of nodes.nodes) health.set(n.id, n);
    }
    const counts = {};
    const rows = [];
    for (const m of status.members || []) {
      const h = health.get(m.id) || {};
      const role = roleOf(m, status.leaderId);
      const row = document.createElement('tr');
      row.dataset.id = m.id;
      row.dataset.role = role;
      cell(row, m.id);
      cell(row, role, 'role role-' + role);
      cell(row, m.peerAddr);
      cell(row, m.httpAddr);
      const hv = h.health || 'unknown';
      counts[hv] = (counts[hv] || 0) + 1;
      const hc = cell(row, hv, 'health health-' + safeClass(hv));
      if (h.reason) hc.title = h.reason;
      cell(row, h.appliedIndex);
      cell(row, h.appliedIndex ? h.lag : '');
      cell(row, m.id === status.nodeId ? 'self' : (h.connected ? 'up' : 'down'));
      rows.push(row);
    }
    $('members').tBodies[0].replaceChildren(...rows);
    const parts = Object.keys(counts).sort().map((k) => counts[k] + ' ' + k);
    text('health-summary', parts.join(', '));
  }

  function renderRate(status, stats) {
    const now = performance.now();
    const sample = { t: now, applied: status.appliedIndex, revision: stats ? stats.revision : null };
    const prev = state.samples[state.samples.length - 1];
    // A node restart or a different node behind the address: start again.
    if (prev && (sample.applied < prev.applied || (sample.revision !== null && prev.revision !== null && sample.revision < prev.revision))) {
      state.samples = [];
      state.chart = [];
    }
    if (prev && prev.revision !== null && sample.revision !== null && now > prev.t) {
      state.chart.push((sample.revision - prev.revision) * 1000 / (now - prev.t));
      if (state.chart.length > CHART_POINTS) state.chart.shift();
    }
    state.samples.push(sample);
    while (state.samples.length > 2 && now - state.samples[0].t > RATE_WINDOW_MS) state.samples.shift();
    const first = state.samples[0];
    const secs = (now - first.t) / 1000;
    if (state.samples.length < 2 || secs <= 0) {
      text('write-rate', '…');
      $('entry-rate').textContent = '';
    } else {
      const writes = sample.revision !== null && first.revision !== null ? (sample.revision - first.revision) / secs : null;
      text('write-rate', writes === null ? 'n/a' : writes.toFixed(1) + ' writes/s');
      $('entry-rate').textContent = ((sample.applied - first.applied) / secs).toFixed(1) + ' log entries/s';
    }
    drawChart();
  }

  function drawChart() {
    const canvas = $('rate-chart');
    const ctx = canvas.getContext && canvas.getContext('2d');
    if (!ctx) return;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const top = Math.max(1, ...state.chart);
    const w = canvas.width / CHART_POINTS;
    ctx.fillStyle = '#dfe3ea';
    ctx.fillRect(0, canvas.height - 1, canvas.width, 1); // baseline: 0 writes/s
    ctx.fillStyle = '#0b5cad';
    state.chart.forEach((v, i) => {
      const h = Math.max(v > 0 ? 1 : 0, (v / top) * (canvas.height - 2));
      const x = (CHART_POINTS - state.chart.length + i) * w;
      ctx.fillRect(x, canvas.height - h, Math.max(1, w - 1), h);
    });
  }

  function describe(ev) {
    const who = ev.nodeId || 'a node';
    switch (ev.type) {
      case 'leader_elected': return (ev.leaderId || '?') + ' is the leader (term ' + (ev.term || '?') + ')';
      case 'became_follower': return who + ' stopped leading' + (ev.leaderId ? '; leader is ' + ev.leaderId : '');
      case 'node_joined': return who + ' joined' + (ev.member && ev.member.peerAddr ? ' at ' + ev.member.peerAddr : '');
      case 'node_promoted': return who + ' became a voter';
      case 'node_left': return who + ' left the cluster';
      case 'removed': return who + ' was removed from the cluster';
      case 'node_health_changed': return who + ': ' + (ev.previous || '?') + ' → ' + (ev.current || '?');
      case 'node_unhealthy': return who + ' is unhealthy';
      case 'peer_connected': return 'peer stream to ' + who + ' is up';
      case 'peer_disconnected': return 'peer stream to ' + who + ' is down';
      case 'snapshot_created': return who + ' took a snapshot at index ' + ev.index + ' (' + ev.bytes + ' bytes)';
      case 'snapshot_restored': return who + ' restored a snapshot at index ' + ev.index + ' (' + ev.bytes + ' bytes)';
      default: return who;
    }
  }

  function eventItem(ev) {
    const li = document.createElement('li');
    li.dataset.seq = String(ev.seq);
    li.dataset.type = ev.type;
    const time = document.createElement('time');
    const when = new Date(ev.time);
    if (!Number.isNaN(when.getTime())) {
      time.dateTime = when.toISOString();
      time.textContent = clock(when);
    }
    const type = document.createElement('span');
    type.className = 'type type-' + safeClass(ev.type);
    type.textContent = ev.type;
    const desc = document.createElement('span');
    desc.className = 'desc';
    desc.textContent = describe(ev);
    li.append(time, type, desc);
    return li;
  }

  // renderEvents adds the new events; it returns false when the node's
  // log started again (a restart) and the next poll must read it from 0.
  function renderEvents(events) {
    const list = $('events');
    if ((state.since !== null && events.since !== state.since) || events.lastSeq < state.after) {
      list.replaceChildren();
      state.since = events.since;
      state.after = 0;
      return false;
    }
    state.since = events.since;
    if (events.missed > 0) {
      const gap = document.createElement('li');
      gap.className = 'gap';
      gap.textContent = events.missed + ' older events were overwritten before they could be shown';
      list.prepend(gap);
    }
    for (const ev of events.events) {
      if (ev.seq > state.after) {
        list.prepend(eventItem(ev));
        state.after = ev.seq;
      }
    }
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    return true;
  }

  function showAuth(message) {
    $('auth').hidden = false;
    $('auth-error').textContent = token() ? 'The token was refused: ' + message : '';
    setConn('error', 'needs a token');
    $('token').focus();
  }

  async function poll() {
    state.timer = null;
    try {
      const [status, nodes, stats, events] = await Promise.all([
        api('/v1/status'),
        optional('/v1/cluster/nodes'),
        optional('/v1/stats?consistency=local'),
        optional('/v1/events?after=' + state.after),
      ]);
      $('auth').hidden = true;
      renderStatus(status);
      renderMembers(status, nodes);
      renderRate(status, stats);
      const again = events !== null && !renderEvents(events);
      setConn('ok', 'live · ' + clock(new Date()));
      schedule(again ? 0 : POLL_MS);
    } catch (e) {
      if (e instanceof AuthError) {
        showAuth(e.message);
        return; // until a token is given
      }
      setConn('error', 'cannot reach the node: ' + e.message);
      schedule(POLL_MS);
    }
    $('forget-token').hidden = !token();
  }

  function schedule(ms) {
    if (state.timer === null) state.timer = setTimeout(poll, ms);
  }

  function start() {
    $('auth-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token').value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      $('token').value = '';
      $('auth').hidden = true;
      setConn('wait', 'checking the token…');
      schedule(0);
    });
    $('forget-token').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $('forget-token').hidden = true;
      if (state.timer !== null) {
        clearTimeout(state.timer);
        state.timer = null;
      }
      schedule(0);
    });
    schedule(0);
  }

  start();
})();
