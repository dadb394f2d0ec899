// Client: endpoints, connections, and `call`, which runs one request with
// failover and the retries that cannot apply a write twice. It follows the
// Go client (client/client.go); docs/PROTOCOL.md is the contract.

import { dial } from './connection.js';
import { Op, WRITES, decodeItem, decodeList, decodeLease, decodeLock, jsonBytes, leaseWire, parseJSON, uint } from './codec.js';
import { ConsensusError, NotSent, Lost } from './errors.js';
import { Watcher } from './watch.js';
import { Observer } from './observe.js';
import { Session } from './session.js';
import { Queue } from './queue.js';

/** Defaults of the client options, in milliseconds where a time. */
export const defaults = Object.freeze({
  dialTimeout: 2000,
  requestTimeout: 10000,
  maxAttempts: 5,
  retryBackoff: 50,
  keepAlive: 5000,
  leaderRefresh: 2000,
  maxFrameBytes: 4 << 20,
  maxInFlight: 1024,
});

const MAX_BACKOFF = 1000;
// How long an endpoint that failed is not chosen as the leader's.
const LEADER_AVOID = 10000;
// The sequence numbers the cluster remembers per client (api.DefaultSessionWindow).
const SESSION_WINDOW = 256;
// LIST_PAGE is how many items a list asks for per page (the server caps
// pages at its frame limit too).
const LIST_PAGE = 1000;

/** endpointURLs turns "host:port", "http(s)://host:port" or a ws(s) URL into its URLs. */
export function endpointURLs(raw) {
  if (typeof raw !== 'string' || raw === '') {
    throw new ConsensusError('bad_request', `endpoint ${JSON.stringify(raw)}: want host:port or a URL`);
  }
  let u;
  try {
    u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`);
  } catch {
    throw new ConsensusError('bad_request', `endpoint ${JSON.stringify(raw)}: not host:port or a URL`);
  }
  const secure = u.protocol === 'https:' || u.protocol === 'wss:';
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(u.protocol)) {
    throw new ConsensusError('bad_request', `endpoint ${JSON.stringify(raw)}: scheme ${u.protocol} is not http, https, ws or wss`);
  }
  const path = u.pathname === '/' ? '' : u.pathname.replace(/\/v1\/ws$/, '');
  return {
    http: `${secure ? 'https' : 'http'}://${u.host}${path}`,
    ws: `${secure ? 'wss' : 'ws'}://${u.host}${path}/v1/ws`,
    // The HTTP address a member advertises, to find the leader's endpoint;
    // an endpoint behind a path (a proxy) cannot be matched.
    host: path === '' ? u.host : '',
  };
}

function randomId() {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  return 'js-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * SeqWindow numbers a client's writes so that none is sent SESSION_WINDOW
 * or more past the oldest whose outcome is unsettled: the cluster forgets
 * older ones and would refuse a retry of it as request_expired.
 */
export class SeqWindow {
  constructor(limit) {
    this.limit = limit;
    this.next = 0;
    this.open = new Set();
    this.waiters = [];
  }

  #min() {
    let m = 0;
    for (const s of this.open) if (m === 0 || s < m) m = s;
    return m;
  }

  async acquire(signal) {
    for (;;) {
      const min = this.#min();
      const seq = this.next + 1;
      if (min === 0 || seq - min < this.limit) {
        this.next = seq;
        this.open.add(seq);
        return seq;
      }
      await new Promise((resolve) => {
        this.waiters.push(resolve);
        signal.addEventListener('abort', resolve, { once: true });
      });
      if (signal.aborted) throw new NotSent(signal.reason);
    }
  }

  release(seq) {
    this.open.delete(seq);
    const w = this.waiters;
    this.waiters = [];
    for (const resolve of w) resolve();
  }
}

/**
 * Client talks to a cluster over one multiplexed /v1/ws connection per
 * endpoint in use, and to its HTTP API for what /v1/ws does not carry.
 */
