package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/unrdf/consensus"
)

// TestMembershipCalls: the client lists, adds (a node that never starts
// stays a learner), promotes and removes members and transfers
// leadership; errors match consensus's sentinels; a dead first endpoint is
// skipped.
func TestMembershipCalls(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.WaitLeader(t, leaderTimeout)
	cl, err := New(Config{Endpoints: append([]string{"127.0.0.1:1"}, c.Endpoints()...)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	members, err := cl.Members(ctx)
	if err != nil || len(members) != 3 {
		t.Fatalf("members %+v %v", members, err)
	}
	members, err = cl.AddMember(ctx, consensus.Member{ID: "n9", PeerAddr: "127.0.0.1:2"})
	if err != nil || len(members) != 4 {
		t.Fatalf("add: %+v %v", members, err)
	}
	for _, m := range members {
		if m.ID == "n9" && m.Voter {
			t.Fatal("a node that never ran was promoted")
		}
	}
	if _, err := cl.AddMember(ctx, consensus.Member{ID: "n9", PeerAddr: "127.0.0.1:3"}); !errors.Is(err, consensus.ErrMemberConflict) {
		t.Fatalf("add at another address: %v", err)
	}
	if _, err := cl.AddMember(ctx, consensus.Member{ID: "n8"}); !errors.Is(err, consensus.ErrInvalidMember) {
		t.Fatalf("add without address: %v", err)
	}
	if err := cl.RemoveMember(ctx, "n9"); err != nil {
		t.Fatal(err)
	}
	if err := cl.RemoveMember(ctx, "nope"); !errors.Is(err, consensus.ErrUnknownMember) {
		t.Fatalf("remove unknown: %v", err)
	}
	if err := cl.PromoteMember(ctx, "nope"); !errors.Is(err, consensus.ErrUnknownMember) {
		t.Fatalf("promote unknown: %v", err)
	}
	target := c.Others(leader)[0]
	got, err := cl.TransferLeadership(ctx, target)
	if err != nil || got != target {
		t.Fatalf("transfer to %s: %q %v", target, got, err)
	}
	if got := c.WaitLeader(t, leaderTimeout); got != target {
		t.Fatalf("leader %s after transfer to %s", got, target)
	}
}
