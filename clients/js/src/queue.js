// Task queues (/v1/ws operations 40 to 48, docs/PROTOCOL.md; the routes
// of docs/API.md "Task queues") and a Worker that runs a handler per
// claimed task, as the Go client's client.Queue and client.Worker
// (client/queues.go).

import { Op, jsonBytes, parseJSON } from './codec.js';
import { ConsensusError } from './errors.js';
import { Emitter } from './emitter.js';

/**
 * StaleEpochError is the ConsensusError (code `stale_epoch`) of a
 * heartbeat, complete or fail whose epoch is not the task's current claim:
 * the claim was lost (its lease ran out, and the task went back or another
 * worker holds it now) or the task is finished. Nothing was changed.
 */
export class StaleEpochError extends ConsensusError {
  constructor(err) {
    super('stale_epoch', err.message, { endpoint: err.endpoint, cause: err, fromServer: true });
    this.name = 'StaleEpochError';
  }
}

// MAX_TASK_ERROR is the most UTF-16 units of a failure message a Worker
// sends: 1,024 encode to at most 4 KiB of UTF-8, the server's limit
// (api.MaxTaskErrorBytes).
const MAX_TASK_ERROR = 1024;

function body(where, value) {
  const b = jsonBytes(value);
  if (b === undefined) throw new ConsensusError('invalid_json', `${where}: not JSON`);
  return b;
}

function epochArg(where, epoch) {
  if (!Number.isSafeInteger(epoch) || epoch < 1) {
    throw new ConsensusError('bad_request', `${where}: epoch ${JSON.stringify(epoch)}: want a positive integer`);
  }
  return epoch;
}

function consistencyArg(c) {
  if (c === undefined || c === 'linearizable') return 0;
  if (c === 'local') return 1;
  throw new ConsensusError('bad_request', `consistency ${JSON.stringify(c)}: want 'linearizable' or 'local'`);
}

/**
 * Queue is one task queue of the cluster. Writes (enqueue, complete, fail,
 * requeue) carry a request id, so a retry is applied once; a claim is each
 * time a claim of its own (one whose answer was lost is released when its
 * lease runs out).
 */
export class Queue {
  constructor(client, name) {
    this.client = client;
    this.name = name;
  }

