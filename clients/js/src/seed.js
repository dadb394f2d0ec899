// The seed's API (@unrdf/consensus) over a cluster: RaftCoordinator,
// DistributedStateMachine and ClusterManager, same names and shapes, each
// method a call to the cluster. docs/MIGRATING-FROM-JS.md says what changes.

import { Client } from './client.js';
import { ConsensusError } from './errors.js';
import { Emitter } from './emitter.js';
import { EventPoller } from './events.js';

const DEFAULT_POLL_INTERVAL = 1000;
const DEFAULT_UPDATE_ATTEMPTS = 64;

// Options of the seed that configure a node, not a client: accepted and
// ignored, since the cluster's members are configured by `consensus serve`.
function clientOf(options) {
  if (options.client instanceof Client) return { client: options.client, owns: false };
  if (options.endpoints !== undefined) return { client: new Client(options), owns: true };
  return { client: null, owns: false };
}

function notSupported(what, instead) {
  return new ConsensusError('not_supported', `${what} has no meaning on a client: ${instead}`);
}

function pollIntervalOf(options) {
  const v = options.pollInterval ?? DEFAULT_POLL_INTERVAL;
  if (typeof v !== 'number' || !(v > 0)) throw new ConsensusError('bad_request', 'pollInterval: want a positive number of ms');
  return v;
}

/** roleOf names a status's raft role the seed's way. */
function roleOf(st) {
  if (st.isLeader) return 'leader';
  return st.leaderId ? 'follower' : 'candidate';
}

/**
 * RaftCoordinator is the seed's coordinator as seen by a client: the state
 * of the member it is connected to, the seed's workflow commands, and the
 * member's raft events.
 */
export class RaftCoordinator extends Emitter {
  constructor(options = {}) {
    super();
    ({ client: this.client, owns: this.ownsClient } = clientOf(options));
    if (!this.client) throw new ConsensusError('bad_request', 'createRaftCoordinator: endpoints are required');
    this.nodeId = options.nodeId;
    this.pollInterval = pollIntervalOf(options);
    this.poller = null;
    this.isLeader = false;
    this.leaderId = null;
  }

  /** initialize connects to the cluster and starts following its events. */
  async initialize() {
    await this.getState();
    if (!this.poller) {
      this.poller = new EventPoller(this.client, this.pollInterval);
      this.poller.listeners.add((ev) => this.#event(ev));
      await this.poller.start();
    }
    return this;
  }

  #event(ev) {
    switch (ev.type) {
      case 'leader_elected':
        this.leaderId = ev.leaderId;
        this.emit('leader_elected', { leaderId: ev.leaderId, term: ev.term, nodeId: ev.nodeId });
        break;
      case 'became_follower':
        this.emit('became_follower', { nodeId: ev.nodeId, term: ev.term, leaderId: ev.leaderId });
        break;
      case 'peer_connected':
      case 'peer_disconnected':
        this.emit(ev.type, { nodeId: ev.nodeId });
        break;
      case 'snapshot_created':
      case 'snapshot_restored':
        this.emit(ev.type, snapshotEvent(ev));
        break;
      default:
    }
  }

  /**
   * getState resolves with the state of the member serving the call:
   * GET /v1/status plus the seed's `state` ('leader', 'follower', or
   * 'candidate' while it knows no leader) and `currentTerm`.
   */
  async getState() {
    const st = await this.client.status();
    this.isLeader = !!st.isLeader;
    this.leaderId = st.leaderId || null;
    return { ...st, state: roleOf(st), currentTerm: st.term };
  }

  /** getWorkflowState resolves with workflow id's value, or undefined when there is none. */
  async getWorkflowState(workflowId, { consistency } = {}) {
    try {
      return (await this.client.getWorkflow(workflowId, { consistency })).value;
    } catch (e) {
      if (e instanceof ConsensusError && e.code === 'workflow_not_found') return undefined;
      throw e;
    }
  }

