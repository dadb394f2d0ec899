package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/internal/testwait"
)

// testClient is a client of tc, closed when the test ends.
func testClient(t *testing.T, tc *testcluster.Cluster) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: tc.HTTPAddrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// cliRun is a command line running in the background.
type cliRun struct {
	stdout, stderr *lockedBuffer
	cancel         context.CancelFunc
	done           chan int
}

// startCLI runs args until it exits or interrupt (like Ctrl-C) is called.
func startCLI(stdin io.Reader, args ...string) *cliRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &cliRun{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() {
		r.done <- execute(ctx, args, r.stdout, r.stderr, cliEnv{stdin: stdin})
	}()
	return r
}

// exit waits for the command to end and returns its exit code.
func (r *cliRun) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.done:
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("the command did not end\nstdout: %s\nstderr: %s", r.stdout, r.stderr)
	}
	return 0
}

// TestCLILock runs commands under lock, elect's and node register's
// refusals, against testdata/lock.golden: the command sees the lock's
// name, token and lease, its exit code is lock's, and the lock is
// released when it exits (a try-once lock of the same name then
// succeeds).
func TestCLILock(t *testing.T) {
	tc := startTestCluster(t)
	tr := newTranscript(t, tc)
	script := `echo "$CONSENSUS_LOCK_NAME: token set $((CONSENSUS_LOCK_TOKEN > 0)), lease set $((${#CONSENSUS_LEASE_ID} > 0))"`
	tr.step(exitOK, "", "lock", "job", "--wait", "0", "--", "sh", "-c", script)
	tr.step(exitOK, "", "lock", "job", "--wait", "0", "--ttl", "2s", "--", "sh", "-c", "echo again")
	tr.step(7, "", "lock", "job", "--", "sh", "-c", "exit 7")
	tr.step(exitOK, "hello from stdin\n", "lock", "job", "--", "cat")
	tr.step(127, "", "lock", "job", "--", "/nonexistent/command")
	tr.step(exitUsage, "", "lock", "job")
	tr.step(exitUsage, "", "lock", "job", "true")
	tr.step(exitUsage, "", "lock", "--", "true")
	tr.step(exitUsage, "", "lock", "job", "--wait", "11m", "--", "true")
	tr.step(exitUsage, "", "lock", "job", "--wait", "soon", "--", "true")
	tr.step(exitUsage, "", "lock", "job", "--ttl", "0s", "--", "true")
	tr.step(exitUsage, "", "lock", "", "--", "true")

	// Held by another session: a try-once lock fails with exit code 4.
	c := testClient(t, tc)
	ctx := testContext(t)
	s, err := client.NewSession(ctx, c, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(ctx, "job", 0); err != nil {
		t.Fatal(err)
	}
	tr.step(exitPrecondition, "", "lock", "job", "--wait", "0", "--", "true")
	tr.step(exitPrecondition, "", "lock", "job", "--wait", "50ms", "--", "true")
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	tr.step(exitOK, "", "lock", "job", "--wait", "0", "--", "true")

	tr.step(exitUsage, "", "elect", "boss")
	tr.step(exitUsage, "", "elect", "boss", "{")
	tr.step(exitUsage, "", "elect", "boss", "1", "--ttl", "x")
	tr.step(exitUsage, "", "node", "register", "w1", "--ttl", "0")
	tr.check("lock")
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestCLILockChildSeesToken runs a command under lock that blocks on its
// stdin: while it runs, the lock is held with the token in its
// environment; after it exits, the lock is released.
func TestCLILockChildSeesToken(t *testing.T) {
	tc := startTestCluster(t)
	t.Setenv(envEndpoints, strings.Join(tc.HTTPAddrs, ","))
	t.Setenv(envToken, "")
	c := testClient(t, tc)
	ctx := testContext(t)
	out := filepath.Join(t.TempDir(), "token")
	stdin, release := io.Pipe()
	r := startCLI(stdin, "lock", "job", "--", "sh", "-c", `echo "$CONSENSUS_LOCK_TOKEN $CONSENSUS_LEASE_ID" > `+out+`; read line`)
	var fields []string
	testwait.For(t, 10*time.Second, "the command to start", func() bool {
		b, err := os.ReadFile(out)
		fields = strings.Fields(string(b))
		return err == nil && len(fields) == 2
	})
	l, err := c.LockState(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if strconv.FormatInt(l.Token, 10) != fields[0] || l.Lease.String() != fields[1] {
		t.Fatalf("the command saw token %s and lease %s; the lock is held with %d by %s", fields[0], fields[1], l.Token, l.Lease)
	}
	release.Close() // the command's read ends: it exits 1 at EOF
	if code := r.exit(t); code != 1 {
		t.Fatalf("exit %d, want the command's 1\nstderr: %s", code, r.stderr)
	}
	if _, err := c.LockState(ctx, "job"); !errors.Is(err, api.ErrLockNotFound) {
		t.Fatalf("the lock after the command exited: %v, want ErrLockNotFound", err)
	}
	if _, err := c.TimeToLive(ctx, l.Lease); !errors.Is(err, api.ErrLeaseNotFound) {
		t.Fatalf("the session's lease after the command exited: %v, want ErrLeaseNotFound", err)
	}
}

// TestCLILockSessionLost revokes the lease of a running lock command: the
// command is terminated and lock exits 1 with one line.
func TestCLILockSessionLost(t *testing.T) {
	tc := startTestCluster(t)
	t.Setenv(envEndpoints, strings.Join(tc.HTTPAddrs, ","))
	t.Setenv(envToken, "")
	c := testClient(t, tc)
	ctx := testContext(t)
	r := startCLI(strings.NewReader(""), "lock", "job", "--ttl", "1s", "--", "sleep", "60")
	var l api.Lock
	testwait.For(t, 10*time.Second, "the lock to be held", func() bool {
		var err error
		l, err = c.LockState(ctx, "job")
		return err == nil
	})
	if _, err := c.Revoke(ctx, l.Lease); err != nil {
		t.Fatal(err)
	}
	code := r.exit(t)
	stderr := r.stderr.String()
	if code != exitFailure || !strings.HasPrefix(stderr, `consensus: lock "job": sleep was terminated: session lost: `) ||
		strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "lease not found") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// TestCLIElect campaigns with two elect commands: the first prints its
// token, the second waits; interrupting the first resigns, and the second
// leads with a larger token. node register --ttl keeps its node
// registered while it runs and deregisters it when interrupted.
func TestCLIElect(t *testing.T) {
	tc := startTestCluster(t)
	t.Setenv(envEndpoints, strings.Join(tc.HTTPAddrs, ","))
	t.Setenv(envToken, "")
	c := testClient(t, tc)
	ctx := testContext(t)

	a := startCLI(nil, "elect", "boss", `"a"`)
	var first int64
	testwait.For(t, 10*time.Second, "a to lead", func() bool {
		first, _ = strconv.ParseInt(strings.TrimSpace(a.stdout.String()), 10, 64)
		return first > 0
	})
	b := startCLI(nil, "elect", "boss", `{"who": "b"}`, "-o", "json")
	testwait.For(t, 10*time.Second, "b to wait", func() bool {
		l, err := c.Leader(ctx, "boss")
		return err == nil && l.Waiters == 1 && l.Token == first && string(l.Value) == `"a"`
	})
	a.cancel()
	if code := a.exit(t); code != 0 || a.stderr.String() != "" {
		t.Fatalf("a interrupted: exit %d, stderr %q", code, a.stderr)
	}
	var l api.Lock
	testwait.For(t, 10*time.Second, "b to lead", func() bool {
		var err error
		l, err = c.Leader(ctx, "boss")
		return err == nil && l.Token > first && string(l.Value) == `{"who":"b"}`
	})
	testwait.For(t, 10*time.Second, "b to print its leadership", func() bool {
		return strings.Contains(b.stdout.String(), `"token": `+strconv.FormatInt(l.Token, 10))
	})
	b.cancel()
	if code := b.exit(t); code != 0 {
		t.Fatalf("b interrupted: exit %d, stderr %q", code, b.stderr)
	}
	if _, err := c.Leader(ctx, "boss"); !errors.Is(err, api.ErrLockNotFound) {
		t.Fatalf("the election after both left: %v, want ErrLockNotFound", err)
	}

	n := startCLI(nil, "node", "register", "w1", "--data", `{"zone":"a"}`, "--ttl", "1s")
	testwait.For(t, 10*time.Second, "the node to register", func() bool {
		return strings.HasPrefix(n.stdout.String(), "OK revision ")
	})
	// Several times its time to live: the registration stays.
	for range 3 {
		it, err := c.Get(ctx, "node:w1")
		if err != nil || it.Lease == 0 {
			t.Fatalf("node:w1 = %+v, %v; want it under a lease", it, err)
		}
		if _, err := c.TimeToLive(ctx, it.Lease); err != nil {
			t.Fatal(err) // the session's lease is alive
		}
		select {
		case code := <-n.done:
			t.Fatalf("node register ended: exit %d, stderr %q", code, n.stderr)
		case <-time.After(time.Second): // the pace of the looks, not a wait for a condition
		}
	}
	n.cancel()
	if code := n.exit(t); code != 0 {
		t.Fatalf("node register interrupted: exit %d, stderr %q", code, n.stderr)
	}
	if nodes, _, err := c.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("nodes after node register was interrupted: %+v, %v", nodes, err)
	}
}
