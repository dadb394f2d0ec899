package transport_test

import (
	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/transport"
)

// The transport implements the root package's interfaces structurally; these
// assertions keep the two in step without the transport importing the root.
var (
	_ consensus.Transport      = (*transport.WebSocket)(nil)
	_ consensus.MessageHandler = transport.Handler(nil)
	_ transport.Handler        = consensus.MessageHandler(nil)
)
