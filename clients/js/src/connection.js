// One multiplexed /v1/ws connection (docs/PROTOCOL.md): requests matched to
// answers by id, everything queued in one turn of the event loop sent in
// one frame, and a ping when a connection with calls pending goes quiet.

import { encodeFrame, encodeRequest, decodeFrame } from './codec.js';
import { ConsensusError, NotSent, Lost, serverError } from './errors.js';

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

let wsModule;
/** webSocketClass returns `ws` on Node (it sends headers), else the global. */
async function webSocketClass() {
  if (isNode) {
    wsModule ??= (await import('ws')).default;
    return wsModule;
  }
  if (typeof globalThis.WebSocket !== 'function') {
    throw new ConsensusError('unavailable', 'no WebSocket implementation in this environment');
  }
  return globalThis.WebSocket;
}

function unrefTimer(t) {
  if (typeof t?.unref === 'function') t.unref();
  return t;
}

/**
 * dial opens a connection to url. It rejects with NotSent: a refused
 * handshake carries the server's error code (unauthorized, forbidden, ...).
 */
export async function dial(url, opts) {
  const WS = await webSocketClass();
  return new Promise((resolve, reject) => {
    let ws;
    let settled = false;
    const fail = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try { ws?.terminate ? ws.terminate() : ws?.close(); } catch { /* already closed */ }
      reject(new NotSent(err));
    };
    const timer = setTimeout(() => fail(new ConsensusError('unavailable',
      `dial ${url}: no answer within ${opts.dialTimeout} ms`, { endpoint: url })), opts.dialTimeout);
    try {
      if (isNode) {
        const headers = opts.token ? { Authorization: `Bearer ${opts.token}` } : {};
        ws = new WS(url, { headers, perMessageDeflate: false, maxPayload: opts.maxFrameBytes });
        ws.on('unexpected-response', (_req, res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c) => { if (body.length < 1024) body += c; });
          res.on('end', () => {
            let code = 'unavailable';
            let message = `dial ${url}: HTTP ${res.statusCode}`;
            try {
              const e = JSON.parse(body).error;
              if (e?.code && res.statusCode < 500) code = e.code;
              if (e?.message) message += `: ${e.message}`;
            } catch { /* not the JSON envelope */ }
            fail(new ConsensusError(code, message, { endpoint: url, fromServer: code !== 'unavailable' }));
          });
          res.on('error', (e) => fail(e));
        });
      } else {
        ws = new WS(url);
      }
      ws.binaryType = 'arraybuffer';
    } catch (e) {
      fail(new ConsensusError('bad_request', `dial ${url}: ${e.message}`, { endpoint: url, cause: e }));
      return;
    }
    ws.onopen = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(new Connection(url, ws, opts));
    };
    ws.onerror = (ev) => {
      fail(new ConsensusError('unavailable', `dial ${url}: ${ev?.message ?? ev?.error?.message ?? 'connection failed'}`,
        { endpoint: url }));
    };
    ws.onclose = () => fail(new ConsensusError('unavailable', `dial ${url}: closed during the handshake`, { endpoint: url }));
  });
}