export class Client {
  /**
   * @param {object} options see index.d.ts ClientOptions.
   */
  constructor(options = {}) {
    let endpoints = options.endpoints;
    if (typeof endpoints === 'string') endpoints = endpoints.split(',').map((s) => s.trim()).filter(Boolean);
    if (!Array.isArray(endpoints) || endpoints.length === 0) {
      throw new ConsensusError('bad_request', 'endpoints: want at least one HTTP address of a cluster member');
    }
    this.opts = { ...defaults };
    for (const k of Object.keys(defaults)) {
      if (options[k] !== undefined) {
        if (typeof options[k] !== 'number' || !Number.isFinite(options[k])) {
          throw new ConsensusError('bad_request', `${k}: want a number, got ${JSON.stringify(options[k])}`);
        }
        this.opts[k] = options[k];
      }
    }
    this.opts.token = options.token ?? '';
    this.endpoints = endpoints.map((e) => ({ ...endpointURLs(e), conn: null, dialing: null, failedAt: 0 }));
    this.id = options.clientId ?? randomId();
    if (typeof this.id !== 'string' || this.id.length === 0 || this.id.length > 128) {
      throw new ConsensusError('bad_request', 'clientId: want 1 to 128 bytes');
    }
    this.preferred = 0;
    this.seqs = new SeqWindow(SESSION_WINDOW);
    this.leaderDue = 0;
    this.leaderRunning = false;
    this.closed = false;
    this.watchers = new Set();
  }

  /** clientId is the id this client's writes carry. */
  get clientId() {
    return this.id;
  }

