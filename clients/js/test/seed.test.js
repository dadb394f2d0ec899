import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Cluster, waitFor } from './cluster.js';
import { createRaftCoordinator, createClusterManager, createDistributedStateMachine, ConsensusError } from '../src/index.js';

let cluster;
let coordinator;
let manager;

before(async () => {
  cluster = await new Cluster(3).start();
  coordinator = createRaftCoordinator({ endpoints: cluster.endpoints, pollInterval: 50 });
  await coordinator.initialize();
  manager = createClusterManager({ pollInterval: 50 });
  await manager.initialize(coordinator);
});

after(async () => {
  await manager?.shutdown();
  await coordinator?.shutdown();
  await cluster?.stop();
});

test('the seed\'s README example runs unchanged but for the import and endpoints', async () => {
  const script = fileURLToPath(new URL('../examples/seed-full-cluster.js', import.meta.url));
  const { stdout } = await new Promise((resolve, reject) => {
    execFile(process.execPath, [script], {
      env: { ...process.env, CONSENSUS_ENDPOINTS: cluster.endpoints.join(',') },
      timeout: 30000,
    }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve({ stdout })));
  });
  assert.match(stdout, /State set: workflow:data-pipeline/);
  assert.match(stdout, /healthy nodes: node-1,node-2,node-3/);
});

test('getState: the serving member\'s raft state, the seed\'s way', async () => {
  const leader = await cluster.waitLeader();
  const st = await coordinator.getState();
  assert.equal(st.leaderId, leader);
  assert.ok(['leader', 'follower'].includes(st.state));
  assert.equal(st.state === 'leader', st.isLeader);
  assert.equal(st.currentTerm, st.term);
  assert.deepEqual(st.members.map((m) => m.id).sort(), cluster.ids);
});

test('replicateCommand runs the seed\'s workflow commands; getWorkflowState reads them', async () => {
  assert.equal(await coordinator.getWorkflowState('pipeline'), undefined);
  const { revision } = await coordinator.replicateCommand({ type: 'START_WORKFLOW', workflowId: 'pipeline', data: { name: 'Data Processing' } });
  assert.ok(revision > 0);
  let wf = await coordinator.getWorkflowState('pipeline');
  assert.equal(wf.status, 'running');
  assert.equal(wf.name, 'Data Processing');
  await coordinator.replicateCommand({ type: 'UPDATE_STATE', workflowId: 'pipeline', data: { progress: 0.5 } });
  assert.equal((await coordinator.getWorkflowState('pipeline')).progress, 0.5);
  await coordinator.replicateCommand({ type: 'STOP_WORKFLOW', workflowId: 'pipeline' });
  wf = await coordinator.getWorkflowState('pipeline');
  assert.equal(wf.status, 'stopped');
  // The same workflow through the state machine's keys.
  const state = createDistributedStateMachine({});
  await state.initialize(coordinator);
  assert.equal((await state.get('workflow:pipeline')).status, 'stopped');
  await state.shutdown();
  await assert.rejects(coordinator.replicateCommand({ type: 'UPDATE_STATE', workflowId: 'pipeline', data: {} }),
    (e) => e instanceof ConsensusError && e.code === 'invalid_transition');
  await coordinator.replicateCommand({ type: 'REGISTER_NODE', nodeId: 'worker-1', metadata: { zone: 'a' } });
  await coordinator.replicateCommand({ type: 'DEREGISTER_NODE', nodeId: 'worker-1' });
  await assert.rejects(coordinator.replicateCommand({ type: 'DEREGISTER_NODE', nodeId: 'worker-1' }),
    (e) => e.code === 'node_not_found');
  await assert.rejects(coordinator.replicateCommand({ type: 'SET', key: 'k' }), (e) => e.code === 'bad_request');
  await assert.rejects(coordinator.replicateCommand(null), (e) => e.code === 'bad_request');
});