  /**
   * replicateCommand proposes one of the seed's workflow commands and
   * resolves with { revision } once the cluster applied it:
   * { type: 'START_WORKFLOW' | 'STOP_WORKFLOW' | 'UPDATE_STATE', workflowId, data }
   * or { type: 'REGISTER_NODE' | 'DEREGISTER_NODE', nodeId, metadata }.
   */
  async replicateCommand(command) {
    if (command === null || typeof command !== 'object') {
      throw new ConsensusError('bad_request', 'replicateCommand: want a command object');
    }
    const { type } = command;
    const wf = command.workflowId ?? command.id;
    const data = command.data ?? command.fields ?? command.state;
    let revision;
    switch (type) {
      case 'START_WORKFLOW':
        revision = await this.client.startWorkflow(wf, data);
        break;
      case 'STOP_WORKFLOW':
        revision = await this.client.stopWorkflow(wf, data);
        break;
      case 'UPDATE_STATE':
        revision = await this.client.updateWorkflowState(wf, data);
        break;
      case 'REGISTER_NODE':
        revision = await this.client.registerNode(command.nodeId ?? command.id, command.metadata ?? command.data);
        break;
      case 'DEREGISTER_NODE':
        revision = await this.client.deregisterNode(command.nodeId ?? command.id);
        break;
      default:
        throw new ConsensusError('bad_request', `replicateCommand: unknown command type ${JSON.stringify(type)}; ` +
          'want START_WORKFLOW, STOP_WORKFLOW, UPDATE_STATE, REGISTER_NODE or DEREGISTER_NODE (keys: use the state machine)');
    }
    return { revision };
  }

  /** addPeer throws not_supported: membership is changed by operators (`consensus member add`). */
  addPeer(nodeId) {
    throw notSupported(`addPeer(${JSON.stringify(nodeId)})`,
      'members join with `consensus serve --join` or `consensus member add` (POST /v1/members)');
  }

  /** removePeer throws not_supported: `consensus member remove` (DELETE /v1/members/{id}). */
  removePeer(nodeId) {
    throw notSupported(`removePeer(${JSON.stringify(nodeId)})`,
      'use `consensus member remove` (DELETE /v1/members/{id})');
  }

  /** shutdown stops following events and closes the client (when this created it). */
  async shutdown() {
    this.poller?.stop();
    if (this.ownsClient) this.client.close();
  }
}

function snapshotEvent(ev) {
  return {
    snapshotId: `${ev.nodeId}-${ev.term}-${ev.index}`,
    index: ev.index,
    stateSize: ev.bytes,
    nodeId: ev.nodeId,
    term: ev.term,
  };
}

/**
 * DistributedStateMachine is the seed's replicated key-value store, kept by
 * the cluster: every method is a call to it, and `state_changed` follows
 * GET /v1/watch.
 */
export class DistributedStateMachine extends Emitter {
  constructor(options = {}) {
    super();
    ({ client: this.client, owns: this.ownsClient } = clientOf(options));
    this.nodeId = options.nodeId;
    this.prefix = options.prefix ?? '';
    this.pollInterval = pollIntervalOf(options);
    this.maxUpdateAttempts = options.maxUpdateAttempts ?? DEFAULT_UPDATE_ATTEMPTS;
    this.watcher = null;
    this.poller = null;
  }

  _listenerAdded(event) {
    // Events start on initialize(); a listener added later than that is
    // served by the streams already open.
    if (this.initialized && event === 'state_changed') this.#watch();
    if (this.initialized && (event === 'snapshot_created' || event === 'snapshot_restored')) this.#poll();
  }