  /** close closes the connections and watches; calls in progress fail with `closed`. */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watchers) w.close();
    for (const ep of this.endpoints) {
      ep.conn?.close();
      ep.conn = null;
    }
  }

  async #connect(ep, signal) {
    if (ep.conn && !ep.conn.broken) return ep.conn;
    ep.conn = null;
    if (this.closed) throw new NotSent(new ConsensusError('closed', 'client closed'));
    if (!ep.dialing) {
      ep.dialing = dial(ep.ws, this.opts).then((conn) => {
        ep.dialing = null;
        if (this.closed) {
          conn.close();
          throw new NotSent(new ConsensusError('closed', 'client closed'));
        }
        ep.conn = conn;
        return conn;
      }, (err) => {
        ep.dialing = null;
        throw err;
      });
    }
    let onAbort;
    const aborted = new Promise((_, reject) => {
      onAbort = () => reject(new NotSent(signal.reason));
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([ep.dialing, aborted]);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * call runs request [op, ...args] with failover and safe retries and
   * resolves with its raw result. For a write, args is a function of the
   * request id ([clientId, seq]) that returns the arguments: every attempt
   * carries the same id, so the cluster applies the write once.
   */
  //
  // wait is how long the server may keep the call waiting (a lock's or a
  // claim's wait), beyond the request timeout; signal, if given, abandons
  // the call (it rejects with the signal's reason as its cause).
  async call(op, args, { wait = 0, signal } = {}) {
    const write = WRITES.has(op);
    if (this.closed) throw new ConsensusError('closed', `${opName(op)}: client closed`);
    const ac = new AbortController();
    const ms = wait + this.opts.requestTimeout;
    const timer = setTimeout(() => ac.abort(new ConsensusError('timeout',
      `no answer within ${ms} ms`)), ms);
    const onAbort = () => ac.abort(signal.reason instanceof ConsensusError ? signal.reason
      : new ConsensusError('canceled', `canceled: ${signal.reason?.message ?? signal.reason}`, { cause: signal.reason }));
    if (signal) {
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    }
    let seq = 0;
    try {
      if (typeof args === 'function') {
        try {
          seq = await this.seqs.acquire(ac.signal);
        } catch (e) {
          throw this.#finalize(op, write, e);
        }
        args = args([this.id, uint(seq)]);
      }
      return await this.#do(op, args, write, ac.signal);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (seq) this.seqs.release(seq);
    }
  }

  async #do(op, args, write, signal) {
    const n = this.endpoints.length;
    let backoff = this.opts.retryBackoff;
    let triedSinceWait = 0;
    let best = null; // a server's answer beats a transport failure
    this.#maybeRefreshLeader();
    for (let attempt = 1; ; attempt++) {
      const i = this.preferred;
      const ep = this.endpoints[i % n];
      let err;
      try {
        const conn = await this.#connect(ep, signal);
        return await conn.call(op, args, { write, signal });
      } catch (e) {
        err = e;
      }
      const se = serverAnswer(err);
      if (se || best === null || !serverAnswer(best)) best = err;
      let retry = false;
      let wait = false;
      if (signal.aborted || this.closed) {
        // no retry
      } else if (se) {
        switch (se.code) {
          case 'no_leader': case 'unavailable': case 'canceled': case 'internal': case 'overloaded':
            retry = true; wait = true; break;
          case 'timeout':
            retry = write; wait = true; break;
          default:
        }
      } else if (err instanceof NotSent || err instanceof Lost) {
        retry = true;
      }
      if (!se) ep.failedAt = Date.now();
      if (!retry || attempt >= this.opts.maxAttempts) {
        throw this.#finalize(op, write, signal.aborted || this.closed ? err : best);
      }
      // Whatever went wrong, another endpoint may do better.
      if (this.preferred === i) this.preferred = (i + 1) % n;
      triedSinceWait++;
      if (wait || triedSinceWait >= n) {
        await sleep(backoff, signal);
        if (signal.aborted) throw this.#finalize(op, write, best);
        backoff = Math.min(2 * backoff, MAX_BACKOFF);
        triedSinceWait = 0;
      }
    }
  }

  #finalize(op, write, err) {
    const name = opName(op);
    const se = serverAnswer(err);
    if (se && !(err instanceof NotSent)) {
      se.message = `${name}: ${se.message}`;
      return se;
    }
    const cause = err?.cause ?? err;
    const closed = this.closed || cause?.code === 'closed';
    if (err instanceof NotSent) {
      if (se) return new ConsensusError(se.code, `${name}: ${se.message}`, { endpoint: se.endpoint, cause: se });
      if (closed) return new ConsensusError('closed', `${name}: client closed`, { cause });
      if (cause?.code === 'timeout' || cause?.code === 'canceled') {
        return new ConsensusError(cause.code, `${name}: not sent: ${cause.message}`, { cause });
      }
      return new ConsensusError('unavailable', `${name}: no endpoint answered: ${cause?.message}`, { cause });
    }
    const code = closed ? 'closed' : cause?.code === 'timeout' || cause?.code === 'canceled' ? cause.code : 'unavailable';
    if (write) {
      return new ConsensusError(code, `${name}: the request was sent; the write may or may not be applied: ${cause?.message}`,
        { outcomeUnknown: true, cause });
    }
    return new ConsensusError(code, `${name}: ${cause?.message}`, { cause });
  }

  #maybeRefreshLeader() {
    if (this.opts.leaderRefresh < 0 || this.endpoints.length < 2) return;
    const now = Date.now();
    if (now < this.leaderDue || this.leaderRunning || this.closed) return;
    this.leaderDue = now + this.opts.leaderRefresh;
    this.leaderRunning = true;
    this.#refreshLeader().finally(() => { this.leaderRunning = false; });
  }

  // refreshLeader moves the client's calls to the leader's endpoint, when
  // the leader's advertised HTTP address is one of the endpoints: a write
  // or a linearizable read on a follower costs a round trip to the leader.
  async #refreshLeader() {
    const i = this.preferred;
    const ep = this.endpoints[i % this.endpoints.length];
    try {
      const signal = AbortSignal.timeout(this.opts.dialTimeout);
      const conn = await this.#connect(ep, signal);
      const st = parseJSON(await conn.call(Op.status, [], { signal }));
      if (!st?.leaderId || st.isLeader) return;
      const addr = st.members?.find((m) => m.id === st.leaderId)?.httpAddr;
      if (!addr) return;
      const j = this.endpoints.findIndex((e) => e.host === addr && Date.now() - e.failedAt >= LEADER_AVOID);
      if (j >= 0 && this.preferred === i) this.preferred = j;
    } catch {
      // A failed refresh changes nothing; the next call's failover does.
    }
  }

  // ---- key-value ----

  /**
   * put stores value (any JSON value) under key and resolves with the
   * write's revision. cond: a revision, 0 (absent) or true (exists).
   * lease: attach the key to that lease (deleted when it ends); ttlMs,
   * instead: give the key a lease of its own. fence: { lock, token }, the
   * write applies only while that lock is held with that token (`fenced`
   * otherwise).
   */
  async put(key, value, { cond, lease, ttlMs, fence } = {}) {
    const where = `put ${JSON.stringify(key)}`;
    const v = jsonBytes(value);
    if (v === undefined) throw new ConsensusError('invalid_json', `${where}: value is not JSON`);
    const c = condArg(where, cond);
    if (lease !== undefined && ttlMs !== undefined) {
      throw new ConsensusError('invalid_lease', `${where}: a lease or a time to live, not both`);
    }
    const l = lease === undefined ? undefined : leaseArg(where, lease);
    const t = ttlMs === undefined ? undefined : ttlArg(where, ttlMs);
    const f = fenceArg(where, fence);
    return Number(await this.call(Op.put, (reqid) => trimNil([key, v, reqid, c, l, t, f])));
  }

  /** get returns the item under key; consistency 'local' reads this node's state. */
  async get(key, { consistency } = {}) {
    return decodeItem(await this.call(Op.get, [key, consistencyArg(consistency)]));
  }

  /** delete removes key and returns the revision; key_not_found if missing. */
  async delete(key, { cond, fence } = {}) {
    const where = `delete ${JSON.stringify(key)}`;
    const c = condArg(where, cond);
    const f = fenceArg(where, fence);
    return Number(await this.call(Op.delete, (reqid) => trimNil([key, reqid, c, f])));
  }

  /** txn applies every change or none, at one revision; fence as put's. */
  async txn(changes, { fence } = {}) {
    const f = fenceArg('txn', fence);
    if (!Array.isArray(changes)) throw new ConsensusError('bad_request', 'txn: want an array of changes');
    const ops = changes.map((ch, i) => {
      if (ch === null || typeof ch !== 'object' || typeof ch.key !== 'string') {
        throw new ConsensusError('bad_request', `txn: change ${i}: want { key, value } or { key, delete: true }`);
      }
      const cond = ch.ifRevision === undefined ? [] : [uint(ch.ifRevision)];
      if (ch.delete === true) return [2, ch.key, ...cond];
      const v = jsonBytes(ch.value);
      if (v === undefined) throw new ConsensusError('invalid_json', `txn: change ${i} (${ch.key}): value is not JSON`);
      return [1, ch.key, v, ...cond];
    });
    return Number(await this.call(Op.txn, (reqid) => trimNil([ops, reqid, f])));
  }

  /**
   * list returns { revision, items } for the keys under prefix, sorted.
   * It reads the list in pages (operation 30, docs/PROTOCOL.md), every
   * page at the first page's revision, so a list larger than one frame
   * is read whole; a page the server can no longer read at that revision
   * fails with `compacted` (read the list again).
   */
  async list(prefix = '', { consistency } = {}) {
    const items = [];
    let revision = 0;
    let start = null;
    for (;;) {
      const page = await this.call(Op.listPage,
        [prefix, consistencyArg(consistency), LIST_PAGE, start, revision > 0 ? uint(revision) : null, 0]);
      if (revision === 0) revision = Number(page[0]);
      for (const it of page[1] ?? []) items.push(decodeItem(it));
      if (!page[2]) return { revision, items };
      start = String(page[3]);
    }
  }

  /** status is the JSON GET /v1/status answers, of the node serving the call. */
  async status() {
    return parseJSON(await this.call(Op.status, []));
  }

  // ---- leases ----

  /**
   * grant grants a lease of ttlMs (1 ms to 30 days; the cluster raises one
   * below its floor, 1 s, and the answer's ttlMs says so) and resolves with
   * { id, ttlMs }. The id is a hexadecimal string, picked here at random
   * unless given, so a grant retried after a lost answer is the same grant.
   */
  async grant(ttlMs, { id, fence } = {}) {
    const t = ttlArg('grant lease', ttlMs);
    const l = leaseArg('grant lease', id ?? randomLeaseId());
    const f = fenceArg('grant lease', fence);
    return decodeLease(await this.call(Op.grantLease, (reqid) => trimNil([t, l, reqid, f])));
  }

  /** revoke ends lease id and deletes its keys, at one revision, which it resolves with; lease_not_found if it is gone. */
  async revoke(id, { fence } = {}) {
    const l = leaseArg('revoke lease', id);
    const f = fenceArg('revoke lease', fence);
    return Number(await this.call(Op.revokeLease, (reqid) => trimNil([l, reqid, f])));
  }

  /**
   * keepAlive starts lease id's countdown again at its full time to live,
   * once, and resolves with { id, ttlMs, remainingMs }; lease_not_found if
   * it has expired or was revoked. The leader answers it (a follower asks
   * it); it costs no log entry and is retried like a read.
   */
  async keepAlive(id, { signal } = {}) {
    return decodeLease(await this.call(Op.keepAlive, [leaseArg('keep lease alive', id)], { signal }));
  }

  /** timeToLive resolves with { id, ttlMs, remainingMs, keys } by the leader's clock; lease_not_found if it is gone. */
  async timeToLive(id) {
    const lease = decodeLease(await this.call(Op.timeToLive, [leaseArg('lease time to live', id)]));
    lease.keys ??= [];
    return lease;
  }

  /** leases resolves with every lease, by id: { id, ttlMs } (not the time left, nor keys). */
  async leases({ consistency } = {}) {
    const list = await this.call(Op.listLeases, [consistencyArg(consistency)]);
    return (list ?? []).map(decodeLease);
  }

  // ---- locks ----

  /**
   * acquire takes lock name for lease, waiting up to waitMs (0: try once)
   * behind the leases ahead of it, first come first served, and resolves
   * with { name, token, lease }. token is the fencing token: strictly
   * greater than any earlier holder's; hand it to the resource the lock
   * protects (or to put's fence) and to release. A wait that runs out is
   * `locked`. The lock is released by release, or when the lease ends. A
   * lease that holds it already gets its token again.
   */
  async acquire(name, lease, { waitMs, signal } = {}) {
    const where = `acquire lock ${JSON.stringify(name)}`;
    const l = leaseArg(where, lease);
    const w = waitArg(where, waitMs);
    return decodeLock(await this.call(Op.acquireLock, (reqid) => [name, l, w, reqid], { wait: w, signal }));
  }

  /** tryAcquire is acquire that does not wait: `locked` if the lock is held. */
  async tryAcquire(name, lease) {
    return this.acquire(name, lease, { waitMs: 0 });
  }

  /** release releases lock name held with token; not_holder if that token does not hold it. */
  async release(name, token) {
    const t = tokenArg(`release lock ${JSON.stringify(name)}`, token);
    await this.call(Op.releaseLock, (reqid) => [name, t, reqid]);
  }

  /** lockState resolves with { name, token, lease, waiters } of lock name; lock_not_found if nobody holds or waits for it. */
  async lockState(name, { consistency } = {}) {
    return decodeLock(await this.call(Op.getLock, [name, consistencyArg(consistency)]));
  }

  // ---- elections ----

  /**
   * campaign runs for leader of election name with lease and value (any
   * JSON value, or undefined), waiting up to waitMs (0: try once; `locked`
   * if there is a leader), and resolves with the leadership won: { name,
   * token, lease, value }. token fences writes and names the leadership to
   * proclaim and resign. It ends with resign or when the lease ends.
   */
  async campaign(name, lease, value, { waitMs, signal } = {}) {
    const where = `campaign ${JSON.stringify(name)}`;
    const l = leaseArg(where, lease);
    const w = waitArg(where, waitMs);
    const v = value === undefined ? null : jsonBytes(value);
    if (v === undefined) throw new ConsensusError('invalid_json', `${where}: value is not JSON`);
    return decodeLock(await this.call(Op.campaign, (reqid) => [name, l, v, w, reqid], { wait: w, signal }));
  }

  /** proclaim sets the value of the leadership of election name held with token; not_holder otherwise. */
  async proclaim(name, token, value) {
    const where = `proclaim ${JSON.stringify(name)}`;
    const t = tokenArg(where, token);
    const v = jsonBytes(value);
    if (v === undefined) throw new ConsensusError('invalid_json', `${where}: value is not JSON`);
    await this.call(Op.proclaim, (reqid) => [name, t, v, reqid]);
  }

  /** resign gives up the leadership of election name held with token; the next candidate leads. */
  async resign(name, token) {
    const t = tokenArg(`resign ${JSON.stringify(name)}`, token);
    await this.call(Op.resign, (reqid) => [name, t, reqid]);
  }

  /** leader resolves with the leader of election name ({ name, token, lease, value }); lock_not_found if none. */
  async leader(name, { consistency } = {}) {
    return decodeLock(await this.call(Op.leader, [name, consistencyArg(consistency)]));
  }

  /** observe follows the leadership of election name; see Observer. */
  observe(name) {
    if (this.closed) throw new ConsensusError('closed', 'observe: client closed');
    const o = new Observer(this, name);
    this.watchers.add(o);
    o.onClose = () => this.watchers.delete(o);
    return o;
  }

  // ---- sessions and queues ----

  /** session grants a lease of ttlMs and keeps it alive; see Session. */
  async session(ttlMs, options) {
    return Session.start(this, ttlMs, options);
  }

  /** queue returns the task queue called name; see Queue. */
  queue(name) {
    return new Queue(this, name);
  }

  // ---- workflows and application nodes ----

  async startWorkflow(id, fields) {
    return Number(await this.call(Op.startWorkflow, (reqid) => [id, fieldsArg(fields), reqid]));
  }

  async stopWorkflow(id, fields) {
    return Number(await this.call(Op.stopWorkflow, (reqid) => [id, fieldsArg(fields), reqid]));
  }

  async updateWorkflowState(id, fields) {
    return Number(await this.call(Op.updateWorkflow, (reqid) => [id, fieldsArg(fields ?? {}), reqid]));
  }

  async getWorkflow(id, { consistency } = {}) {
    return decodeItem(await this.call(Op.getWorkflow, [id, consistencyArg(consistency)]));
  }

  async listWorkflows({ consistency } = {}) {
    return decodeList(await this.call(Op.listWorkflows, [consistencyArg(consistency)]));
  }

  async registerNode(id, metadata) {
    return Number(await this.call(Op.registerNode, (reqid) => [id, fieldsArg(metadata), reqid]));
  }

  async deregisterNode(id) {
    return Number(await this.call(Op.deregisterNode, (reqid) => [id, reqid]));
  }

  async listNodes({ consistency } = {}) {
    return decodeList(await this.call(Op.listNodes, [consistencyArg(consistency)]));
  }

  // ---- HTTP API ----

  /**
   * http GETs path (with its query) from the JSON API with failover: a
   * network failure or a 503 moves to the next endpoint. Only reads use it
   * (they are safe to retry anywhere). It resolves with the parsed body.
   */
  async http(path) {
    const n = this.endpoints.length;
    const deadline = Date.now() + this.opts.requestTimeout;
    let last;
    for (let attempt = 1; attempt <= Math.max(this.opts.maxAttempts, n); attempt++) {
      const i = this.preferred;
      try {
        return await this.httpAt(i, path, deadline - Date.now());
      } catch (e) {
        last = e;
        if (e.code === 'closed' || (e.status !== undefined && e.status !== 503)) throw e;
      }
      if (this.preferred === i) this.preferred = (i + 1) % n;
      if (Date.now() >= deadline) break;
      await sleep(this.opts.retryBackoff);
    }
    throw last;
  }

  /**
   * httpAt GETs path from endpoint i alone, within ms milliseconds (the
   * request timeout by default). A non-2xx answer is a ConsensusError with
   * the server's code and the HTTP `status`.
   */
  async httpAt(i, path, ms = this.opts.requestTimeout) {
    if (this.closed) throw new ConsensusError('closed', `GET ${path}: client closed`);
    const ep = this.endpoints[i % this.endpoints.length];
    let res;
    let text;
    try {
      res = await fetch(ep.http + path, {
        headers: this.opts.token ? { Authorization: `Bearer ${this.opts.token}` } : {},
        signal: AbortSignal.timeout(Math.max(ms, 1)),
      });
      text = await res.text();
    } catch (e) {
      ep.failedAt = Date.now();
      throw new ConsensusError(e.name === 'TimeoutError' ? 'timeout' : 'unavailable',
        `GET ${ep.http}${path}: ${e.message}`, { endpoint: ep.http, cause: e });
    }
    let body;
    try { body = JSON.parse(text); } catch { body = undefined; }
    if (res.ok && body !== undefined) return body;
    const err = new ConsensusError(body?.error?.code ?? (res.ok ? 'internal' : 'unavailable'),
      `GET ${ep.http}${path}: ${body?.error?.message ?? `HTTP ${res.status}`}`, { endpoint: ep.http, fromServer: true });
    err.status = res.status;
    throw err;
  }

  /**
   * watch follows the changes under prefix over GET /v1/watch; see Watcher.
   * fromRevision 0 (the default) starts after every write acknowledged
   * before the call.
   */
  watch(prefix = '', { fromRevision = 0 } = {}) {
    if (this.closed) throw new ConsensusError('closed', 'watch: client closed');
    const w = new Watcher(this, prefix, fromRevision);
    this.watchers.add(w);
    w.onClose = () => this.watchers.delete(w);
    return w;
  }
}

