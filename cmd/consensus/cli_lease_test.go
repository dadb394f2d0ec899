package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/internal/testwait"
)

// remainingJSON matches the time a lease has left in JSON output, which
// the leader's clock moves.
var remainingJSON = regexp.MustCompile(`"remainingMs": [0-9]+`)

// TestCLILease grants, attaches, keeps alive, inspects, lists and revokes
// leases through the lease commands and kv put --lease/--ttl, and checks
// the refusals, against testdata/lease.golden. Lease ids are given with
// --id so that the transcript is deterministic; the time a lease has left
// is normalised.
func TestCLILease(t *testing.T) {
	tc := startTestCluster(t)
	tr := newTranscript(t, tc)
	normRemaining := func(s string) string {
		s = remainingJSON.ReplaceAllString(s, `"remainingMs": N`)
		return realign(s, func(cells []string) {
			if len(cells) == 4 {
				cells[2] = "N"
			}
		})
	}
	tr.step(exitOK, "", "lease", "grant", "60s", "--id", "2a")
	tr.step(exitOK, "", "lease", "grant", "90", "--id", "2b", "-o", "json")
	tr.step(exitPrecondition, "", "lease", "grant", "10s", "--id", "2a")
	tr.step(exitUsage, "", "lease", "grant", "0s")
	tr.step(exitUsage, "", "lease", "grant", "soon")
	tr.step(exitUsage, "", "lease", "grant", "10s", "--id", "0")

	tr.step(exitOK, "", "kv", "put", "held", `"by 2a"`, "--lease", "2a")
	tr.step(exitOK, "", "kv", "put", "also", "1", "--lease", "2a", "--if-absent")
	tr.step(exitOK, "", "kv", "get", "held", "-o", "json")
	tr.step(exitOK, "", "kv", "put", "brief", "2", "--ttl", "1h")
	tr.step(exitOK, "", "kv", "del", "brief") // its own lease goes with it
	tr.step(exitNotFound, "", "kv", "put", "x", "1", "--lease", "99")
	tr.step(exitUsage, "", "kv", "put", "x", "1", "--lease", "zz")
	tr.step(exitUsage, "", "kv", "put", "x", "1", "--ttl", "0")
	tr.step(exitUsage, "", "kv", "put", "x", "1", "--lease", "2a", "--ttl", "1s")

	tr.step(exitOK, "", "lease", "keepalive", "2a", "--once")
	tr.step(exitOK, "", "lease", "keepalive", "2b", "--once", "-o", "json")
	tr.norm = normRemaining
	tr.step(exitOK, "", "lease", "ttl", "2a")
	tr.norm = normRemaining
	tr.step(exitOK, "", "lease", "ttl", "2b", "-o", "json")
	tr.step(exitOK, "", "lease", "list")
	tr.step(exitOK, "", "lease", "list", "-o", "json", "--consistency", "local")

	tr.step(exitOK, "", "lease", "revoke", "2a")
	tr.step(exitNotFound, "", "kv", "get", "held")
	tr.step(exitNotFound, "", "lease", "revoke", "2a")
	tr.step(exitNotFound, "", "lease", "keepalive", "2a")
	tr.step(exitNotFound, "", "lease", "ttl", "2a")
	tr.step(exitUsage, "", "lease", "ttl", "nothex")
	tr.step(exitUsage, "", "lease", "revoke")
	tr.step(exitOK, "", "lease", "revoke", "2b", "-o", "json")
	tr.step(exitOK, "", "lease", "list", "-o", "json")
	tr.check("lease")
}

// TestCLILeaseKeepAlive runs lease keepalive until it is interrupted: the
// lease's key outlives several times to live, the command ends with exit
// code 0 and a line per renewal, and without it the key expires.
func TestCLILeaseKeepAlive(t *testing.T) {
	tc := startTestCluster(t)
	t.Setenv(envEndpoints, strings.Join(tc.HTTPAddrs, ","))
	t.Setenv(envToken, "")
	mustRun := func(args ...string) cliResult {
		t.Helper()
		r := runCLI(context.Background(), "", args...)
		if r.code != 0 {
			t.Fatalf("%q: exit %d: %s", args, r.code, r.stderr)
		}
		return r
	}
	const ttl = time.Second // api.LeaseTTLFloorMs: a shorter one is raised to it
	mustRun("lease", "grant", ttl.String(), "--id", "c0ffee")
	mustRun("kv", "put", "worker", "1", "--lease", "c0ffee")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan cliResult, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		code := execute(ctx, []string{"lease", "keepalive", "c0ffee"}, &stdout, &stderr, cliEnv{})
		done <- cliResult{stdout.String(), stderr.String(), code}
	}()
	// Four times the time to live: the key must be there at every look.
	for start := time.Now(); time.Since(start) < 4*ttl; {
		if r := runCLI(context.Background(), "", "kv", "get", "worker"); r.code != 0 {
			t.Fatalf("after %v: kv get: exit %d: %s", time.Since(start).Round(time.Millisecond), r.code, r.stderr)
		}
		select {
		case r := <-done:
			t.Fatalf("keepalive ended: exit %d: %s", r.code, r.stderr)
		case <-time.After(ttl / 6): // the pace of the looks, not a wait for a condition
		}
	}
	cancel() // Ctrl-C
	var r cliResult
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("keepalive did not end")
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != 0 || r.stderr != "" || len(lines) < 4 {
		t.Fatalf("interrupted keepalive: exit %d, %d lines\nstdout: %s\nstderr: %s", r.code, len(lines), r.stdout, r.stderr)
	}
	for _, l := range lines {
		if l != "lease c0ffee kept alive, ttl 1s" {
			t.Fatalf("keepalive printed %q", l)
		}
	}
	testwait.For(t, 10*time.Second, "the key to expire without keepalives", func() bool {
		return runCLI(context.Background(), "", "kv", "get", "worker").code == exitNotFound
	})
}