  async #call(op, args, options) {
    try {
      return parseJSON(await this.client.call(op, args, options));
    } catch (e) {
      if (e instanceof ConsensusError && e.code === 'stale_epoch' && !(e instanceof StaleEpochError)) {
        throw new StaleEpochError(e);
      }
      throw e;
    }
  }

  /**
   * enqueue adds a task with data (any JSON value) and resolves with { id,
   * revision }. id names the task (the server picks one otherwise; an id
   * the queue holds returns that task and adds nothing); delayMs or runAt
   * (a Date or RFC 3339 string) put off its first claim; maxAttempts
   * bounds its claims (default 3); workflow names its workflow.
   */
  async enqueue(data, { id, delayMs, runAt, maxAttempts, workflow } = {}) {
    const req = { data };
    if (id !== undefined) req.id = id;
    if (delayMs !== undefined) req.delayMs = delayMs;
    if (runAt !== undefined) req.runAt = runAt instanceof Date ? runAt.toISOString() : runAt;
    if (maxAttempts !== undefined) req.maxAttempts = maxAttempts;
    if (workflow !== undefined) req.workflow = workflow;
    const b = body(`enqueue to ${this.name}`, req);
    return this.#call(Op.enqueue, (reqid) => [this.name, b, reqid]);
  }

  /**
   * claim claims the next ready task for worker under a lease of ttlMs (at
   * least 1000) that heartbeat keeps alive, waiting up to waitMs (0: try
   * once) for one. It resolves with the claim, { task: { id, data,
   * attempt, workflow? }, epoch, lease }, or null when no task became ready
   * within the wait. The epoch is the claim's fencing token.
   */
  async claim(worker, { ttlMs = 10000, waitMs = 0, signal } = {}) {
    const where = `claim from ${this.name}`;
    if (!Number.isFinite(waitMs) || waitMs < 0 || waitMs > 600000) {
      throw new ConsensusError('bad_request', `${where}: wait ${JSON.stringify(waitMs)}: want 0 (try once) to 600000 ms`);
    }
    const w = Math.ceil(waitMs);
    const b = body(where, w > 0 ? { worker, ttlMs, waitMs: w } : { worker, ttlMs });
    const claim = await this.#call(Op.claim, [this.name, b], { wait: w, signal });
    return claim ?? null;
  }

  /** heartbeat keeps the claim with epoch of task id alive and resolves with the task; StaleEpochError if the claim is gone. */
  async heartbeat(id, epoch, { signal } = {}) {
    const b = body('heartbeat', { epoch: epochArg('heartbeat', epoch) });
    return this.#call(Op.heartbeat, [this.name, id, b], { signal });
  }

  /** complete finishes task id, claimed with epoch, with result (any JSON value); StaleEpochError if that is not its claim any more. */
  async complete(id, epoch, result) {
    const req = { epoch: epochArg('complete', epoch) };
    if (result !== undefined) req.result = result;
    const b = body(`complete ${id}`, req);
    await this.#call(Op.complete, (reqid) => [this.name, id, b, reqid]);
  }

  /**
   * fail ends the claim with epoch of task id with message: the task is
   * retried after retryAfterMs (the server's backoff by default), or dead
   * once its attempts are used up. StaleEpochError if that is not its
   * claim any more.
   */
  async fail(id, epoch, message, { retryAfterMs } = {}) {
    const req = { epoch: epochArg('fail', epoch), error: String(message) };
    if (retryAfterMs !== undefined) req.retryAfterMs = retryAfterMs;
    const b = body(`fail ${id}`, req);
    await this.#call(Op.fail, (reqid) => [this.name, id, b, reqid]);
  }

  /** requeue gives dead task id fresh attempts; task_not_dead if it is not dead. */
  async requeue(id) {
    await this.#call(Op.requeue, (reqid) => [this.name, id, reqid]);
  }

  /** task describes task id: { id, state, attempt, maxAttempts, epoch, readyAtMs, data, worker?, lease?, result?, error? }. */
  async task(id, { consistency } = {}) {
    return this.#call(Op.getTask, [this.name, id, consistencyArg(consistency)]);
  }

  /** stats counts the queue's tasks by state: { queue, ready, delayed, claimed, done, dead }. */
  async stats({ consistency } = {}) {
    return this.#call(Op.queueStats, [this.name, consistencyArg(consistency)]);
  }

  /** tasks lists up to limit (1 to 1000; default 100) tasks after id `after`, in `state` if given: { tasks, more }. */
  async tasks({ state, after, limit, consistency } = {}) {
    const args = {};
    if (state) args.state = state;
    if (after) args.after = after;
    if (limit) args.limit = limit;
    return this.#call(Op.listTasks, [this.name, body('list tasks', args), consistencyArg(consistency)]);
  }
}

/**
 * Worker claims tasks of a queue one at a time and runs handler(task, {
 * signal, claim }) for each, heartbeating the claim in the background.
 * signal is aborted, with a ConsensusError of code `claim_lost`, when the
 * claim is lost (a heartbeat answered stale_epoch, or none succeeded for a
 * whole ttlMs): the handler should stop, since a complete would be
 * refused. A handler that returns completes the task with what it
 * returned; one that throws fails it. Each claim's end is emitted as
 * `outcome`: { claim, completed, error } (error null: accepted; a
 * StaleEpochError: a late worker refused; code `claim_lost`: the claim was
 * lost before the handler returned, nothing sent).
 */
export class Worker extends Emitter {
  /**
   * options: name (the worker's name in claims; required), ttlMs (each
   * claim's lease, default 10000), heartbeatMs (default ttlMs / 3), waitMs
   * (one claim's long poll, default 30000), retryAfterMs (a failed task's
   * delay; the server's backoff by default).
   */
  constructor(queue, options, handler) {
    super();
    if (!(queue instanceof Queue)) throw new ConsensusError('bad_request', 'worker: want a Queue');
    if (typeof options?.name !== 'string' || options.name === '') throw new ConsensusError('bad_request', 'worker: want a name');
    if (typeof handler !== 'function') throw new ConsensusError('bad_request', 'worker: want a handler function');
    this.queue = queue;
    this.name = options.name;
    this.ttlMs = options.ttlMs ?? 10000;
    this.heartbeatMs = options.heartbeatMs ?? this.ttlMs / 3;
    this.waitMs = options.waitMs ?? 30000;
    this.retryAfterMs = options.retryAfterMs;
    this.handler = handler;
  }