  #need() {
    if (!this.client) {
      throw new ConsensusError('bad_request',
        'the state machine has no cluster: pass endpoints, or call initialize(coordinator)');
    }
    return this.client;
  }

  /**
   * initialize connects to the cluster (with the coordinator's connection
   * when given one) and opens the event streams: once it resolves, every
   * write acknowledged after it is reported by `state_changed`.
   */
  async initialize(coordinator) {
    if (!this.client && coordinator?.client instanceof Client) this.client = coordinator.client;
    this.#need();
    this.initialized = true;
    await Promise.all([this.#watch(), this.#poll()]);
    return this;
  }

  async #watch() {
    if (this.watcher) return this.watcher.ready;
    this.watcher = this.client.watch(this.prefix);
    this.watcher.on('change', (c) => {
      this.emit('state_changed', {
        key: c.key,
        value: c.type === 'delete' ? undefined : c.value,
        operation: c.type === 'delete' ? 'delete' : 'set',
        revision: c.revision,
      });
    });
    this.watcher.on('error', (e) => { if (this.listenerCount('error') > 0) this.emit('error', e); });
    return this.watcher.ready;
  }

  async #poll() {
    if (this.poller) return this.poller.polling;
    this.poller = new EventPoller(this.client, this.pollInterval);
    this.poller.listeners.add((ev) => {
      if (ev.type === 'snapshot_created' || ev.type === 'snapshot_restored') this.emit(ev.type, snapshotEvent(ev));
    });
    return this.poller.start();
  }

  /** set stores value (any JSON value) under key and resolves with the write's revision. */
  async set(key, value) {
    return this.#need().put(key, value);
  }

  /**
   * get resolves with the value under key, or undefined. Linearizable by
   * default; { consistency: 'local' } reads the serving member's state.
   */
  async get(key, { consistency } = {}) {
    const item = await this.getItem(key, { consistency });
    return item?.value;
  }

  /** getItem resolves with { key, value, revision, createRevision, version }, or undefined. */
  async getItem(key, { consistency } = {}) {
    try {
      return await this.#need().get(key, { consistency });
    } catch (e) {
      if (e instanceof ConsensusError && e.code === 'key_not_found') return undefined;
      throw e;
    }
  }

  /** has resolves with whether key exists. */
  async has(key, { consistency } = {}) {
    return (await this.getItem(key, { consistency })) !== undefined;
  }

  /** delete removes key; resolves with true, or false when it did not exist (Map.delete). */
  async delete(key) {
    try {
      await this.#need().delete(key);
      return true;
    } catch (e) {
      if (e instanceof ConsensusError && e.code === 'key_not_found') return false;
      throw e;
    }
  }

  /**
   * update sets key to await fn(current value or undefined) if nobody
   * changed key in between (compare-and-set on its revision), and runs fn
   * again on the new value when somebody did: fn may run more than once
   * and must not have side effects. Resolves with the value written.
   * After maxUpdateAttempts conflicts it rejects with precondition_failed.
   */
  async update(key, fn) {
    if (typeof fn !== 'function') throw new ConsensusError('bad_request', 'update: fn must be a function');
    const client = this.#need();
    let last;
    for (let i = 0; i < this.maxUpdateAttempts; i++) {
      const cur = await this.getItem(key);
      const next = await fn(cur?.value);
      try {
        await client.put(key, next, { cond: cur ? cur.revision : 0 });
        return next;
      } catch (e) {
        if (!(e instanceof ConsensusError) || e.code !== 'precondition_failed') throw e;
        last = e;
      }
    }
    throw new ConsensusError('precondition_failed',
      `update ${JSON.stringify(key)}: changed by others ${this.maxUpdateAttempts} times in a row`, { cause: last });
  }

  /**
   * batchUpdate applies changes ([{ key, value }] or { key, delete: true })
   * all or none, at one revision, which it resolves with.
   */
  async batchUpdate(changes) {
    return this.#need().txn(changes);
  }

  /** keys resolves with the keys (under prefix), sorted. */
  async keys(prefix = '', { consistency } = {}) {
    return (await this.#need().list(prefix, { consistency })).items.map((i) => i.key);
  }

  /** values resolves with the values (under prefix), in key order. */
  async values(prefix = '', { consistency } = {}) {
    return (await this.#need().list(prefix, { consistency })).items.map((i) => i.value);
  }

  /** entries resolves with [key, value] pairs (under prefix), in key order. */
  async entries(prefix = '', { consistency } = {}) {
    return (await this.#need().list(prefix, { consistency })).items.map((i) => [i.key, i.value]);
  }

  /**
   * getStats resolves with GET /v1/stats (keys, maxKeys, bytes, revision,
   * appliedIndex, snapshotIndex, sessions) and the seed's stateSize.
   */
  async getStats({ consistency } = {}) {
    const q = consistency === 'local' ? '?consistency=local' : '';
    const st = await this.#need().http(`/v1/stats${q}`);
    return { ...st, stateSize: st.keys };
  }

  /** shutdown closes the event streams, and the client when this created it. */
  async shutdown() {
    this.watcher?.close();
    this.poller?.stop();
    if (this.ownsClient) this.client.close();
  }
}

/**
 * ClusterManager is the seed's cluster manager as seen by a client: the
 * members' health as one member checks it, and its node_* events.
 */
export class ClusterManager extends Emitter {
  constructor(options = {}) {
    super();
    ({ client: this.client, owns: this.ownsClient } = clientOf(options));
    this.nodeId = options.nodeId;
    this.pollInterval = pollIntervalOf(options);
    this.poller = null;
  }

  #need() {
    if (!this.client) {
      throw new ConsensusError('bad_request',
        'the cluster manager has no cluster: pass endpoints, or call initialize(coordinator)');
    }
    return this.client;
  }

  /** initialize connects (with the coordinator's connection when given one) and follows node events. */
  async initialize(coordinator) {
    if (!this.client && coordinator?.client instanceof Client) this.client = coordinator.client;
    this.#need();
    if (!this.poller) {
      this.poller = new EventPoller(this.client, this.pollInterval);
      this.poller.listeners.add((ev) => this.#event(ev));
      await this.poller.start();
    }
    return this;
  }

  #event(ev) {
    switch (ev.type) {
      case 'node_joined':
        this.emit('node_joined', { nodeId: ev.nodeId, metadata: ev.member });
        break;
      case 'node_left':
        this.emit('node_left', { nodeId: ev.nodeId });
        break;
      case 'node_health_changed':
        this.emit('node_health_changed', { nodeId: ev.nodeId, health: ev.current, previousHealth: ev.previous });
        break;
      case 'node_unhealthy':
        this.emit('node_unhealthy', { nodeId: ev.nodeId });
        break;
      default:
    }
  }

  /** getNodes resolves with every member and its health (GET /v1/cluster/nodes). */
  async getNodes() {
    return (await this.#need().http('/v1/cluster/nodes')).nodes;
  }

  /** getHealthyNodes resolves with the healthy members. */
  async getHealthyNodes() {
    return (await this.#need().http('/v1/cluster/nodes?healthy=true')).nodes;
  }

  /** getNodeHealth resolves with one member's record (its `health` among it), or undefined. */
  async getNodeHealth(nodeId) {
    try {
      return await this.#need().http(`/v1/cluster/nodes/${encodeURIComponent(nodeId)}`);
    } catch (e) {
      if (e instanceof ConsensusError && e.status === 404) return undefined;
      throw e;
    }
  }

  /** getStats resolves with GET /v1/cluster/stats. */
  async getStats() {
    return this.#need().http('/v1/cluster/stats');
  }

  /**
   * addNode resolves with the member when one of that id is already in the
   * cluster (so the seed's setup code runs unchanged), and rejects with
   * not_supported otherwise: members join with `consensus serve --join`.
   */
  async addNode(metadata = {}) {
    const id = metadata.nodeId ?? metadata.id;
    const members = (await this.#need().http('/v1/members')).members ?? [];
    const m = members.find((x) => x.id === id);
    if (m) return m;
    throw notSupported(`addNode(${JSON.stringify(id)})`,
      'start the member with `consensus serve --join`, or add it with `consensus member add` (POST /v1/members)');
  }

  /** removeNode rejects with not_supported: `consensus member remove` (DELETE /v1/members/{id}). */
  async removeNode(nodeId) {
    throw notSupported(`removeNode(${JSON.stringify(nodeId)})`, 'use `consensus member remove` (DELETE /v1/members/{id})');
  }

  /** shutdown stops following events, and closes the client when this created it. */
  async shutdown() {
    this.poller?.stop();
    if (this.ownsClient) this.client.close();
  }
}
