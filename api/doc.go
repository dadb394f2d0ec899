// Package api is the client-facing contract of a consensus server: what a
// client and a server must agree on, in one place, so that they cannot
// drift apart.
//
// It holds
//
//   - the values requests and answers carry (Item, Workflow, Node, Status,
//     Member, NodeInfo, Event, Cond, TxnOp, RequestID, ...), which the
//     server's packages (kv, cluster and the module root) re-export as
//     aliases;
//   - the error codes servers answer with (Code*) and the sentinel errors
//     they stand for (Err*), checked with errors.Is;
//   - the /v1/ws protocol: its operations (Op) with their argument
//     schemas, and the one encoder and decoder of its MessagePack frames
//     (AppendRequest, DecodeRequests, AppendResponse, FrameReader), used
//     by both the server and the client.
//
// docs/PROTOCOL.md describes the wire format. The package imports only the
// standard library and the MessagePack library, so a client that imports
// it does not pull in raft, storage or telemetry.
package api