// trimNil drops the trailing undefined arguments of a request and turns
// the others into nil: the server reads a missing trailing argument as
// unset, and a nil one in the middle too.
function trimNil(args) {
  let n = args.length;
  while (n > 0 && args[n - 1] === undefined) n--;
  return args.slice(0, n).map((a) => (a === undefined ? null : a));
}

function condArg(where, cond) {
  if (cond === undefined || cond === null) return undefined;
  if (cond === true) return true;
  if (!Number.isSafeInteger(cond) || cond < 0) {
    throw new ConsensusError('bad_request', `${where}: cond ${JSON.stringify(cond)}: want a revision, 0 or true`);
  }
  return uint(cond);
}

/** leaseArg checks a lease id (hexadecimal string, or a BigInt) and returns it for the wire. */
export function leaseArg(where, lease) {
  const v = leaseWire(lease);
  if (v === undefined) {
    throw new ConsensusError('invalid_lease', `${where}: lease ${String(lease)}: want 1 to 16 hexadecimal digits of a positive 63-bit number`);
  }
  return v;
}

// MAX_TTL_MS is the longest time to live (30 days), api.MaxLeaseTTLMs.
export const MAX_TTL_MS = 30 * 24 * 3600 * 1000;

function ttlArg(where, ttlMs) {
  if (!Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > MAX_TTL_MS) {
    throw new ConsensusError('invalid_lease', `${where}: time to live ${JSON.stringify(ttlMs)}: want 1 to ${MAX_TTL_MS} ms`);
  }
  return ttlMs;
}

