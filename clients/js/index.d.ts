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
  /** The lease the key is attached to, if any. */
  lease?: LeaseId;
}

/**
 * A lease id: 1 to 16 lowercase hexadecimal digits of a positive 63-bit
 * number, as the JSON API and the CLI write it (a JavaScript number could
 * not hold every id). A BigInt is accepted where an id is an argument.
 */
export type LeaseId = string;

export interface Lease {
  id: LeaseId;
  /** The time to live granted (the cluster raises one below 1000 ms to 1000). */
  ttlMs: number;
  /** Time left by the leader's clock (keepAlive, timeToLive). */
  remainingMs?: number;
  /** Keys attached to it, sorted (timeToLive). */
  keys?: string[];
}

/** A lock's fence: a write with it applies only while `lock` is held with `token` (`fenced` otherwise). */
export interface Fence {
  lock: string;
  token: number;
}

/** A held lock, or an election's leadership. */
export interface Lock {
  name: string;
  /** The fencing token: strictly greater than any earlier holder's. Pass it to the resource the lock protects. */
  token: number;
  lease: LeaseId;
  /** An election leader's proclamation. */
  value?: JSONValue;
  /** Leases waiting (lockState, leader). */
  waiters: number;
}

export interface WaitOptions {
  /** How long to wait behind the holder, 0 (try once, the default) to 600000 ms. */
  waitMs?: number;
  /**
   * Abandons the wait here (the call rejects with code 'canceled'); the
   * server keeps the lease queued until waitMs ends, and may still grant it.
   */
  signal?: AbortSignal;
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

/**
 * A lease kept alive every third of its time to live until close(), or
 * until it is lost: `lease_not_found` (expired or revoked),
 * `session_expired` (no keepalive succeeded for a whole time to live, so it
 * ends no later than the lease can), `closed` (the client closed), or
 * `session_closed` (close()).
 */
export class Session extends Emitter<{ lost: ConsensusError }> {
  /** Keeps an existing lease alive; sentAt is when its grant or last keepalive was sent (default now). */
  static keep(client: Client, lease: Lease, sentAt?: number): Session;
  readonly lease: LeaseId;
  readonly ttlMs: number;
  /** Aborted, with the reason, when the session ends. */
  readonly signal: AbortSignal;
  /** Resolves with the reason when the session ends. */
  readonly done: Promise<ConsensusError>;
  /** null while the session holds its lease. */
  readonly err: ConsensusError | null;
  lock(name: string, options?: WaitOptions): Promise<Lock>;
  tryLock(name: string): Promise<Lock>;
  campaign(name: string, value?: JSONValue, options?: WaitOptions): Promise<Lock>;
  /** Stops the keepalives and revokes the lease (its keys are deleted, its locks released). */
  close(): Promise<void>;
}

/** Follows an election's leader (GET /v1/elections/{name}/observe): now, then each change; null while there is none. */
export class Observer extends Emitter<{ leader: Lock | null; error: ConsensusError }> {
  readonly ready: Promise<void>;
  close(): void;
}

export interface ClaimedTask<D = JSONValue> {
  id: string;
  data: D;
  /** Claims of the task, this one included. */
  attempt: number;
  workflow?: string;
}

export interface Claim<D = JSONValue> {
  task: ClaimedTask<D>;
  /** The claim's fencing token: complete, fail and heartbeat name it. */
  epoch: number;
  lease: LeaseId;
}

export type TaskState = 'ready' | 'delayed' | 'claimed' | 'done' | 'dead';

export interface TaskInfo {
  id: string;
  state: TaskState;
  attempt: number;
  maxAttempts: number;
  epoch: number;
  readyAtMs: number;
  data: JSONValue;
  workflow?: string;
  worker?: string;
  lease?: LeaseId;
  result?: JSONValue;
  error?: string;
}

/** The ConsensusError of a heartbeat, complete or fail whose epoch is not the task's claim any more (code 'stale_epoch'). */
export class StaleEpochError extends ConsensusError {}

export class Queue {
  readonly name: string;
  enqueue(data: JSONValue, options?: { id?: string; delayMs?: number; runAt?: Date | string; maxAttempts?: number; workflow?: string }): Promise<{ id: string; revision: number }>;
  /** null when no task became ready within waitMs (0: try once). ttlMs: the claim's lease, default 10000, at least 1000. */
  claim(worker: string, options?: { ttlMs?: number; waitMs?: number; signal?: AbortSignal }): Promise<Claim | null>;
  heartbeat(id: string, epoch: number, options?: { signal?: AbortSignal }): Promise<TaskInfo>;
  complete(id: string, epoch: number, result?: JSONValue): Promise<void>;
  fail(id: string, epoch: number, message: string, options?: { retryAfterMs?: number }): Promise<void>;
  requeue(id: string): Promise<void>;
  task(id: string, options?: ReadOptions): Promise<TaskInfo>;
  stats(options?: ReadOptions): Promise<{ queue: string; ready: number; delayed: number; claimed: number; done: number; dead: number }>;
  tasks(options?: { state?: TaskState; after?: string; limit?: number } & ReadOptions): Promise<{ tasks: TaskInfo[]; more: boolean }>;
}

export interface WorkerOptions {
  /** Names the worker in its claims. */
  name: string;
  /** Each claim's lease. Default 10000. */
  ttlMs?: number;
  /** Heartbeat period. Default ttlMs / 3. */
  heartbeatMs?: number;
  /** One claim's long poll. Default 30000. */
  waitMs?: number;
  /** A failed task's retry delay; the server's backoff by default. */
  retryAfterMs?: number;
}

/** The handler's result completes the task; a throw fails it. signal aborts (code 'claim_lost') when the claim is lost. */
export type TaskHandler = (task: ClaimedTask, context: { signal: AbortSignal; claim: Claim }) => JSONValue | void | Promise<JSONValue | void>;

export class Worker extends Emitter<{ outcome: { claim: Claim; completed: boolean; error: ConsensusError | null } }> {
  constructor(queue: Queue, options: WorkerOptions, handler: TaskHandler);
  /** Claims and handles tasks until signal aborts; rejects on an error that waiting will not fix. */
  run(signal?: AbortSignal): Promise<void>;
}

/** The multiplexed /v1/ws client. */
export class Client {
  constructor(options: ClientOptions);
  readonly clientId: string;
  close(): void;
  /** lease attaches the key to a lease; ttlMs (not both) gives it a lease of its own; fence applies it only while the lock is held with the token. */
  put(key: string, value: JSONValue, options?: { cond?: number | true; lease?: LeaseId | bigint; ttlMs?: number; fence?: Fence }): Promise<number>;
  get(key: string, options?: ReadOptions): Promise<Item>;
  delete(key: string, options?: { cond?: number | true; fence?: Fence }): Promise<number>;
  txn(changes: Change[], options?: { fence?: Fence }): Promise<number>;
  /** Grants a lease (1 ms to 30 days); the id is picked here at random unless given, so a retry is the same grant. */
  grant(ttlMs: number, options?: { id?: LeaseId | bigint; fence?: Fence }): Promise<Lease>;
  /** Ends the lease and deletes its keys; resolves with the revision. lease_not_found if gone. */
  revoke(id: LeaseId | bigint, options?: { fence?: Fence }): Promise<number>;
  /** One keepalive: the lease's countdown starts again. lease_not_found if it expired or was revoked. */
  keepAlive(id: LeaseId | bigint, options?: { signal?: AbortSignal }): Promise<Lease>;
  timeToLive(id: LeaseId | bigint): Promise<Lease & { remainingMs: number; keys: string[] }>;
  leases(options?: ReadOptions): Promise<Lease[]>;
  /** Grants a lease and keeps it alive in the background. */
  session(ttlMs: number, options?: { id?: LeaseId }): Promise<Session>;
  /** Takes lock name for lease, waiting up to waitMs; `locked` if it stays held. */
  acquire(name: string, lease: LeaseId | bigint, options?: WaitOptions): Promise<Lock>;
  /** acquire without waiting: `locked` if held. */
  tryAcquire(name: string, lease: LeaseId | bigint): Promise<Lock>;
  /** not_holder if token does not hold the lock. */
  release(name: string, token: number): Promise<void>;
  /** Holder and waiters; lock_not_found if nobody holds or waits for it. */
  lockState(name: string, options?: ReadOptions): Promise<Lock>;
  campaign(name: string, lease: LeaseId | bigint, value?: JSONValue, options?: WaitOptions): Promise<Lock>;
  proclaim(name: string, token: number, value: JSONValue): Promise<void>;
  resign(name: string, token: number): Promise<void>;
  /** lock_not_found if the election has no leader. */
  leader(name: string, options?: ReadOptions): Promise<Lock>;
  observe(name: string): Observer;
  queue(name: string): Queue;
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