test('addPeer and removeNode say what to use instead; addNode of a member is a no-op', async () => {
  assert.throws(() => coordinator.addPeer('node-9', 'localhost', 8089), (e) => e.code === 'not_supported' && /member add/.test(e.message));
  assert.throws(() => coordinator.removePeer('node-2'), (e) => e.code === 'not_supported');
  assert.equal((await manager.addNode({ nodeId: 'node-2', host: 'localhost', port: 8081 })).id, 'node-2');
  await assert.rejects(manager.addNode({ nodeId: 'node-9' }), (e) => e.code === 'not_supported');
  await assert.rejects(manager.removeNode('node-2'), (e) => e.code === 'not_supported');
});

test('cluster manager: nodes, healthy nodes, one node\'s health, stats', async () => {
  await waitFor('every member healthy', async () => (await manager.getHealthyNodes()).length === 3);
  const nodes = await manager.getNodes();
  assert.deepEqual(nodes.map((n) => n.id).sort(), cluster.ids);
  const h = await manager.getNodeHealth('node-2');
  assert.equal(h.id, 'node-2');
  assert.equal(h.health, 'healthy');
  assert.equal(await manager.getNodeHealth('node-9'), undefined);
  const stats = await manager.getStats();
  assert.equal(stats.nodes, 3);
  assert.equal(stats.healthy, 3);
});

test('leader_elected and became_follower follow leadership transfers', async () => {
  // The coordinator's events are those of the member it polls (the
  // endpoints are in the order of cluster.ids): move the
  // leadership to that member, then away from it.
  const polled = cluster.ids[coordinator.poller.endpoint];
  const elected = [];
  const followers = [];
  coordinator.on('leader_elected', (e) => elected.push(e.leaderId));
  coordinator.on('became_follower', (e) => followers.push(e));
  const transfer = async (from, target) => {
    const res = await fetch(`http://${cluster.http[from]}/v1/leader/transfer?target=${target}`, { method: 'POST' });
    assert.equal(res.status, 200, await res.text());
  };
  const leader = await cluster.waitLeader();
  if (leader !== polled) {
    await transfer(leader, polled);
    await waitFor(`leader_elected ${polled}`, () => elected.includes(polled));
  }
  const other = cluster.ids.find((id) => id !== polled);
  await transfer(polled, other);
  await waitFor(`leader_elected ${other}`, () => elected.includes(other));
  await waitFor(`became_follower of ${polled}`, () => followers.length > 0);
});

test('a member killed: peer_disconnected, node_health_changed and the healthy list follow', async () => {
  const leader = await cluster.waitLeader();
  // Kill a member that is neither the leader nor the one the events come from.
  const polled = cluster.ids[coordinator.poller.endpoint];
  const victim = cluster.ids.find((id) => id !== leader && id !== polled);
  const disconnected = [];
  const changed = [];
  coordinator.on('peer_disconnected', (e) => disconnected.push(e.nodeId));
  manager.on('node_health_changed', (e) => changed.push(e));
  // The leadership transfers of the test before can leave a member
  // suspect for a moment, and its events may arrive after these
  // listeners: start from a healthy victim, and look for the change that
  // leaves healthy rather than the first change seen.
  await waitFor(`${victim} healthy before the kill`, async () => (await manager.getNodeHealth(victim))?.health === 'healthy');
  await cluster.kill(victim);
  await waitFor(`peer_disconnected ${victim}`, () => disconnected.includes(victim));
  await waitFor(`node_health_changed ${victim} from healthy`, () =>
    changed.some((e) => e.nodeId === victim && e.previousHealth === 'healthy' && e.health !== 'healthy'));
  const ev = changed.find((e) => e.nodeId === victim && e.previousHealth === 'healthy' && e.health !== 'healthy');
  assert.ok(['suspect', 'unhealthy'].includes(ev.health), `health ${ev.health}`);
  await waitFor('the healthy list without it', async () =>
    !(await manager.getHealthyNodes()).some((n) => n.id === victim));
});
