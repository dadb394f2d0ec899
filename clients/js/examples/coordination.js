// Leases, a fenced lock, an election and a queue worker with the
// JavaScript client (the Go client's examples/locks, and a worker).
//
//   consensus up        # a local cluster on 127.0.0.1:9080-9082
//   node examples/coordination.js
//
// CONSENSUS_ENDPOINTS overrides the members' HTTP addresses.

import { createClient, Worker } from '@unrdf/consensus-client';

const endpoints = (process.env.CONSENSUS_ENDPOINTS ?? '127.0.0.1:9080,127.0.0.1:9081,127.0.0.1:9082').split(',');
const client = createClient({ endpoints });

// A session: a lease the client keeps alive until close().
const session = await client.session(5000);
session.on('lost', (err) => console.error(`session lost: ${err.code}`));
console.log(`session lease ${session.lease}, ttl ${session.ttlMs} ms`);

// A key that lives as long as the session.
await client.put('services/report-writer', { pid: process.pid }, { lease: session.lease });

// A lock: the token goes with every write to what the lock protects.
const lock = await session.lock('reports', { waitMs: 10000 });
console.log(`lock reports held, token ${lock.token}`);
await client.put('reports/latest', { by: process.pid }, { fence: { lock: 'reports', token: lock.token } });
await client.release('reports', lock.token);

// An election, observed.
const observer = client.observe('primary');
observer.on('leader', (l) => console.log(l ? `leader: ${JSON.stringify(l.value)} (token ${l.token})` : 'leader: none'));
await observer.ready;
const leadership = await session.campaign('primary', { addr: '127.0.0.1:7000' }, { waitMs: 10000 });
// Observers see the last state of changes close together; wait for this one.
const seen = new Promise((resolve) => observer.on('leader', (l) => { if (l?.value?.addr === '127.0.0.1:7001') resolve(); }));
await client.proclaim('primary', leadership.token, { addr: '127.0.0.1:7001' });
await seen;
await client.resign('primary', leadership.token);

// A queue and a worker.
const queue = client.queue('mail');
for (const to of ['a@example.com', 'b@example.com', 'c@example.com']) {
  await queue.enqueue({ to }, { id: `welcome-${to}` });
}
const stop = new AbortController();
let done = 0;
const worker = new Worker(queue, { name: `worker-${process.pid}`, ttlMs: 5000, waitMs: 1000 }, async (task) => {
  console.log(`sending to ${task.data.to} (attempt ${task.attempt})`);
  return 'sent';
});
worker.on('outcome', ({ claim, error }) => {
  console.log(`task ${claim.task.id}: ${error ? error.code : 'completed'}`);
  if (++done === 3) stop.abort();
});
await worker.run(stop.signal);

observer.close();
await session.close(); // revokes the lease: services/report-writer is deleted
client.close();
console.log('done');
