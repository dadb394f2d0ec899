// EventPoller follows one member's recent cluster events (GET /v1/events,
// docs/API.md "Events") by polling, and hands each to its listeners.

import { ConsensusError } from './errors.js';

export class EventPoller {
  /**
   * @param {import('./client.js').Client} client
   * @param {number} interval milliseconds between polls
   */
  constructor(client, interval) {
    this.client = client;
    this.interval = interval;
    this.listeners = new Set();
    this.after = -1; // -1: not started; the first poll skips history
    this.since = null;
    this.lastTime = 0;
    this.endpoint = null;
    this.timer = null;
    this.stopped = false;
    this.polling = null;
  }

  /** start polls once (so that later events are seen) and then every interval. */
  async start() {
    if (this.polling) return this.polling;
    this.polling = this.#poll().then(() => this.#schedule());
    return this.polling;
  }

  /** poll fetches what happened since the last poll now; tests and callers may await it. */
  async poll() {
    await this.#poll();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  #schedule() {
    if (this.stopped) return;
    this.timer = setTimeout(() => { this.#poll().finally(() => this.#schedule()); }, this.interval);
    if (typeof this.timer.unref === 'function') this.timer.unref();
  }

  async #poll() {
    if (this.stopped) return;
    // The poller stays on one member (its events are numbered per member)
    // and moves to the next endpoint only when that one fails.
    this.endpoint ??= this.client.preferred;
    const n = this.client.endpoints.length;
    const started = Date.now();
    let body;
    try {
      body = await this.client.httpAt(this.endpoint, `/v1/events?after=${Math.max(this.after, 0)}`);
    } catch (e) {
      if (e instanceof ConsensusError && e.code === 'closed') return;
      this.endpoint = (this.endpoint + 1) % n;
      this.since = null;
      this.#deliver({ type: 'poll_failed', error: e });
      return;
    }
    // Another member, or the same one restarted, numbers its events anew:
    // start after what it has now rather than replay its history.
    if (body.since !== this.since) {
      const first = this.after < 0;
      this.since = body.since;
      this.after = body.lastSeq ?? 0;
      if (first) {
        this.lastTime = Date.now();
        return;
      }
      // The events the new source saw after the last one delivered (by
      // the members' clocks: best effort across a switch).
      for (const ev of body.events ?? []) {
        if (Date.parse(ev.time) > this.lastTime) this.#deliver(ev);
      }
      return;
    }
    for (const ev of body.events ?? []) {
      if (ev.seq <= this.after) continue;
      this.after = ev.seq;
      this.#deliver(ev);
    }
    // Everything this member saw before the poll started is delivered.
    this.lastTime = Math.max(this.lastTime, started);
  }

  #deliver(ev) {
    if (ev.time) this.lastTime = Math.max(this.lastTime, Date.parse(ev.time));
    for (const l of this.listeners) l(ev);
  }
}