/** Connection carries many calls at once over one WebSocket. */
export class Connection {
  constructor(url, ws, opts) {
    this.url = url;
    this.ws = ws;
    this.opts = opts;
    this.nextId = 0;
    this.pending = new Map(); // id -> call, sent or queued
    this.queue = []; // calls not yet written
    this.slotWaiters = []; // calls waiting for a slot (maxInFlight)
    this.flushScheduled = false;
    this.error = null;
    this.lastRecv = Date.now();
    ws.onmessage = (ev) => this.#receive(ev.data);
    ws.onclose = (ev) => this.#fail(new ConsensusError('unavailable',
      `${url} closed the connection (${ev.code}${ev.reason ? ' ' + ev.reason : ''})`, { endpoint: url }));
    ws.onerror = (ev) => this.#fail(new ConsensusError('unavailable',
      `${url}: ${ev?.message ?? 'connection error'}`, { endpoint: url }));
    if (isNode && opts.keepAlive > 0) {
      this.awaitingPong = false;
      ws.on('pong', () => { this.lastRecv = Date.now(); this.awaitingPong = false; });
      this.keepAliveTimer = unrefTimer(setInterval(() => this.#keepAlive(), opts.keepAlive));
    }
  }

  get broken() {
    return this.error !== null;
  }

  /**
   * call sends [op, ...args] and resolves with the raw result. It rejects
   * with NotSent (never written), Lost (written, no answer will come), or
   * a ConsensusError the server answered. signal aborts the wait.
   */
  call(op, args, { write = false, signal } = {}) {
    if (this.error) return Promise.reject(new NotSent(this.error));
    return new Promise((resolve, reject) => {
      const c = { op, args, write, resolve, reject, sent: false, id: 0, done: false };
      const onAbort = () => this.#abandon(c, signal.reason);
      c.cleanup = () => signal?.removeEventListener('abort', onAbort);
      if (signal) {
        if (signal.aborted) { reject(new NotSent(signal.reason)); return; }
        signal.addEventListener('abort', onAbort, { once: true });
      }
      if (this.pending.size >= this.opts.maxInFlight) {
        this.slotWaiters.push(c);
      } else {
        this.#enqueue(c);
      }
    });
  }

  #enqueue(c) {
    c.id = ++this.nextId;
    this.pending.set(c.id, c);
    this.queue.push(c);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Every call made in this turn of the event loop shares the frame.
      queueMicrotask(() => this.#flush());
    }
  }

  #settle(c, err, value) {
    if (c.done) return;
    c.done = true;
    c.cleanup();
    if (c.id) this.pending.delete(c.id);
    if (err) c.reject(err); else c.resolve(value);
    while (this.slotWaiters.length > 0 && this.pending.size < this.opts.maxInFlight && !this.error) {
      const next = this.slotWaiters.shift();
      if (!next.done) this.#enqueue(next);
    }
  }

  #abandon(c, reason) {
    const i = this.slotWaiters.indexOf(c);
    if (i >= 0) this.slotWaiters.splice(i, 1);
    this.#settle(c, c.sent ? new Lost(reason) : new NotSent(reason));
  }

  #flush() {
    this.flushScheduled = false;
    if (this.error) return;
    const budget = this.opts.maxFrameBytes - 64;
    while (this.queue.length > 0) {
      const batch = [];
      let size = 0;
      while (this.queue.length > 0) {
        const c = this.queue[0];
        if (c.done) { this.queue.shift(); continue; }
        c.size ??= encodeRequest([c.id, c.op, ...c.args]).length;
        if (batch.length > 0 && size + c.size > budget) break;
        this.queue.shift();
        batch.push(c);
        size += c.size;
      }
      if (batch.length === 0) return;
      try {
        this.ws.send(encodeFrame(batch.map((c) => [c.id, c.op, ...c.args])));
      } catch (e) {
        this.#fail(new ConsensusError('unavailable', `write to ${this.url}: ${e.message}`, { endpoint: this.url }));
        return;
      }
      for (const c of batch) c.sent = true;
    }
  }

  #receive(data) {
    this.lastRecv = Date.now();
    if (typeof data === 'string') {
      this.#fail(new ConsensusError('unavailable', `${this.url} sent a text frame`, { endpoint: this.url }));
      this.close(1003, 'text frame');
      return;
    }
    let responses;
    try {
      responses = decodeFrame(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
    } catch (e) {
      this.#fail(new ConsensusError('unavailable', `from ${this.url}: ${e.message}`, { endpoint: this.url }));
      this.close(1002, 'malformed frame');
      return;
    }
    for (const r of responses) {
      const c = Array.isArray(r) ? this.pending.get(Number(r[0])) : undefined;
      if (!c) continue; // nobody waits for it any more
      if (r[1] === 0) {
        this.#settle(c, null, r[2]);
      } else {
        const [code, message] = Array.isArray(r[2]) ? r[2] : ['unavailable', 'malformed error answer'];
        this.#settle(c, serverError(code, message, this.url, c.write));
      }
    }
  }

  #keepAlive() {
    if (this.error) return;
    if (this.awaitingPong) {
      this.#fail(new ConsensusError('unavailable', `${this.url}: no pong within ${this.opts.keepAlive} ms`,
        { endpoint: this.url }));
      try { this.ws.terminate(); } catch { /* closed */ }
      return;
    }
    if (this.pending.size === 0 || Date.now() - this.lastRecv < this.opts.keepAlive) return;
    this.awaitingPong = true;
    try { this.ws.ping(); } catch { /* the close event follows */ }
  }

  #fail(err) {
    if (this.error) return;
    this.error = err;
    clearInterval(this.keepAliveTimer);
    const calls = [...this.pending.values(), ...this.slotWaiters];
    this.slotWaiters = [];
    this.queue = [];
    for (const c of calls) this.#settle(c, c.sent ? new Lost(err) : new NotSent(err));
  }

  /** close ends the connection; calls in progress fail. */
  close(code = 1000, reason = 'client closed') {
    this.#fail(new ConsensusError('closed', 'client closed', { endpoint: this.url }));
    try { this.ws.close(code, reason); } catch { /* already closed */ }
  }
}
