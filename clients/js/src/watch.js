// Watcher: GET /v1/watch (Server-Sent Events, docs/PROTOCOL.md) with resume
// on the next endpoint from the last revision delivered, so that each
// change arrives once and in revision order.

import { ConsensusError } from './errors.js';
import { Emitter } from './emitter.js';

const MAX_BACKOFF = 1000;

/**
 * Watcher emits `change` ({ type, key, value, revision, createRevision,
 * version }) for every change under its prefix, `open` ({ endpoint,
 * startRevision }) each time a stream opens, and `error` (a
 * ConsensusError) when it ends for good: `compacted` (the revision it
 * needs is gone), `unauthorized`, or `closed`. `ready` resolves once the
 * first stream is open: every write acknowledged after it is seen.
 */
export class Watcher extends Emitter {
  constructor(client, prefix, fromRevision) {
    super();
    this.client = client;
    this.prefix = prefix;
    // progress: every change up to it has been delivered.
    this.progress = fromRevision > 0 ? fromRevision - 1 : -1;
    this.endpoint = client.preferred;
    this.abort = new AbortController();
    this.closed = false;
    this.onClose = null;
    let resolveReady, rejectReady;
    this.ready = new Promise((res, rej) => { resolveReady = res; rejectReady = rej; });
    this.ready.catch(() => {}); // rejected only if nobody waits: the error event tells
    this.resolveReady = resolveReady;
    this.rejectReady = rejectReady;
    this.done = this.#run();
  }

  /** close ends the watch. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.rejectReady(new ConsensusError('closed', 'watch closed'));
    this.onClose?.();
  }

  async #run() {
    let backoff = this.client.opts.retryBackoff;
    let failures = 0;
    const n = this.client.endpoints.length;
    while (!this.closed) {
      const ep = this.client.endpoints[this.endpoint % n];
      let ended;
      try {
        ended = await this.#stream(ep);
        failures = 0;
        backoff = this.client.opts.retryBackoff;
      } catch (e) {
        if (this.closed) break;
        if (e instanceof ConsensusError && ['compacted', 'unauthorized', 'forbidden', 'bad_request', 'invalid_key'].includes(e.code)) {
          this.#end(e);
          return;
        }
        ended = e;
        failures++;
      }
      if (this.closed) break;
      // Whatever ended the stream, another endpoint may serve the next.
      this.endpoint = (this.endpoint + 1) % n;
      if (failures >= n) {
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(2 * backoff, MAX_BACKOFF);
      }
      this.lastError = ended;
    }
  }

  #end(err) {
    if (this.closed) return;
    this.rejectReady(err);
    this.closed = true;
    this.abort.abort();
    this.onClose?.();
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  async #stream(ep) {
    const q = new URLSearchParams();
    if (this.prefix) q.set('prefix', this.prefix);
    const headers = {};
    if (this.client.opts.token) headers.Authorization = `Bearer ${this.client.opts.token}`;
    if (this.progress >= 0) headers['Last-Event-ID'] = String(this.progress);
    const url = `${ep.http}/v1/watch?${q}`;
    // This stream's own signal: aborted by close(), by a member that does
    // not answer within the request timeout, and when the stream is left.
    const streamAbort = new AbortController();
    const onClose = () => streamAbort.abort();
    this.abort.signal.addEventListener('abort', onClose, { once: true });
    try {
      return await this.#read(ep, url, headers, streamAbort);
    } finally {
      this.abort.signal.removeEventListener('abort', onClose);
      streamAbort.abort();
    }
  }

  async #read(ep, url, headers, streamAbort) {
    const ms = this.client.opts.requestTimeout;
    const timer = setTimeout(() => streamAbort.abort(), ms);
    let res;
    try {
      res = await fetch(url, { headers, signal: streamAbort.signal });
    } catch (e) {
      throw new ConsensusError('unavailable', `watch ${url}: ${this.closed ? 'closed' : e.message}`, { endpoint: ep.http, cause: e });
    } finally {
      clearTimeout(timer);
    }
    if (!res.ok) {
      let body;
      try { body = JSON.parse(await res.text()); } catch { body = undefined; }
      const err = new ConsensusError(body?.error?.code ?? 'unavailable',
        `watch ${url}: ${body?.error?.message ?? `HTTP ${res.status}`}`, { endpoint: ep.http, fromServer: true });
      if (body?.error?.oldestRevision !== undefined) err.oldestRevision = body.error.oldestRevision;
      throw err;
    }
    const start = Number(res.headers.get('X-Consensus-Start-Revision'));
    if (this.progress < 0 && start > 0) this.progress = start - 1;
    this.emit('open', { endpoint: ep.http, startRevision: start });
    this.resolveReady();
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    let msg = { data: [], id: null, event: null };
    // Changes of a revision whose closing id has not come yet: a stream
    // that ends first drops them, and the next one sends them again.
    let held = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return new ConsensusError('unavailable', `watch ${url}: the stream ended`);
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line !== '') {
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'data') msg.data.push(val);
          else if (field === 'id') msg.id = val;
          else if (field === 'event') msg.event = val;
          continue;
        }
        // A blank line dispatches the message.
        const m = msg;
        msg = { data: [], id: null, event: null };
        if (m.event === 'error') {
          let e;
          try { e = JSON.parse(m.data.join('\n')).error; } catch { e = undefined; }
          const err = new ConsensusError(e?.code ?? 'unavailable', `watch ${url}: ${e?.message ?? 'error event'}`,
            { endpoint: ep.http, fromServer: true });
          if (e?.oldestRevision !== undefined) err.oldestRevision = e.oldestRevision;
          throw err;
        }
        if (m.data.length > 0) {
          let change;
          try { change = JSON.parse(m.data.join('\n')); } catch {
            throw new ConsensusError('unavailable', `watch ${url}: a change that is not JSON`);
          }
          if (change.revision > this.progress) held.push(change);
        }
        if (m.id !== null) {
          const id = Number(m.id);
          if (Number.isSafeInteger(id) && id > this.progress) {
            const out = held;
            held = [];
            this.progress = id;
            for (const change of out) {
              if (this.closed) return null;
              this.emit('change', change);
            }
          }
        }
      }
    }
  }
}
