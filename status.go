package consensus

import "github.com/unrdf/consensus/api"

// Status is a point-in-time view of a node, as served by GET /v1/status
// (defined in api, the client-facing contract).
type Status = api.Status

// Member is one node of the cluster as recorded in the replicated
// membership (defined in api).
type Member = api.Member
