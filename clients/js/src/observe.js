// Observer: GET /v1/elections/{name}/observe (Server-Sent Events, docs/API.md)
// with a new stream on the next endpoint when one ends, as the Go client's
// Client.Observe (client/locks.go).

import { ConsensusError } from './errors.js';
import { Emitter } from './emitter.js';

const MAX_BACKOFF = 1000;

/**
 * Observer emits `leader` with the leader of an election now, and then at
 * each change: { name, token, lease, value } (value: the leader's
 * proclamation, when it made one), or null while there is none. When a
 * stream ends it opens one on the next endpoint; a leader that did not
 * change is not emitted again. `error` (a ConsensusError) is emitted when
 * it ends for good (unauthorized, bad name, or maxAttempts reconnects in a
 * row failed); close() ends it. `ready` resolves once the first stream is
 * open.
 */
export class Observer extends Emitter {
  constructor(client, name) {
    super();
    this.client = client;
    this.name = name;
    this.endpoint = client.preferred;
    this.abort = new AbortController();
    this.closed = false;
    this.sent = false;
    this.last = null;
    this.onClose = null;
    let resolveReady, rejectReady;
    this.ready = new Promise((res, rej) => { resolveReady = res; rejectReady = rej; });
    this.ready.catch(() => {}); // the error event tells those who do not wait
    this.resolveReady = resolveReady;
    this.rejectReady = rejectReady;
    this.done = this.#run();
  }

  /** close ends the observation. */
  close() {
    this.#end(new ConsensusError('closed', 'observe closed'), false);
  }

  #end(err, report = true) {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.rejectReady(err);
    this.onClose?.();
    if (report && this.listenerCount('error') > 0) this.emit('error', err);
  }

  async #run() {
    let backoff = this.client.opts.retryBackoff;
    let failures = 0;
    const n = this.client.endpoints.length;
    while (!this.closed) {
      const ep = this.client.endpoints[this.endpoint % n];
      try {
        await this.#stream(ep);
        failures = 0;
        backoff = this.client.opts.retryBackoff;
      } catch (e) {
        if (this.closed) return;
        if (e instanceof ConsensusError && ['unauthorized', 'forbidden', 'bad_request', 'invalid_key'].includes(e.code)) {
          this.#end(e);
          return;
        }
        if (++failures >= this.client.opts.maxAttempts) {
          this.#end(new ConsensusError(e.code ?? 'unavailable', `observe ${this.name}: ${failures} attempts in a row failed; the last: ${e.message}`, { cause: e }));
          return;
        }
      }
      if (this.closed) return;
      this.endpoint = (this.endpoint + 1) % n;
      if (failures > 0) {
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(2 * backoff, MAX_BACKOFF);
      }
    }
  }

  #deliver(lock) {
    if (this.sent && sameLeader(this.last, lock)) return;
    this.last = lock;
    this.sent = true;
    this.emit('leader', lock);
  }

  async #stream(ep) {
    const headers = {};
    if (this.client.opts.token) headers.Authorization = `Bearer ${this.client.opts.token}`;
    const url = `${ep.http}/v1/elections/${encodeURIComponent(this.name)}/observe`;
    const streamAbort = new AbortController();
    const onClose = () => streamAbort.abort();
    this.abort.signal.addEventListener('abort', onClose, { once: true });
    const timer = setTimeout(() => streamAbort.abort(), this.client.opts.requestTimeout);
    try {
      let res;
      try {
        res = await fetch(url, { headers, signal: streamAbort.signal });
      } catch (e) {
        throw new ConsensusError('unavailable', `observe ${url}: ${e.message}`, { endpoint: ep.http, cause: e });
      } finally {
        clearTimeout(timer);
      }
      if (!res.ok) {
        let body;
        try { body = JSON.parse(await res.text()); } catch { body = undefined; }
        throw new ConsensusError(body?.error?.code ?? 'unavailable',
          `observe ${url}: ${body?.error?.message ?? `HTTP ${res.status}`}`, { endpoint: ep.http, fromServer: true });
      }
      this.resolveReady();
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      let event = null;
      let data = [];
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (e) {
          if (this.closed) return;
          throw new ConsensusError('unavailable', `observe ${url}: ${e.message}`, { endpoint: ep.http, cause: e });
        }
        if (chunk.done) return; // the stream ended: the next endpoint
        buf += decoder.decode(chunk.value, { stream: true });
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          let line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line.startsWith(':')) continue;
          if (line !== '') {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            let val = colon < 0 ? '' : line.slice(colon + 1);
            if (val.startsWith(' ')) val = val.slice(1);
            if (field === 'event') event = val;
            else if (field === 'data') data.push(val);
            continue;
          }
          if (event === 'leader' && data.length > 0) {
            let l;
            try { l = JSON.parse(data.join('\n')); } catch {
              throw new ConsensusError('unavailable', `observe ${url}: a leader event that is not JSON`, { endpoint: ep.http });
            }
            if (this.closed) return;
            this.#deliver(l === null ? null : leaderOf(l));
          }
          event = null;
          data = [];
        }
      }
    } finally {
      this.abort.signal.removeEventListener('abort', onClose);
      streamAbort.abort();
    }
  }
}

function leaderOf(l) {
  const lock = { name: String(l.name), token: Number(l.token), lease: String(l.lease) };
  if (l.value !== undefined) lock.value = l.value;
  return lock;
}

function sameLeader(a, b) {
  if (a === null || b === null) return a === b;
  return a.token === b.token && a.lease === b.lease && JSON.stringify(a.value) === JSON.stringify(b.value);
}
