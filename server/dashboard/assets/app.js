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
  const FETCH_TIMEOUT_MS = 4000; // a node that does not answer in this is not answering

  const $ = (id) => document.getElementById(id);

  const state = {
    after: 0,       // last event sequence number shown
    since: null,    // start time of the node's event log; a change means a restart
    samples: [],    // {t, revision, applied} within RATE_WINDOW_MS
    chart: [],      // writes/s between consecutive polls
    timer: null,
    lastAnswer: null, // Date of the last complete answer from this node
    answeredAt: 0,    // performance.now() of it, for ages given by the node
    status: null,     // the last /v1/status answered
    nodes: null,      // the last /v1/cluster/nodes answered
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
    // A node that is stopped (SIGSTOP) or cut off never closes the
    // connection: without a bound the page would wait, and look live,
    // forever.
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    let resp;
    try {
      resp = await fetch(path, { headers, cache: 'no-store', credentials: 'same-origin', signal: ctl.signal });
    } catch (e) {
      throw new Error(path + ': ' + (e.name === 'AbortError' ? 'no answer within ' + FETCH_TIMEOUT_MS / 1000 + ' s' : 'no connection'));
    } finally {
      clearTimeout(timer);
    }
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

  const pad = (n) => String(n).padStart(2, '0');

  // stamp shows a date and time in the browser's time zone:
  // 2026-12-04 18:31:05.
  function stamp(date) {
    return date.getFullYear() + '-' + pad(date.getMonth() + 1) + '-' + pad(date.getDate()) + ' ' +
      pad(date.getHours()) + ':' + pad(date.getMinutes()) + ':' + pad(date.getSeconds());
  }

  // ago says how long ms milliseconds is, for people.
  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  // ms formats a latency in milliseconds.
  function ms(v) {
    if (v === undefined || v === null) return '—';
    return (v < 1 ? v.toFixed(2) : v < 10 ? v.toFixed(1) : Math.round(v)) + ' ms';
  }

  function rate(v) {
    return v < 10 ? v.toFixed(1) : String(Math.round(v));
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

  // sinceAnswer is how long ago, in ms, this node's last answer came.
  function sinceAnswer() {
    return state.answeredAt ? performance.now() - state.answeredAt : 0;
  }

  function renderMembers(status, nodes) {
    const health = new Map();
    if (nodes && Array.isArray(nodes.nodes)) {
      for (const n of nodes.nodes) health.set(n.id, n);
    }
    const counts = {};
    const rows = [];
    const late = sinceAnswer();
    for (const m of status.members || []) {
      const h = health.get(m.id) || {};
      const self = m.id === status.nodeId;
      const role = roleOf(m, status.leaderId);
      const row = document.createElement('tr');
      row.dataset.id = m.id;
      row.dataset.role = role;
      cell(row, m.id + (self ? ' (this node)' : ''));
      cell(row, role, 'role role-' + role);
      const hv = h.health || 'unknown';
      counts[hv] = (counts[hv] || 0) + 1;
      const hc = cell(row, hv, 'health health-' + safeClass(hv));
      if (h.reason) hc.title = h.reason;
      const checked = typeof h.lastCheckAgeMs === 'number' ? ago(h.lastCheckAgeMs + late) + ' ago' : 'never';
      cell(row, checked, 'checked');
      const applied = cell(row, h.appliedIndex || '', 'applied');
      if (h.lastPassedCheck) applied.title = 'read at ' + stamp(new Date(h.lastPassedCheck));
      // A lag is shown only when the node vouches for it: null means the
      // applied index is not current (failed check, stream down).
      const lag = cell(row, typeof h.lag === 'number' ? h.lag : 'unknown', 'lag');
      if (typeof h.lag !== 'number') lag.classList.add('muted');
      let stream = self ? 'self' : (h.connected ? 'up' : 'down');
      if (!self && typeof h.streamDownMs === 'number') stream = 'down ' + ago(h.streamDownMs + late);
      cell(row, stream, 'stream stream-' + (self ? 'self' : h.connected ? 'up' : 'down'));
      cell(row, m.peerAddr);
      cell(row, m.httpAddr);
      rows.push(row);
    }
    $('members').tBodies[0].replaceChildren(...rows);
    const parts = Object.keys(counts).sort().map((k) => counts[k] + ' ' + k);
    text('health-summary', parts.join(', '));
  }

  function renderOverview(o) {
    if (!o) return;
    text('revision', o.revision);
    text('keys', o.keys);
    const used = o.maxKeys > 0 ? o.keys / o.maxKeys : 0;
    $('keys-of').textContent = 'of ' + o.maxKeys + ' max (' + (used * 100).toFixed(used < 0.1 ? 2 : 1) + ' %)';
    $('keys-meter').style.width = Math.min(100, used * 100).toFixed(1) + '%';
    $('keys-meter').className = used >= 0.9 ? 'meter-bad' : used >= 0.75 ? 'meter-warn' : '';
    text('workflows-total', o.workflowsTotal);
    const wf = o.workflows || {};
    $('workflows').textContent = Object.keys(wf).sort().map((k) => wf[k] + ' ' + k).join(', ') || 'none';
    text('registered-nodes', o.registeredNodes);
    const r = o.requests || {};
    const secs = ((r.windowMs || 0) / 1000).toFixed(0);
    const one = (x) => x || { perSecond: 0, count: 0 };
    text('read-rate', rate(one(r.reads).perSecond) + ' /s');
    $('read-latency').textContent = 'p50 ' + ms(one(r.reads).p50Ms) + ' · p99 ' + ms(one(r.reads).p99Ms) + ' (last ' + secs + ' s)';
    text('write-ops', rate(one(r.writes).perSecond) + ' /s');
    $('write-latency').textContent = 'p50 ' + ms(one(r.writes).p50Ms) + ' · p99 ' + ms(one(r.writes).p99Ms) + ' (last ' + secs + ' s)';
    const errs = one(r.clientErrors).perSecond + one(r.serverErrors).perSecond;
    text('error-rate', rate(errs) + ' /s');
    $('error-rate').classList.toggle('bad', one(r.serverErrors).count > 0);
    $('error-detail').textContent = one(r.serverErrors).count + ' 5xx, ' + one(r.clientErrors).count + ' 4xx in ' + secs +
      ' s; ' + (one(r.serverErrors).total + one(r.clientErrors).total) + ' since start';
    $('leader-changes').textContent = o.leaderChanges === null || o.leaderChanges === undefined
      ? '' : o.leaderChanges + ' leader change' + (o.leaderChanges === 1 ? '' : 's') + ' seen';
  }

  // renderLocks shows the lease count and the locks the overview lists
  // (the first 100 by name), elections with their leader's value. Lock
  // names and values are users' strings: they go in as text only.
  function renderLocks(o) {
    if (!o) return; // no answer this time: keep what is shown
    const section = $('coordination');
    if (!o.leases || !o.locks) {
      section.hidden = true; // a node that does not serve locks
      return;
    }
    section.hidden = false;
    const items = Array.isArray(o.locks.items) ? o.locks.items : [];
    const plural = (n, word) => n + ' ' + word + (n === 1 ? '' : 's');
    $('coordination-summary').textContent = '(' + plural(o.leases.count, 'lease') + ', ' + plural(o.locks.total, 'lock') +
      (o.locks.total > items.length ? '; the first ' + items.length + ' by name shown' : '') + ')';
    const rows = items.map((l) => {
      const row = document.createElement('tr');
      row.dataset.name = l.name;
      const name = cell(row, l.name, 'lock-name');
      if (typeof l.election === 'string') {
        row.dataset.election = l.election;
        const tag = document.createElement('span');
        tag.className = 'tag';
        tag.textContent = 'election';
        name.append(' ', tag);
      }
      cell(row, l.lease, 'lease');
      cell(row, typeof l.remainingMs === 'number' ? seconds(l.remainingMs) : '', 'expires');
      cell(row, l.token, 'token');
      cell(row, l.waiters, 'waiters');
      cell(row, l.value === undefined ? '' : JSON.stringify(l.value), 'value');
      return row;
    });
    if (rows.length === 0) {
      const row = document.createElement('tr');
      const td = cell(row, 'no lock is held or waited for', 'muted');
      td.colSpan = 6;
      rows.push(row);
    }
    $('locks').tBodies[0].replaceChildren(...rows);
    // Only the leader's clock counts leases down; another node says so.
    const soonest = o.leases.counted && Array.isArray(o.leases.soonest) ? o.leases.soonest : [];
    $('lease-clock').textContent = o.leases.counted
      ? 'Times left are by this node\'s clock: it leads, and leases expire by its count.'
      : 'Times left are counted by the leader only: open its dashboard to see them.';
    $('soonest').hidden = soonest.length === 0;
    $('soonest').tBodies[0].replaceChildren(...soonest.map((l) => {
      const row = document.createElement('tr');
      row.dataset.lease = l.id;
      cell(row, l.id, 'lease');
      cell(row, seconds(l.ttlMs), 'ttl');
      cell(row, typeof l.remainingMs === 'number' ? seconds(l.remainingMs) : '', 'expires');
      return row;
    }));
  }

  // renderQueues shows the task queues the overview lists (the first 50
  // by name that hold tasks): tasks by state, dead ones marked, and how
  // long the next task to be claimed has been ready. Queue names are
  // users' strings: text only.
  function renderQueues(o) {
    if (!o) return;
    const section = $('queues-section');
    if (!o.queues) {
      section.hidden = true; // a node that does not serve queues
      return;
    }
    section.hidden = false;
    const items = Array.isArray(o.queues.items) ? o.queues.items : [];
    const total = o.queues.total || 0;
    $('queues-summary').textContent = '(' + total + ' queue' + (total === 1 ? '' : 's') +
      (total > items.length ? '; the first ' + items.length + ' by name shown' : '') + ')';
    const rows = items.map((q) => {
      const row = document.createElement('tr');
      row.dataset.queue = q.queue;
      cell(row, q.queue, 'queue-name');
      cell(row, q.ready, 'ready');
      cell(row, q.delayed, 'delayed');
      cell(row, q.claimed, 'claimed');
      cell(row, q.done, 'done');
      cell(row, q.dead, 'dead').classList.toggle('bad', q.dead > 0);
      cell(row, typeof q.oldestReadyAgeMs === 'number' ? seconds(q.oldestReadyAgeMs) : '', 'oldest');
      return row;
    });
    if (rows.length === 0) {
      const row = document.createElement('tr');
      cell(row, 'no queue holds tasks', 'muted').colSpan = 7;
      rows.push(row);
    }
    $('queues').tBodies[0].replaceChildren(...rows);
    renderSchedules(o);
  }

  // renderSchedules shows the schedules (the first 50 by id) with when
  // they tick and how long until the next tick, by the node's clock.
  function renderSchedules(o) {
    const table = $('schedules');
    const list = o.schedules && Array.isArray(o.schedules.items) ? o.schedules.items : [];
    table.hidden = list.length === 0;
    if (!o.schedules) return;
    const total = o.schedules.total || 0;
    $('schedules-summary').textContent = '(' + total + (total > list.length ? '; the first ' + list.length + ' by id shown' : '') + ')';
    const now = Date.parse(o.time) || Date.now();
    table.tBodies[0].replaceChildren(...list.map((sc) => {
      const row = document.createElement('tr');
      row.dataset.schedule = sc.id;
      cell(row, sc.id, 'schedule-id');
      cell(row, sc.queue, 'queue');
      cell(row, sc.cron ? sc.cron : 'every ' + seconds(sc.everyMs), 'when');
      cell(row, sc.nextTickMs > 0 ? seconds(Math.max(0, sc.nextTickMs - now)) : 'never', 'next');
      cell(row, sc.fired, 'fired');
      cell(row, sc.skipped, 'skipped').classList.toggle('bad', sc.skipped > 0);
      return row;
    }));
  }

  // seconds shows a span of milliseconds as seconds, to a tenth below a
  // minute.
  function seconds(ms) {
    const s = ms / 1000;
    return (s < 60 ? s.toFixed(1) : Math.round(s).toString()) + ' s';
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

  // drawChart draws the writes/s of the last CHART_POINTS polls as bars,
  // with a y axis in writes/s and an x axis in seconds before now.
  function drawChart() {
    const canvas = $('rate-chart');
    const ctx = canvas.getContext && canvas.getContext('2d');
    if (!ctx) return;
    const dpr = window.devicePixelRatio || 1;
    const cssW = canvas.clientWidth || 300;
    const cssH = canvas.clientHeight || 96;
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const left = 44, bottom = 16, top = 6, right = 4;
    const plotW = Math.max(10, cssW - left - right);
    const plotH = Math.max(10, cssH - top - bottom);
    const peak = Math.max(1, ...state.chart);
    // A round top for the axis: 1, 2 or 5 times a power of ten.
    const mag = Math.pow(10, Math.floor(Math.log10(peak)));
    const yMax = [1, 2, 5, 10].map((f) => f * mag).find((v) => v >= peak);
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillStyle = '#667085';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.fillText(String(yMax) + '/s', left - 4, top);
    ctx.fillText(String(yMax / 2) + '/s', left - 4, top + plotH / 2);
    ctx.fillText('0/s', left - 4, top + plotH);
    ctx.textBaseline = 'alphabetic';
    ctx.textAlign = 'left';
    ctx.fillText('−' + CHART_POINTS + ' s', left, cssH - 2);
    ctx.textAlign = 'center';
    ctx.fillText('−' + CHART_POINTS / 2 + ' s', left + plotW / 2, cssH - 2);
    ctx.textAlign = 'right';
    ctx.fillText('now', left + plotW, cssH - 2);
    ctx.fillStyle = '#dfe3ea';
    ctx.fillRect(left, top, 1, plotH);                 // y axis
    ctx.fillRect(left, top + plotH, plotW, 1);         // x axis: 0 writes/s
    ctx.fillRect(left, top + plotH / 2, plotW, 0.5);   // half way
    ctx.fillStyle = '#0b5cad';
    const w = plotW / CHART_POINTS;
    state.chart.forEach((v, i) => {
      const h = Math.max(v > 0 ? 1 : 0, (v / yMax) * plotH);
      const x = left + (CHART_POINTS - state.chart.length + i) * w;
      ctx.fillRect(x, top + plotH - h, Math.max(1, w - 1), h);
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
      time.textContent = stamp(when);
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

  // showLive marks the page as showing this node's answers of now.
  function showLive() {
    document.body.classList.remove('stale');
    $('stale').hidden = true;
    setConn('ok', 'live · ' + stamp(state.lastAnswer));
  }

  // showStale greys out everything the page shows, says since when the
  // node has not answered, and links to the other members' dashboards,
  // from the last membership it answered.
  function showStale(reason) {
    document.body.classList.add('stale');
    $('stale').hidden = false;
    if (state.lastAnswer === null) {
      $('stale-since').textContent = 'No answer from this node yet.';
      $('stale-detail').textContent = reason;
    } else {
      $('stale-since').textContent = 'No answer from this node since ' + stamp(state.lastAnswer) +
        ' (' + ago(sinceAnswer()) + ' ago).';
      $('stale-detail').textContent = 'What is shown below is as of then, and may be out of date: ' + reason;
    }
    const links = [];
    const st = state.status;
    for (const m of (st && st.members) || []) {
      if (m.id === st.nodeId || !m.httpAddr) continue;
      const a = document.createElement('a');
      a.href = location.protocol + '//' + m.httpAddr + '/';
      a.textContent = m.id + ' (' + m.httpAddr + ')';
      a.dataset.id = m.id;
      const h = state.nodes && Array.isArray(state.nodes.nodes) ? state.nodes.nodes.find((n) => n.id === m.id) : null;
      if (h && h.health) a.title = 'health ' + h.health + ' as this node last saw it';
      links.push(a);
    }
    const others = $('stale-others');
    others.replaceChildren();
    links.forEach((a, i) => {
      if (i > 0) others.append(', ');
      others.append(a);
    });
    $('stale-others-line').hidden = links.length === 0;
    setConn('error', state.lastAnswer === null ? 'no answer' : 'no answer since ' + stamp(state.lastAnswer));
  }

  async function poll() {
    state.timer = null;
    try {
      const [status, nodes, stats, events, overview] = await Promise.all([
        api('/v1/status'),
        optional('/v1/cluster/nodes'),
        optional('/v1/stats?consistency=local'),
        optional('/v1/events?after=' + state.after),
        optional('/v1/overview'),
      ]);
      $('auth').hidden = true;
      state.lastAnswer = new Date();
      state.answeredAt = performance.now();
      state.status = status;
      if (nodes) state.nodes = nodes;
      renderStatus(status);
      renderMembers(status, nodes);
      renderRate(status, stats);
      renderOverview(overview);
      renderLocks(overview);
      renderQueues(overview);
      const again = events !== null && !renderEvents(events);
      showLive();
      schedule(again ? 0 : POLL_MS);
    } catch (e) {
      if (e instanceof AuthError) {
        showAuth(e.message);
        return; // until a token is given
      }
      showStale(e.message);
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
