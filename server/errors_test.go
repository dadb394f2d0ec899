package server

import (
	"context"
	"errors"
	"testing"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// TestErrorClassesMatchAPI checks that the server answers each
// client-facing sentinel with a code that api maps back to it, so that a
// client's errors.Is sees the error the backend returned.
func TestErrorClassesMatchAPI(t *testing.T) {
	// Sentinels a client cannot tell apart: they map to codes that stand
	// for a class of failure (bad_request, unavailable, canceled, timeout).
	serverOnly := map[error]bool{kv.ErrInvalidBatch: true, kv.ErrInvalidRequestID: true, kv.ErrBadCommand: true,
		kv.ErrInvalidRevision: true, consensus.ErrStopped: true, consensus.ErrStorageStalled: true, kv.ErrDiverged: true,
		context.Canceled: true, context.DeadlineExceeded: true}
	for _, class := range errorClasses {
		for _, s := range class.sentinels {
			if serverOnly[s] {
				continue
			}
			mapped := errors.Join(append(api.Sentinels(class.code), api.MemberSentinel(class.code))...)
			if !errors.Is(mapped, s) {
				t.Errorf("%v is answered %s, which a client reads as %v", s, class.code, mapped)
			}
		}
	}
}
