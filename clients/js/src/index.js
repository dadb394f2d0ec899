// @unrdf/consensus-client: the seed's API (@unrdf/consensus) over a real,
// durable consensus cluster. See README.md and docs/MIGRATING-FROM-JS.md.

import { Client } from './client.js';
import { RaftCoordinator, DistributedStateMachine, ClusterManager } from './seed.js';

export { Client, defaults, endpointURLs } from './client.js';
export { ConsensusError } from './errors.js';
export { Watcher } from './watch.js';
export { Observer } from './observe.js';
export { Session } from './session.js';
export { Queue, Worker, StaleEpochError } from './queue.js';
export { RaftCoordinator, DistributedStateMachine, ClusterManager };

/** createClient returns a Client for the cluster at options.endpoints. */
export function createClient(options) {
  return new Client(options);
}

/** createRaftCoordinator returns the coordinator view of the cluster at options.endpoints. */
export function createRaftCoordinator(options) {
  return new RaftCoordinator(options);
}

/** createDistributedStateMachine returns the replicated state of the cluster at options.endpoints. */
export function createDistributedStateMachine(options) {
  return new DistributedStateMachine(options);
}

/** createClusterManager returns the health view of the cluster at options.endpoints. */
export function createClusterManager(options) {
  return new ClusterManager(options);
}
