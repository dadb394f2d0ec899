package api

import (
	"errors"
	"testing"
)

// TestSentinels checks the code to sentinel table clients rely on, and
// that a write is refused exactly by the codes that say nothing was done.
func TestSentinels(t *testing.T) {
	tests := []struct {
		code      string
		sentinels []error
		refused   bool
	}{
		{CodeKeyNotFound, []error{ErrKeyNotFound}, true},
		{CodePreconditionFailed, []error{ErrConflict}, true},
		{CodeStateFull, []error{ErrStateFull}, true},
		{CodeWorkflowNotFound, []error{ErrWorkflowNotFound}, true},
		{CodeInvalidTransition, []error{ErrInvalidTransition}, true},
		{CodeNodeNotFound, []error{ErrNodeNotFound}, true},
		{CodeRequestExpired, []error{ErrRequestExpired}, false},
		{CodeStaleEpoch, []error{ErrStaleEpoch}, true},
		{CodeTaskNotFound, []error{ErrTaskNotFound}, true},
		{CodeQueueFull, []error{ErrQueueFull}, true},
		{CodeTaskNotDead, []error{ErrTaskNotDead}, true},
		{CodeScheduleNotFound, []error{ErrScheduleNotFound}, true},
		{CodeInvalidKey, []error{ErrInvalidKey}, true},
		{CodeInvalidJSON, []error{ErrInvalidValue}, true},
		{CodeTooLarge, []error{ErrValueTooLarge, ErrTooLarge}, true},
		{CodeNoLeader, []error{ErrNoLeader}, true},
		{CodeTimeout, []error{ErrTimeout}, false},
		{CodeBadRequest, []error{ErrBadRequest}, true},
		{CodeNotFound, []error{ErrBadRequest}, true},
		{CodeMethodNotAllowed, []error{ErrBadRequest}, true},
		{CodeUnauthorized, []error{ErrUnauthorized}, true},
		{CodeForbidden, []error{ErrForbidden}, true},
		{CodeRateLimited, []error{ErrRateLimited}, true},
		{CodeOverloaded, []error{ErrRateLimited}, true},
		{CodeTooManyWatches, []error{ErrRateLimited}, true},
		{CodeUnavailable, []error{ErrUnavailable}, false},
		{CodeCanceled, []error{ErrUnavailable}, false},
		{CodeInternal, []error{ErrUnavailable}, false},
		{CodeRemoved, []error{ErrUnavailable}, false},
		{"from_the_future", []error{ErrUnavailable}, false},
	}
	for _, tt := range tests {
		got := errors.Join(Sentinels(tt.code)...)
		for _, s := range tt.sentinels {
			if !errors.Is(got, s) {
				t.Errorf("%s: %v is not %v", tt.code, got, s)
			}
		}
		if Refused(tt.code) != tt.refused {
			t.Errorf("%s: Refused = %v", tt.code, !tt.refused)
		}
	}
	members := map[string]error{CodeMemberNotFound: ErrUnknownMember, CodeMemberConflict: ErrMemberConflict,
		CodeInvalidMember: ErrInvalidMember, CodeRemoved: ErrRemoved, CodeKeyNotFound: nil}
	for code, want := range members {
		if got := MemberSentinel(code); got != want {
			t.Errorf("MemberSentinel(%s) = %v, want %v", code, got, want)
		}
	}
}
