// Types of @unrdf/consensus-client (hand-written; the code is plain ESM).

export type Consistency = 'linearizable' | 'local';
export type JSONValue = null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };

export interface ReadOptions {
  /** 'linearizable' (default): reflects every write acknowledged before the call; 'local': the serving member's state, possibly stale. */
  consistency?: Consistency;
}

/** Options of a Client (and of every create* function that takes endpoints). Times are in milliseconds. */
export interface ClientOptions {
  /** HTTP addresses of cluster members: "host:port", "http(s)://host:port", or a ws(s):// URL; an array or a comma-separated string. */
  endpoints: string[] | string;
  /** Bearer token (Node only: a browser's WebSocket cannot send it). */
  token?: string;
  /** Names this client in its writes' request ids (1-128 bytes); random by default. One live writer per id. */
  clientId?: string;
  /** Bounds one connection attempt. Default 2000. */
  dialTimeout?: number;
  /** Bounds one call, retries included. Default 10000. */
  requestTimeout?: number;
  /** Tries of one call. Default 5. */
  maxAttempts?: number;
  /** First wait before a retry after no_leader or unavailable; doubles up to 1000. Default 50. */
  retryBackoff?: number;
  /** Ping a connection with calls pending that was silent this long (Node). Default 5000; <= 0 disables. */
  keepAlive?: number;
  /** How often to look up the leader and move calls to its endpoint. Default 2000; < 0 disables. */
  leaderRefresh?: number;
  /** Largest frame; the server's default. Default 4194304. */
  maxFrameBytes?: number;
  /** Calls in progress per connection; the server's default. Default 1024. */
  maxInFlight?: number;
}

/**
 * Every error this package throws or rejects with. `code` is the server's
 * (docs/PROTOCOL.md "Errors") or one of `unavailable`, `closed`, `timeout`,
 * `bad_request`, `not_supported`.
 */
export class ConsensusError extends Error {
  code: string;
  /** True for a write that may or may not have been applied. */
  outcomeUnknown: boolean;
  /** The endpoint that answered, when one did. */
  endpoint?: string;
  /** HTTP status, for errors of HTTP API calls. */
  status?: number;
  /** With code 'compacted': the oldest revision the member still has. */
  oldestRevision?: number;
}

export interface Item<V = JSONValue> {
  key: string;
  value: V;
  revision: number;
  createRevision: number;
  version: number;
  lease?: number;
}

export interface ItemList {
  revision: number;
  items: Item[];
}

export type Change =
  | { key: string; value: JSONValue; ifRevision?: number; delete?: false }
  | { key: string; delete: true; ifRevision?: number };

export interface WatchChange {
  type: 'put' | 'delete';
  key: string;
  value: JSONValue;
  revision: number;
  createRevision: number;
  version: number;
}

export interface Status {
  nodeId: string;
  isLeader: boolean;
  leaderId: string;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  members: { id: string; peerAddr: string; httpAddr: string; voter: boolean }[];
  connectedPeers: string[];
  [field: string]: unknown;
}

type Listener<T> = (event: T) => void;

declare class Emitter<Events extends Record<string, unknown>> {
  on<E extends keyof Events & string>(event: E, listener: Listener<Events[E]>): this;
  once<E extends keyof Events & string>(event: E, listener: Listener<Events[E]>): this;
  off<E extends keyof Events & string>(event: E, listener: Listener<Events[E]>): this;
  removeListener<E extends keyof Events & string>(event: E, listener: Listener<Events[E]>): this;
  removeAllListeners(event?: keyof Events & string): this;
  listenerCount(event: keyof Events & string): number;
  emit<E extends keyof Events & string>(event: E, payload: Events[E]): boolean;
}

/** Follows the changes under a prefix (GET /v1/watch), resuming on the next endpoint without a gap or a repeat. */
export class Watcher extends Emitter<{
  change: WatchChange;
  open: { endpoint: string; startRevision: number };
  error: ConsensusError;
}> {
  /** Resolves once the first stream is open: every write acknowledged after it is reported. */
  readonly ready: Promise<void>;
  close(): void;
}

/** The multiplexed /v1/ws client. */
export class Client {
  constructor(options: ClientOptions);
  readonly clientId: string;
  close(): void;
  put(key: string, value: JSONValue, options?: { cond?: number | true }): Promise<number>;
  get(key: string, options?: ReadOptions): Promise<Item>;
  delete(key: string, options?: { cond?: number | true }): Promise<number>;
  txn(changes: Change[]): Promise<number>;
  list(prefix?: string, options?: ReadOptions): Promise<ItemList>;
  status(): Promise<Status>;
  startWorkflow(id: string, fields?: Record<string, JSONValue>): Promise<number>;
  stopWorkflow(id: string, fields?: Record<string, JSONValue>): Promise<number>;
  updateWorkflowState(id: string, fields: Record<string, JSONValue>): Promise<number>;
  getWorkflow(id: string, options?: ReadOptions): Promise<Item>;
  listWorkflows(options?: ReadOptions): Promise<ItemList>;
  registerNode(id: string, metadata?: Record<string, JSONValue>): Promise<number>;
  deregisterNode(id: string): Promise<number>;
  listNodes(options?: ReadOptions): Promise<ItemList>;
  /** GET a path of the JSON API, with failover; resolves with the parsed body. */
  http(path: string): Promise<any>;
  watch(prefix?: string, options?: { fromRevision?: number }): Watcher;
}

