// Package stages records when each write passes each stage of its path
// through the cluster (the client, the client API, the raft loop,
// storage, the peer transport), so a write's latency can be split into
// its parts. It is compiled in only with the build tag stagetrace;
// without it Enabled is false and every call is empty, so callers guard
// their loops with Enabled and the marks cost nothing in a normal build.
//
// With the tag, a process records marks in memory and Dump writes them to
// $CONSENSUS_STAGES_DIR/<node>-<pid>.txt (nothing if it is unset), one
// "<unix nanoseconds> <node> <index> <stage>" line per mark. The nodes of
// a local cluster and the bench process that drives it (node "client")
// share one clock, so their files can be merged; internal/stages/report
// does that and prints the stage table in BENCHMARKS.md.
package stages
