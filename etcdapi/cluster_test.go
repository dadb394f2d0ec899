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
	clientv3 "go.etcd.io/etcd/client/v3"
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
// it catches up and serves a linearizable read of a write acknowledged
// before it started. A learner added with is_learner stays one after it
// has caught up, until MemberPromote; one added without is promoted by
// the leader. An add without a user in the URL is named by its host:port.
func TestMemberAddThenJoin(t *testing.T) {
	c, eps := startCluster(t, 1)
	cli := newClient(t, eps["n1"])
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "before", "joined"); err != nil {
		t.Fatal(err)
	}
	// join adds name (as a learner if asLearner) and starts it with
	// --join, then waits until it serves a linearizable read.
	join := func(name string, asLearner bool) (*pb.Member, *clientv3.Client) {
		t.Helper()
		peerLn, err := loopback.ListenFree()
		if err != nil {
			t.Fatal(err)
		}
		peerAddr := peerLn.Addr().String()
		add := cli.MemberAdd
		if asLearner {
			add = cli.MemberAddAsLearner
		}
		resp, err := add(ctx, []string{"http://" + name + "@" + peerAddr})
		if err != nil {
			peerLn.Close()
			t.Fatal(err)
		}
		m := resp.Member
		if m.Name != name || m.ID != consensus.RaftID(name) || !m.IsLearner || len(m.PeerURLs) != 1 || m.PeerURLs[0] != "http://"+peerAddr {
			peerLn.Close()
			t.Fatalf("added member %+v", m)
		}
		if listed := memberNamed(resp.Members, name); listed == nil || listed.ID != m.ID || len(listed.ClientURLs) != 0 {
			peerLn.Close()
			t.Fatalf("members after adding %s: %+v", name, resp.Members)
		}
		// The quorum did not grow: the voters still write alone.
		if _, err := cli.Put(ctx, "added", name); err != nil {
			peerLn.Close()
			t.Fatalf("a write with %s added, not started: %v", name, err)
		}
		srv := startJoinerWith(t, name, c.HTTP["n1"], peerLn)
		mcli := newClient(t, srv.EtcdAddr())
		get, err := mcli.Get(ctx, "before")
		if err != nil || len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "joined" {
			t.Fatalf("linearizable read on %s: %+v %v", name, get, err)
		}
		testwait.For(t, 20*time.Second, name+" listed by itself with its client URL", func() bool {
			ml, err := mcli.MemberList(ctx)
			if err != nil {
				return false
			}
			me := memberNamed(ml.Members, name)
			return me != nil && me.ID == m.ID && len(me.ClientURLs) == 1 && me.ClientURLs[0] == "http://"+srv.EtcdAddr()
		})
		return m, mcli
	}
	isLearner := func(mcli *clientv3.Client, name string) bool {
		ml, err := mcli.MemberList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return memberNamed(ml.Members, name).IsLearner
	}

	// n3, a learner that stays one, has caught up before n2 is added:
	// the promotion of n2 would take n3 along if n3 were not kept.
	n3, cli3 := join("n3", true)
	_, cli2 := join("n2", false)
	testwait.For(t, 20*time.Second, "n2 promoted to voter", func() bool { return !isLearner(cli2, "n2") })
	if !isLearner(cli3, "n3") || !isLearner(cli2, "n3") {
		t.Fatal("n3, added as a learner, was promoted without MemberPromote")
	}
	if _, err := cli.MemberPromote(ctx, n3.ID); err != nil {
		t.Fatal(err)
	}
	if isLearner(cli, "n3") {
		t.Fatal("n3 still a learner after MemberPromote")
	}

	// Without a user, the name is the host:port.
	other, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	add, err := cli.MemberAddAsLearner(ctx, []string{"http://" + other})
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

// TestMemberUpdate: etcd's way to move a member: stop it, give it its
// new peer URL with MemberUpdate, start it at the new address; it then
// catches up, and the members list the new URL. Errors as etcd's.
func TestMemberUpdate(t *testing.T) {
	c, eps := startCluster(t, 3)
	leader := c.WaitLeader(t, 10*time.Second)
	moved := c.Others(leader)[0]
	cli := newClient(t, eps[leader])
	ctx := ctxT(t)
	id := consensus.RaftID(moved)
	newAddr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.MemberUpdate(ctx, 12345, []string{"http://" + newAddr}); !errors.Is(err, rpctypes.ErrMemberNotFound) {
		t.Fatalf("update of an unknown member: %v", err)
	}
	if _, err := cli.MemberUpdate(ctx, id, []string{"http://" + c.Peers[leader]}); !errors.Is(err, rpctypes.ErrPeerURLExist) {
		t.Fatalf("update to another member's URL: %v", err)
	}
	if _, err := cli.MemberUpdate(ctx, id, []string{"http://someone-else@" + newAddr}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("update with a URL naming another member: %v", err)
	}

	c.Stop(t, moved)
	up, err := cli.MemberUpdate(ctx, id, []string{"http://" + moved + "@" + newAddr})
	if err != nil {
		t.Fatal(err)
	}
	if m := memberNamed(up.Members, moved); m == nil || len(m.PeerURLs) != 1 || m.PeerURLs[0] != "http://"+newAddr {
		t.Fatalf("members after the update: %+v", up.Members)
	}
	put, err := cli.Put(ctx, "while-moved", "x")
	if err != nil {
		t.Fatal(err)
	}
	c.Peers[moved] = newAddr
	c.Restart(t, moved)
	store := c.Servers[moved].Store()
	testwait.For(t, 20*time.Second, moved+" at its new address applies the write made while it was stopped", func() bool {
		return store.Machine().Revision() >= put.Header.Revision
	})
	ml, err := newClient(t, c.Servers[moved].EtcdAddr()).MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := memberNamed(ml.Members, moved); m == nil || m.PeerURLs[0] != "http://"+newAddr {
		t.Fatalf("%s's own member list: %+v", moved, ml.Members)
	}
}
