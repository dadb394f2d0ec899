// Package consensus is a raft node: it drives etcd raft
// (go.etcd.io/raft/v3) and turns commands proposed on any member into
// commands applied, in the same order, to a StateMachine on every member,
// with linearizable reads, dynamic membership, leadership transfer, fast
// failover and snapshots.
//
// The node knows neither the network, nor the storage engine, nor what the
// commands mean. It reaches them through three interfaces: a Transport
// sends raft messages and hands received ones to the node (a
// MessageHandler); a LogStorage keeps raft's hard state, entries and
// snapshot metadata; a StateMachine applies committed commands (and, as a
// Snapshotter, saves and restores its state). Packages transport, storage
// and kv provide the production ones; package server wires them into a
// running member with an HTTP API.
//
// # Use
//
// NewNode creates a node over storage and a state machine: from empty
// storage it bootstraps a cluster from Config.Peers (or, with Config.Join,
// starts empty to join a running cluster that has added it as a member);
// otherwise it restarts from what storage holds. Start connects it to a transport and runs it; Stop stops
// it (the caller still owns and closes the transport and storage).
// Propose replicates a command and returns the state machine's result for
// it; LinearizableRead returns once the local state reflects every command
// committed before the call. Both may be called on any member, from any
// goroutine: a follower forwards a proposal to the leader and asks the
// leader for the read index. A caller's context bounds only its own wait:
// ErrTimeout after a proposal means its outcome is unknown, which is
// distinct from ErrNoLeader (not proposed). Errors are sentinels checked
// with errors.Is. The package example runs a one-node cluster;
// docs/EMBEDDING.md says what each interface must do.
//
// # Inside
//
// One loop (the Ready loop) is the only code that persists raft's state,
// sends its messages and applies committed entries, in the order etcd raft
// documents; the raft state machine itself sits behind a mutex, stepped
// directly by proposers, the transport and the ticker. Everything that
// waits (proposers, readers, event subscribers) is woken from the loop
// without ever blocking it. The node's parts each own their state, in a
// file of their own: proposals (propose.go), reads (read.go), the Ready
// loop (ready.go), the known leader (leader.go), membership (members.go,
// membership.go, removal.go), leadership transfer (transfer.go), fast
// failover (failover.go), snapshots (node_snapshot.go) and events
// (events.go). docs/ARCHITECTURE.md describes them.
package consensus
