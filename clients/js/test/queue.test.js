// Task queues and the Worker against a 3-member cluster.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, waitFor } from './cluster.js';
import { createClient, ConsensusError, StaleEpochError, Worker } from '../src/index.js';

let cluster;
let client;

before(async () => {
  cluster = await new Cluster(3).start();
  client = createClient({ endpoints: cluster.endpoints, requestTimeout: 5000 });
});

after(async () => {
  client?.close();
  await cluster?.stop();
});

test('enqueue, claim, heartbeat, complete; an enqueue with the same id adds nothing', async () => {
  const q = client.queue('mail');
  const e = await q.enqueue({ to: 'a@example.com' }, { id: 'welcome-1' });
  assert.equal(e.id, 'welcome-1');
  assert.ok(e.revision > 0);
  assert.deepEqual(await q.enqueue({ to: 'other' }, { id: 'welcome-1' }), e);
  const claim = await q.claim('w1', { ttlMs: 5000 });
  assert.equal(claim.task.id, 'welcome-1');
  assert.deepEqual(claim.task.data, { to: 'a@example.com' });
  assert.equal(claim.task.attempt, 1);
  assert.ok(claim.epoch > 0 && /^[0-9a-f]+$/.test(claim.lease), JSON.stringify(claim));
  const info = await q.heartbeat('welcome-1', claim.epoch);
  assert.equal(info.state, 'claimed');
  assert.equal(info.worker, 'w1');
  await q.complete('welcome-1', claim.epoch, 'sent');
  const done = await q.task('welcome-1');
  assert.equal(done.state, 'done');
  assert.equal(done.result, 'sent');
  assert.deepEqual(await q.stats(), { queue: 'mail', ready: 0, delayed: 0, claimed: 0, done: 1, dead: 0 });
  assert.equal((await q.tasks({ state: 'done' })).tasks[0].id, 'welcome-1');
  // Nothing ready: a try-once claim resolves null at once, a long poll after its wait.
  assert.equal(await q.claim('w1'), null);
  const t0 = Date.now();
  assert.equal(await q.claim('w1', { waitMs: 300 }), null);
  assert.ok(Date.now() - t0 >= 250);
});

test('a long-poll claim gets a task enqueued while it waits', async () => {
  const q = client.queue('poll');
  const waiting = q.claim('w1', { waitMs: 20000 });
  // Let the claim leave first; whichever reaches the server first, the
  // claim must get the task and not time out empty.
  await new Promise((r) => setImmediate(r));
  await q.enqueue('late', { id: 't1' });
  const claim = await waiting;
  assert.equal(claim.task.id, 't1');
  await q.complete('t1', claim.epoch, null);
});

test('a stale epoch is refused with a StaleEpochError, and the task is completed once', async () => {
  const q = client.queue('stale');
  await q.enqueue({ n: 1 }, { id: 'job' });
  const first = await q.claim('slow', { ttlMs: 1000 });
  // The slow worker's claim runs out (no heartbeat); another claims the task.
  const second = await waitFor('the task to be claimable again', () => q.claim('fast', { ttlMs: 10000 }), 10000, 100);
  assert.ok(second.epoch > first.epoch, `epoch ${second.epoch} after ${first.epoch}`);
  assert.equal(second.task.attempt, 2);
  for (const late of [
    () => q.complete('job', first.epoch, 'late'),
    () => q.fail('job', first.epoch, 'late'),
    () => q.heartbeat('job', first.epoch),
  ]) {
    await assert.rejects(late(), (e) => e instanceof StaleEpochError && e instanceof ConsensusError
      && e.code === 'stale_epoch' && !e.outcomeUnknown);
  }
  await q.complete('job', second.epoch, 'fast');
  await assert.rejects(q.complete('job', second.epoch, 'again'), (e) => e instanceof StaleEpochError);
  const t = await q.task('job');
  assert.equal(t.state, 'done');
  assert.equal(t.result, 'fast');
  assert.equal(t.worker, 'fast');
});

