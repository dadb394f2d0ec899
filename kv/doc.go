// Package kv is the replicated key-value state machine (the seed's
// DistributedStateMachine) and its API.
//
// Machine is the state every node holds identically: it applies committed
// commands in log order (consensus.StateMachine) and saves and restores
// itself (consensus.Snapshotter). Store is what callers use: writes go
// through raft, reads are linearizable unless kv.Local is asked for.
//
// Writes: Put, PutIf and DeleteIf (a precondition on the key's revision),
// Delete, Batch (all or nothing, one log entry, one revision for the whole
// batch, like an etcd transaction), Update (a compare-and-set loop), and
// the workflow and application-node commands, which live under
// "workflow:<id>" and "node:<id>" keys. Each write gets the next
// cluster-wide revision; a failed write changes nothing.
//
// Apply is deterministic: it reads no clock (timestamps come in the
// command), no randomness, and no decision depends on map order. Limits
// (key length, value size, number of keys) are checked at apply time and
// must be configured alike on every node. Requests are held to stricter
// key rules than apply (no control characters; ValidateKey), checked
// before proposing, so that what was committed under older rules still
// applies the same way.
//
// Exactly once: a write whose context carries a RequestID (client id,
// sequence) is applied once; a duplicate gets the recorded result. The
// session table that remembers results is bounded (DefaultMaxSessions
// clients, least recently used by log index evicted first; at least
// DefaultSessionWindow results per client) and is part of the snapshot.
//
// Every change is published to the watch hub under the machine's lock, in
// revision order; a batch publishes its events in one call.
package kv