// MAX_WAIT_MS bounds a lock's, a campaign's or a claim's wait (the server's limit).
export const MAX_WAIT_MS = 600000;

function waitArg(where, waitMs) {
  if (waitMs === undefined || waitMs === null) return 0;
  if (!Number.isFinite(waitMs) || waitMs < 0 || waitMs > MAX_WAIT_MS) {
    throw new ConsensusError('bad_request', `${where}: wait ${JSON.stringify(waitMs)}: want 0 (try once) to ${MAX_WAIT_MS} ms`);
  }
  return Math.ceil(waitMs);
}

function tokenArg(where, token) {
  if (!Number.isSafeInteger(token) || token < 1) {
    throw new ConsensusError('bad_request', `${where}: token ${JSON.stringify(token)}: want a positive integer`);
  }
  return uint(token);
}

function fenceArg(where, fence) {
  if (fence === undefined || fence === null) return undefined;
  if (typeof fence !== 'object' || typeof fence.lock !== 'string' || fence.lock === '') {
    throw new ConsensusError('bad_request', `${where}: fence: want { lock, token }`);
  }
  return [fence.lock, tokenArg(`${where}: fence`, fence.token)];
}

function randomLeaseId() {
  const b = new Uint8Array(8);
  for (;;) {
    globalThis.crypto.getRandomValues(b);
    let v = 0n;
    for (const x of b) v = (v << 8n) | BigInt(x);
    v >>= 1n; // positive, 63 bits, as the server would pick
    if (v !== 0n) return v.toString(16);
  }
}

function serverAnswer(err) {
  if (err instanceof ConsensusError && err.fromServer) return err;
  if (err instanceof NotSent && err.cause instanceof ConsensusError && err.cause.fromServer) return err.cause;
  return null;
}

function consistencyArg(c) {
  if (c === undefined || c === 'linearizable') return 0;
  if (c === 'local') return 1;
  throw new ConsensusError('bad_request', `consistency ${JSON.stringify(c)}: want 'linearizable' or 'local'`);
}

function fieldsArg(fields) {
  if (fields === undefined || fields === null) return null;
  if (typeof fields !== 'object' || Array.isArray(fields)) {
    throw new ConsensusError('bad_request', 'fields: want an object');
  }
  return jsonBytes(fields);
}

const OP_NAMES = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k]));
function opName(op) {
  return OP_NAMES[op] ?? `op ${op}`;
}