test('workers: every task is handled and completed once', async () => {
  const q = client.queue('work');
  const n = 20;
  for (let i = 0; i < n; i++) await q.enqueue({ i }, { id: `task-${String(i).padStart(2, '0')}` });
  const handled = new Map();
  const outcomes = [];
  const stop = new AbortController();
  const workers = ['w1', 'w2', 'w3'].map((name) => {
    const w = new Worker(q, { name, ttlMs: 5000, waitMs: 1000 }, async (task) => {
      handled.set(task.id, (handled.get(task.id) ?? 0) + 1);
      return { doubled: task.data.i * 2, by: name };
    });
    w.on('outcome', (o) => outcomes.push(o));
    return w.run(stop.signal);
  });
  try {
    await waitFor('every task done', async () => (await q.stats()).done === n, 30000, 50);
  } finally {
    stop.abort();
    await Promise.all(workers);
  }
  assert.equal(handled.size, n);
  for (const [id, times] of handled) assert.equal(times, 1, `${id} handled ${times} times`);
  assert.equal(outcomes.length, n);
  assert.ok(outcomes.every((o) => o.completed && o.error === null), JSON.stringify(outcomes.filter((o) => o.error)));
  const t = await q.task('task-07');
  assert.equal(t.result.doubled, 14);
});

test('a worker\'s handler is aborted when its claim is lost, and sends nothing', async () => {
  const q = client.queue('lost');
  await q.enqueue('x', { id: 'doomed' });
  const stop = new AbortController();
  let claim;
  let abortedWith;
  const outcome = new Promise((resolve) => {
    const w = new Worker(q, { name: 'w1', ttlMs: 3000, heartbeatMs: 100, waitMs: 1000 }, async (task, ctx) => {
      claim = ctx.claim;
      await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
      abortedWith = ctx.signal.reason;
      return 'too late';
    });
    w.once('outcome', (o) => { stop.abort(); resolve(o); });
    w.run(stop.signal);
  });
  await waitFor('the handler to start', () => claim);
  // The claim's lease revoked (as if it ran out): the next heartbeat is
  // refused and the handler's signal aborts.
  await client.revoke(claim.lease);
  const o = await outcome;
  assert.equal(abortedWith.code, 'claim_lost');
  assert.equal(o.completed, false);
  assert.equal(o.error.code, 'claim_lost');
  const t = await q.task('doomed');
  assert.notEqual(t.state, 'done');
  assert.equal(t.result, undefined);
});

test('a failing handler fails the task; it is dead once its attempts are used up, then requeued', async () => {
  const q = client.queue('failing');
  await q.enqueue('x', { id: 'bad', maxAttempts: 2 });
  const stop = new AbortController();
  const outcomes = [];
  const w = new Worker(q, { name: 'w1', ttlMs: 1000, waitMs: 500, retryAfterMs: 0 }, async () => {
    throw new Error('boom');
  });
  w.on('outcome', (o) => outcomes.push(o));
  const running = w.run(stop.signal);
  try {
    await waitFor('the task to be dead', async () => (await q.task('bad')).state === 'dead', 20000, 50);
  } finally {
    stop.abort();
    await running;
  }
  assert.ok(outcomes.length >= 2 && outcomes.every((o) => !o.completed && o.error === null));
  assert.equal((await q.task('bad')).error, 'boom');
  await q.requeue('bad');
  await assert.rejects(q.requeue('bad'), (e) => e.code === 'task_not_dead');
  // The worker's last claim, abandoned by stop, may still be waiting on
  // the server and take the requeued task: its lease (ttlMs) runs out and
  // the task is ready again.
  await waitFor('the requeued task to be ready', async () => (await q.task('bad')).state === 'ready', 10000, 50);
});

test('bad queue input is a typed error', async () => {
  const q = client.queue('');
  await assert.rejects(q.enqueue(1), (e) => e.code === 'invalid_key');
  const ok = client.queue('ok');
  await assert.rejects(ok.enqueue(undefined), (e) => e instanceof ConsensusError);
  await assert.rejects(ok.claim('w', { waitMs: -1 }), (e) => e.code === 'bad_request');
  await assert.rejects(ok.complete('t', 0), (e) => e.code === 'bad_request');
  await assert.rejects(ok.task('missing'), (e) => e.code === 'task_not_found');
  assert.throws(() => new Worker(ok, {}, () => {}), (e) => e.code === 'bad_request');
});