  /**
   * run claims and handles tasks until signal is aborted (it resolves
   * then: a handler in progress has its signal aborted and its task is
   * left to its claim's lease, as a lost claim's), or a claim fails with an
   * error that waiting will not fix (bad input, unauthorized, closed): it
   * rejects with it. Transient errors (no leader, unavailable) are retried
   * after a second. A claim waiting when signal is aborted is abandoned,
   * but the server keeps it until its wait (waitMs) ends: a task it takes
   * meanwhile goes back to the queue when the claim's ttlMs runs out (it
   * counts as an attempt), as with the Go client's Worker; the protocol has
   * no way to withdraw a claim short of closing the connection.
   */
  async run(signal) {
    while (!signal?.aborted) {
      let claim;
      try {
        claim = await this.queue.claim(this.name, { ttlMs: this.ttlMs, waitMs: this.waitMs, signal });
      } catch (e) {
        if (signal?.aborted) break;
        if (['bad_request', 'invalid_key', 'invalid_lease', 'invalid_json', 'unauthorized', 'forbidden', 'closed'].includes(e.code)) throw e;
        await sleep(1000, signal);
        continue;
      }
      if (claim) await this.#handle(claim, signal);
    }
  }

  async #handle(claim, signal) {
    const ac = new AbortController();
    const onStop = () => ac.abort(signal.reason);
    signal?.addEventListener('abort', onStop, { once: true });
    const beat = this.#heartbeat(claim, ac);
    let result;
    let herr = null;
    try {
      result = await this.handler(claim.task, { signal: ac.signal, claim });
    } catch (e) {
      herr = e ?? new Error('handler threw');
    }
    const lost = ac.signal.aborted;
    const lostReason = ac.signal.reason;
    ac.abort(); // stops the heartbeat
    signal?.removeEventListener('abort', onStop);
    await beat;
    if (lost) {
      const err = lostReason?.code === 'claim_lost' ? lostReason
        : new ConsensusError('claim_lost', `task ${claim.task.id}: the worker stopped before the handler returned`);
      this.emit('outcome', { claim, completed: false, error: err });
      return;
    }
    let err = null;
    try {
      if (herr === null) {
        await this.queue.complete(claim.task.id, claim.epoch, result === undefined ? null : result);
      } else {
        const msg = String(herr?.message ?? herr).slice(0, MAX_TASK_ERROR);
        await this.queue.fail(claim.task.id, claim.epoch, msg, { retryAfterMs: this.retryAfterMs });
      }
    } catch (e) {
      err = e;
    }
    this.emit('outcome', { claim, completed: herr === null, error: err });
  }

  // heartbeat keeps claim alive every heartbeatMs until ac is aborted; it
  // aborts ac with claim_lost when the claim is gone.
  async #heartbeat(claim, ac) {
    let lastOK = Date.now();
    const lose = (why) => ac.abort(new ConsensusError('claim_lost', `task ${claim.task.id}: the claim was lost: ${why}`));
    while (!ac.signal.aborted) {
      await sleep(this.heartbeatMs, ac.signal);
      if (ac.signal.aborted) return;
      const hb = new AbortController();
      const stop = () => hb.abort(ac.signal.reason);
      ac.signal.addEventListener('abort', stop, { once: true });
      const timer = setTimeout(() => hb.abort(new ConsensusError('timeout', 'heartbeat took a whole period')), this.heartbeatMs);
      try {
        await this.queue.heartbeat(claim.task.id, claim.epoch, { signal: hb.signal });
        lastOK = Date.now();
      } catch (e) {
        if (ac.signal.aborted) return;
        if (e.code === 'stale_epoch' || e.code === 'task_not_found') {
          lose(e.message);
          return;
        }
        if (Date.now() - lastOK >= this.ttlMs) {
          lose(`no heartbeat succeeded for ${this.ttlMs} ms; the last: ${e.message}`);
          return;
        }
      } finally {
        clearTimeout(timer);
        ac.signal.removeEventListener('abort', stop);
      }
    }
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) { resolve(); return; }
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
