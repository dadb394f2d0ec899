package etcdapi_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/loopback"
	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/server"
)

func memberNamed(ms []*pb.Member, name string) *pb.Member {
	for _, m := range ms {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// TestMemberAddThenJoin: etcd's workflow end to end on a one-voter
// cluster. MemberAdd names the member from its peer URL's user and lists
// it, not yet started, with the id member list, promote and remove use;
// `consensus serve --join` then starts it (its name already a member),
// it catches up, serves a linearizable read of a write acknowledged
// before it started, and is promoted to voter by the leader. A second
// add, without a user in the URL, is named by its host:port.
func TestMemberAddThenJoin(t *testing.T) {
	c, eps := startCluster(t, 1)
	cli := newClient(t, eps["n1"])
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "before", "joined"); err != nil {
		t.Fatal(err)
	}

	peerLn, err := loopback.ListenFree()
	if err != nil {
		t.Fatal(err)
	}
	peerAddr := peerLn.Addr().String()
	add, err := cli.MemberAdd(ctx, []string{"http://n2@" + peerAddr})
	if err != nil {
		peerLn.Close()
		t.Fatal(err)
	}
	if add.Member.Name != "n2" || add.Member.ID != consensus.RaftID("n2") || !add.Member.IsLearner ||
		len(add.Member.PeerURLs) != 1 || add.Member.PeerURLs[0] != "http://"+peerAddr {
		peerLn.Close()
		t.Fatalf("added member %+v", add.Member)
	}
	if m := memberNamed(add.Members, "n2"); len(add.Members) != 2 || m == nil || m.ID != add.Member.ID || len(m.ClientURLs) != 0 {
		peerLn.Close()
		t.Fatalf("members after the add: %+v", add.Members)
	}
	// The quorum did not grow: the one voter still writes alone.
	if _, err := cli.Put(ctx, "while-added", "x"); err != nil {
		peerLn.Close()
		t.Fatalf("a write with the member added, not started: %v", err)
	}

	n2 := startJoinerWith(t, "n2", c.HTTP["n1"], peerLn)
	cli2 := newClient(t, n2.EtcdAddr())
	get, err := cli2.Get(ctx, "before")
	if err != nil || len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "joined" {
		t.Fatalf("linearizable read on the new member: %+v %v", get, err)
	}
	testwait.For(t, 20*time.Second, "n2 promoted to voter and listed by n2", func() bool {
		ml, err := cli2.MemberList(ctx)
		if err != nil {
			return false
		}
		m := memberNamed(ml.Members, "n2")
		return len(ml.Members) == 2 && m != nil && !m.IsLearner && m.ID == add.Member.ID &&
			len(m.ClientURLs) == 1 && m.ClientURLs[0] == "http://"+n2.EtcdAddr()
	})

	// Without a user, the name is the host:port.
	other, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	add, err = cli.MemberAddAsLearner(ctx, []string{"http://" + other})
	if err != nil || add.Member.Name != other || add.Member.ID != consensus.RaftID(other) || !add.Member.IsLearner {
		t.Fatalf("add named by host:port: %+v %v", add, err)
	}
	if _, err := cli.MemberRemove(ctx, add.Member.ID); err != nil {
		t.Fatalf("remove the member added by host:port: %v", err)
	}
}

// startJoinerWith starts node id with `consensus serve --join via` on
// peerLn, serving HTTP and etcd's API on free loopback ports; it is
// closed when the test ends.
func startJoinerWith(t *testing.T, id, via string, peerLn net.Listener) *server.Server {
	t.Helper()
	httpLn, err := loopback.ListenFree()
	if err != nil {
		peerLn.Close()
		t.Fatal(err)
	}
	srv, err := server.Start(server.Config{
		Node:         consensus.DefaultConfig(id),
		PeerListener: peerLn,
		HTTPListener: httpLn,
		EtcdAddr:     "127.0.0.1:0",
		DataDir:      filepath.Join(t.TempDir(), id),
		Join:         []string{via},
		JoinTimeout:  20 * time.Second,
	})
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close %s: %v", id, err)
		}
	})
	return srv
}

// TestMemberAddErrors: etcd's errors for a peer URL in use, a name in
// use elsewhere, a removed name, bad URLs; a read-only token may not
// add.
func TestMemberAddErrors(t *testing.T) {
	tokens, err := server.ParseTokens(strings.NewReader("writer rw\nreader ro\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, 1, testcluster.Configure(func(cfg *server.Config) {
		cfg.EtcdAddr = "127.0.0.1:0"
		cfg.HTTP.Tokens = tokens
	}))
	cli := newClient(t, c.Servers["n1"].EtcdAddr())
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer writer")
	roCtx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer reader")

	free, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.MemberAdd(roCtx, []string{"http://x@" + free}); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("add with a read-only token: %v", err)
	}
	if _, err := cli.MemberList(roCtx); err != nil {
		t.Fatalf("list with a read-only token: %v", err)
	}
	add, err := cli.MemberAdd(ctx, []string{"http://a@" + free})
	if err != nil {
		t.Fatal(err)
	}
	other, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		urls []string
		want error
	}{
		{[]string{"http://b@" + free}, rpctypes.ErrPeerURLExist},
		{[]string{"http://" + free}, rpctypes.ErrPeerURLExist},
		{[]string{"http://a@" + other}, rpctypes.ErrMemberExist},
		{[]string{"http://n1@" + other}, rpctypes.ErrMemberExist},
		{[]string{"http://" + c.Peers["n1"]}, rpctypes.ErrPeerURLExist},
	} {
		if _, err := cli.MemberAdd(ctx, tc.urls); !errors.Is(err, tc.want) {
			t.Errorf("add %v: %v, want %v", tc.urls, err, tc.want)
		}
	}
	for _, urls := range [][]string{
		nil,
		{"http://c@" + other, "http://d@127.0.0.1:1"},
		{"127.0.0.1:7000"},
		{"unix://c@" + other},
		{"http://c@127.0.0.1"},
		{"http://c@127.0.0.1:0"},
		{"http://c@127.0.0.1:70000"},
		{"http://c@" + other + "/path"},
		{"http://c@" + other + "?name=c"},
		{"http://c:secret@" + other},
		{"http://%00@" + other},
		{"http://" + strings.Repeat("n", 257) + "@" + other},
		{"http://c@[::1"},
	} {
		// Straight to the server: clientv3 refuses some of these itself.
		_, err := pb.NewClusterClient(cli.ActiveConnection()).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: urls})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "given member URLs are invalid") {
			t.Errorf("add %q: %v, want InvalidArgument", urls, err)
		}
	}
	// A removed name can never join again.
	if _, err := cli.MemberRemove(ctx, add.Member.ID); err != nil {
		t.Fatal(err)
	}
	_, err = cli.MemberAdd(ctx, []string{"http://a@" + other})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("add a removed name: %v", err)
	}
	if ml, err := cli.MemberList(ctx); err != nil || len(ml.Members) != 1 {
		t.Fatalf("members after the refused adds: %+v %v", ml, err)
	}
}