export const defaults: Readonly<Required<Omit<ClientOptions, 'endpoints' | 'token' | 'clientId'>>>;
export function endpointURLs(endpoint: string): { http: string; ws: string; host: string };
export function createClient(options: ClientOptions): Client;

/** Options the seed's constructors took that configure a node (port, host, election timeouts, snapshots...) are accepted and ignored. */
export interface SeedOptions extends Partial<ClientOptions> {
  nodeId?: string;
  /** Share a client instead of opening one. */
  client?: Client;
  /** How often to poll GET /v1/events for the events below. Default 1000. */
  pollInterval?: number;
  [seedOption: string]: unknown;
}

export interface SnapshotEvent {
  snapshotId: string;
  index: number;
  stateSize: number;
  nodeId: string;
  term: number;
}

export interface StateChanged {
  key: string;
  value: JSONValue | undefined;
  operation: 'set' | 'delete';
  revision: number;
}

export type WorkflowCommand =
  | { type: 'START_WORKFLOW' | 'STOP_WORKFLOW'; workflowId: string; data?: Record<string, JSONValue> }
  | { type: 'UPDATE_STATE'; workflowId: string; data: Record<string, JSONValue> }
  | { type: 'REGISTER_NODE'; nodeId: string; metadata?: Record<string, JSONValue> }
  | { type: 'DEREGISTER_NODE'; nodeId: string };

export class RaftCoordinator extends Emitter<{
  leader_elected: { leaderId: string; term: number; nodeId?: string };
  became_follower: { nodeId?: string; term?: number; leaderId?: string };
  peer_connected: { nodeId: string };
  peer_disconnected: { nodeId: string };
  snapshot_created: SnapshotEvent;
  snapshot_restored: SnapshotEvent;
}> {
  constructor(options: SeedOptions & ClientOptions);
  readonly client: Client;
  /** Updated by getState. */
  isLeader: boolean;
  leaderId: string | null;
  initialize(): Promise<this>;
  getState(): Promise<Status & { state: 'leader' | 'follower' | 'candidate'; currentTerm: number }>;
  getWorkflowState(workflowId: string, options?: ReadOptions): Promise<Record<string, JSONValue> | undefined>;
  replicateCommand(command: WorkflowCommand): Promise<{ revision: number }>;
  /** Throws not_supported: members are added by operators. */
  addPeer(nodeId: string, host?: string, port?: number): never;
  /** Throws not_supported. */
  removePeer(nodeId: string): never;
  shutdown(): Promise<void>;
}

export class DistributedStateMachine extends Emitter<{
  state_changed: StateChanged;
  snapshot_created: SnapshotEvent;
  snapshot_restored: SnapshotEvent;
  error: ConsensusError;
}> {
  constructor(options?: SeedOptions & { prefix?: string; maxUpdateAttempts?: number });
  initialize(coordinator?: RaftCoordinator): Promise<this>;
  set(key: string, value: JSONValue): Promise<number>;
  get<V = JSONValue>(key: string, options?: ReadOptions): Promise<V | undefined>;
  getItem(key: string, options?: ReadOptions): Promise<Item | undefined>;
  has(key: string, options?: ReadOptions): Promise<boolean>;
  delete(key: string): Promise<boolean>;
  /** Compare-and-set on the key's revision: fn may run more than once. */
  update<V extends JSONValue = JSONValue>(key: string, fn: (current: V | undefined) => V | Promise<V>): Promise<V>;
  batchUpdate(changes: Change[]): Promise<number>;
  keys(prefix?: string, options?: ReadOptions): Promise<string[]>;
  values(prefix?: string, options?: ReadOptions): Promise<JSONValue[]>;
  entries(prefix?: string, options?: ReadOptions): Promise<[string, JSONValue][]>;
  getStats(options?: ReadOptions): Promise<{
    keys: number; maxKeys: number; bytes: number; revision: number; appliedIndex: number;
    snapshotIndex: number; sessions: number; stateSize: number;
  }>;
  shutdown(): Promise<void>;
}

export type Health = 'unknown' | 'healthy' | 'degraded' | 'suspect' | 'unhealthy';

export interface NodeHealth {
  id: string;
  peerAddr: string;
  httpAddr: string;
  voter: boolean;
  health: Health;
  failedChecks: number;
  lag: number | null;
  connected: boolean;
  [field: string]: unknown;
}

export class ClusterManager extends Emitter<{
  node_joined: { nodeId: string; metadata?: unknown };
  node_left: { nodeId: string };
  node_health_changed: { nodeId: string; health: Health; previousHealth: Health };
  node_unhealthy: { nodeId: string };
}> {
  constructor(options?: SeedOptions);
  initialize(coordinator?: RaftCoordinator): Promise<this>;
  getNodes(): Promise<NodeHealth[]>;
  getHealthyNodes(): Promise<NodeHealth[]>;
  getNodeHealth(nodeId: string): Promise<NodeHealth | undefined>;
  getStats(): Promise<Record<string, number | string>>;
  /** Resolves with the member when it is already in the cluster; rejects not_supported otherwise. */
  addNode(metadata: { nodeId: string; [field: string]: unknown }): Promise<{ id: string; peerAddr: string; httpAddr: string; voter: boolean }>;
  /** Rejects not_supported. */
  removeNode(nodeId: string): Promise<never>;
  shutdown(): Promise<void>;
}

export function createRaftCoordinator(options: SeedOptions & ClientOptions): RaftCoordinator;
export function createDistributedStateMachine(options?: SeedOptions & { prefix?: string; maxUpdateAttempts?: number }): DistributedStateMachine;
export function createClusterManager(options?: SeedOptions): ClusterManager;
