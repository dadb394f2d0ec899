// The seed's README example "Full Cluster with Membership Management",
// unchanged but for the import and `endpoints`: it runs against a cluster
// whose members are node-1, node-2 and node-3, for instance
//
//   consensus serve --id node-1 --listen 127.0.0.1:8080 --http 127.0.0.1:9080 \
//     --peers node-1=127.0.0.1:8080,node-2=127.0.0.1:8081,node-3=127.0.0.1:8082
//   (and node-2, node-3 likewise on 8081/9081 and 8082/9082)
//
// CONSENSUS_ENDPOINTS overrides the members' HTTP addresses. The lines
// after "end of the seed's example" are added: they write a workflow (so
// that state_changed has something to report) and shut down.

import {
  createRaftCoordinator,
  createClusterManager,
  createDistributedStateMachine
} from '@unrdf/consensus-client';

const endpoints = (process.env.CONSENSUS_ENDPOINTS ?? '127.0.0.1:9080,127.0.0.1:9081,127.0.0.1:9082').split(',');

// Create coordinator
const coordinator = createRaftCoordinator({
  endpoints,
  nodeId: 'node-1',
  port: 8080,
  host: 'localhost',
  electionTimeoutMin: 150,
  electionTimeoutMax: 300,
  heartbeatInterval: 50
});

// Create cluster manager
const cluster = createClusterManager({
  nodeId: 'node-1',
  healthCheckInterval: 5000,
  autoDiscovery: false
});

// Create state machine
const state = createDistributedStateMachine({
  nodeId: 'node-1',
  enableSnapshots: true,
  snapshotInterval: 1000
});

// Initialize
await coordinator.initialize();
await cluster.initialize(coordinator);
await state.initialize(coordinator);

// Add cluster nodes
await cluster.addNode({
  nodeId: 'node-2',
  host: 'localhost',
  port: 8081
});

await cluster.addNode({
  nodeId: 'node-3',
  host: 'localhost',
  port: 8082
});

// Listen for events
coordinator.on('leader_elected', ({ leaderId }) => {
  console.log(`New leader: ${leaderId}`);
});

cluster.on('node_health_changed', ({ nodeId, health }) => {
  console.log(`Node ${nodeId} health: ${health}`);
});

state.on('state_changed', ({ key, value, operation }) => {
  console.log(`State ${operation}: ${key}`);
});

// ---- end of the seed's example; added so that it does something and ends ----

const seen = new Promise((resolve) => state.once('state_changed', resolve));
await state.set('workflow:data-pipeline', { name: 'Data Processing', status: 'running', progress: 0 });
await seen;
console.log('healthy nodes:', (await cluster.getHealthyNodes()).map((n) => n.id).join(','));
await state.shutdown();
await cluster.shutdown();
await coordinator.shutdown();
