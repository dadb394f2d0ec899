// Session: a lease kept alive in the background, as the Go client's
// client.Session (client/session.go) and etcd's concurrency.Session.

import { ConsensusError } from './errors.js';
import { Emitter } from './emitter.js';

// MIN_RETRY_MS bounds how often a session retries a failed keepalive.
const MIN_RETRY_MS = 10;

/**
 * Session holds a lease and keeps it alive every third of its time to
 * live until close(), or until the lease is lost. Keys put with `{ lease:
 * session.lease }` and locks and leaderships taken with it live as long as
 * the session.
 *
 * A keepalive that fails is tried again sooner (every tenth of the time to
 * live). The session ends when the cluster answers that the lease is gone
 * (`lease_not_found`: it expired or was revoked), when no keepalive has
 * succeeded for a whole time to live (`session_expired`), counted from when
 * the last successful one was sent, so the session ends no later than the
 * lease can; when the client is closed (`closed`); or with close()
 * (`session_closed`).
 *
 * `signal` (an AbortSignal) is aborted when the session ends, with the
 * reason as a ConsensusError; `done` resolves with the same error; a lost
 * lease (every end but close()) is also emitted as `lost`.
 */
export class Session extends Emitter {
  /** start grants a lease of ttlMs with client and keeps it alive. */
  static async start(client, ttlMs, { id } = {}) {
    const sent = Date.now();
    const lease = await client.grant(ttlMs, { id });
    return new Session(client, lease, sent);
  }

  /**
   * keep keeps an existing lease ({ id, ttlMs }, as grant resolves) alive;
   * sentAt is when its grant or its last keepalive was sent (now by
   * default): the session assumes the lease lives a ttlMs from then.
   */
  static keep(client, lease, sentAt = Date.now()) {
    return new Session(client, lease, sentAt);
  }

  constructor(client, lease, sentAt) {
    super();
    if (!lease || typeof lease.id !== 'string' || !Number.isInteger(lease.ttlMs) || lease.ttlMs < 1) {
      throw new ConsensusError('bad_request', 'session: want a lease { id, ttlMs } as grant resolves');
    }
    this.client = client;
    /** lease is the session's lease id (hexadecimal). */
    this.lease = lease.id;
    /** ttlMs is the lease's time to live as granted (the cluster may have raised it). */
    this.ttlMs = lease.ttlMs;
    this.err = null;
    this.stopping = false;
    this.abort = new AbortController();
    this.signal = this.abort.signal;
    let resolveDone;
    this.done = new Promise((r) => { resolveDone = r; });
    this.resolveDone = resolveDone;
    // Closing the client wakes the loop, which then ends the session.
    this.onClientClose = { close: () => { this.stopSleep?.(); this.cancelKeepAlive?.(); } };
    client.watchers.add(this.onClientClose);
    this.loop = this.#keepAlive(sentAt);
  }

  /** lock takes lock name for the session's lease (Client.acquire). */
  lock(name, options) {
    return this.client.acquire(name, this.lease, options);
  }

  /** tryLock takes lock name for the session's lease if it is free (Client.tryAcquire). */
  tryLock(name) {
    return this.client.tryAcquire(name, this.lease);
  }

  /** campaign runs for leader of election name with the session's lease (Client.campaign). */
  campaign(name, value, options) {
    return this.client.campaign(name, this.lease, value, options);
  }

  #end(err) {
    if (this.err) return;
    this.err = err;
    this.client.watchers.delete(this.onClientClose);
    this.abort.abort(err);
    this.resolveDone(err);
    if (err.code !== 'session_closed') this.emit('lost', err);
  }

  #sleep(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.stopSleep = null;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.stopSleep = done;
    });
  }

  async #keepAlive(sentAt) {
    const period = this.ttlMs / 3;
    const retry = Math.max(this.ttlMs / 10, MIN_RETRY_MS);
    let lastOK = sentAt; // when the last successful keepalive (or the grant) was sent
    let wait = period;
    for (;;) {
      await this.#sleep(wait);
      if (this.stopping) return;
      if (this.client.closed) {
        this.#end(new ConsensusError('closed', `session of lease ${this.lease}: client closed`));
        return;
      }
      // A keepalive may take until the lease would be lost, no longer.
      const sent = Date.now();
      const ac = new AbortController();
      const left = lastOK + this.ttlMs - sent;
      const timer = setTimeout(() => ac.abort(new ConsensusError('timeout',
        `no keepalive answered within the lease's time to live`)), Math.max(left, 1));
      this.cancelKeepAlive = () => ac.abort(new ConsensusError(this.client.closed ? 'closed' : 'canceled', 'session ended'));
      let err = null;
      try {
        await this.client.keepAlive(this.lease, { signal: ac.signal });
      } catch (e) {
        err = e;
      } finally {
        clearTimeout(timer);
        this.cancelKeepAlive = null;
      }
      if (this.stopping) return;
      if (err === null) {
        lastOK = sent;
        wait = period;
        continue;
      }
      if (err.code === 'lease_not_found') {
        this.#end(new ConsensusError('lease_not_found', `session of lease ${this.lease}: ${err.message}`, { cause: err }));
        return;
      }
      if (err.code === 'closed' || this.client.closed) {
        this.#end(new ConsensusError('closed', `session of lease ${this.lease}: client closed`, { cause: err }));
        return;
      }
      const remaining = lastOK + this.ttlMs - Date.now();
      if (remaining <= 0) {
        this.#end(new ConsensusError('session_expired', `session of lease ${this.lease}: no keepalive succeeded `
          + `for a whole time to live (${this.ttlMs} ms); the last: ${err.message}`, { cause: err }));
        return;
      }
      wait = Math.min(retry, remaining);
    }
  }

  /**
   * close stops the keepalives and revokes the lease, which deletes the
   * keys attached to it and releases its locks. A lease already gone is not
   * an error. Calling it again does nothing.
   */
  async close() {
    if (this.stopping) return;
    this.stopping = true;
    this.stopSleep?.();
    this.cancelKeepAlive?.();
    await this.loop;
    this.#end(new ConsensusError('session_closed', `session of lease ${this.lease}: closed`));
    if (this.client.closed) return;
    try {
      await this.client.revoke(this.lease);
    } catch (e) {
      if (e.code !== 'lease_not_found') throw e;
    }
  }
}
