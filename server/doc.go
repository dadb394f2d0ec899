// Package server runs one consensus node and serves its client API.
//
// Start wires a node from a Config: Pebble storage, the WebSocket peer
// transport, the raft node, the replicated key-value state machine (kv)
// and the cluster health manager, and serves on the HTTP port
//
//   - the JSON API (NewHandler, over a Backend such as kv.Store): keys,
//     conditional writes, transactions, workflows, application nodes,
//     membership, status, health, stats, watches (GET /v1/watch) and
//     snapshots for backup;
//   - /v1/ws, the WebSocket + MessagePack protocol for many requests in
//     flight on one connection, whose operations, types, error codes and
//     frame codec are package api's, shared with the Go client;
//   - /metrics and the dashboard.
//
// Errors map to one JSON shape and to the error codes of package api by
// one table (errors.go), for both the JSON API and /v1/ws; no input
// produces a 500. Server.Close shuts the node down in order, draining
// requests in progress. docs/API.md and docs/PROTOCOL.md describe the
// wire; docs/ARCHITECTURE.md says which file holds what.
package server
