package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/internal/certs"
	"github.com/unrdf/consensus/internal/loopback"
	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// cliResult is what one command line did.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs one command line in process, with stdin.
func runCLI(ctx context.Context, stdin string, args ...string) cliResult {
	var stdout, stderr bytes.Buffer
	code := execute(ctx, args, &stdout, &stderr, cliEnv{stdin: strings.NewReader(stdin)})
	return cliResult{stdout.String(), stderr.String(), code}
}

// checkOneLine fails unless a failed command printed exactly one line,
// "consensus: ...", on stderr (no usage dump, no stack). Codes above
// exitPrecondition and below 127 are those of a command lock ran, which
// speaks for itself.
func checkOneLine(t *testing.T, args []string, r cliResult) {
	t.Helper()
	if r.code == 0 || (r.code > exitPrecondition && r.code < 127) {
		return
	}
	if !strings.HasPrefix(r.stderr, "consensus: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("%q: exit %d: stderr is not one line: %q", args, r.code, r.stderr)
	}
}

// transcript runs command lines against a cluster and records what each
// printed, normalised, for comparison with a golden file.
type transcript struct {
	t    *testing.T
	out  strings.Builder
	repl *strings.Replacer
	// norm, if set, normalises the output of the next step.
	norm func(string) string
}

// timestamps matches the times a workflow or node command stamps into the
// value.
var timestamps = regexp.MustCompile(`"(startedAt|updatedAt|stoppedAt|registeredAt)":( ?)[0-9]+`)

func newTranscript(t *testing.T, tc *testcluster.Cluster, extra ...string) *transcript {
	t.Setenv(envEndpoints, strings.Join(tc.HTTPAddrs, ","))
	t.Setenv(envToken, "")
	var pairs []string
	for i, id := range tc.IDs {
		pairs = append(pairs, tc.HTTPAddrs[i], "<"+id+"-http>", tc.PeerAddrs[i], "<"+id+"-peer>")
	}
	return &transcript{t: t, repl: strings.NewReplacer(append(pairs, extra...)...)}
}

// step runs args with stdin, checks the exit code, and records it.
func (tr *transcript) step(wantCode int, stdin string, args ...string) cliResult {
	tr.t.Helper()
	r := runCLI(context.Background(), stdin, args...)
	if r.code != wantCode {
		tr.t.Fatalf("%q: exit %d, want %d\nstdout: %s\nstderr: %s", args, r.code, wantCode, r.stdout, r.stderr)
	}
	checkOneLine(tr.t, args, r)
	norm := func(s string) string { return timestamps.ReplaceAllString(tr.repl.Replace(s), `"$1":$2<time>`) }
	if extra := tr.norm; extra != nil {
		inner := norm
		norm = func(s string) string { return extra(inner(s)) }
		tr.norm = nil
	} else {
		inner := norm
		norm = func(s string) string { return realign(inner(s), nil) }
	}
	var quoted []string
	for _, a := range args {
		if !printable(a) {
			a = "$" + strconv.Quote(a) // what the shell would need, near enough
		} else if a == "" || strings.ContainsAny(a, " \"'{}[]*$") {
			a = "'" + a + "'"
		}
		quoted = append(quoted, tr.repl.Replace(a))
	}
	tr.out.WriteString("$ consensus " + strings.Join(quoted, " ") + "\n")
	tr.out.WriteString(norm(r.stdout))
	for _, line := range strings.SplitAfter(norm(r.stderr), "\n") {
		if line != "" {
			tr.out.WriteString("stderr: " + line)
		}
	}
	tr.out.WriteString(fmt.Sprintf("[exit %d]\n\n", r.code))
	return r
}

// check compares the transcript with testdata/<name>.golden.
func (tr *transcript) check(name string) {
	tr.t.Helper()
	path := filepath.Join("testdata", name+".golden")
	got := tr.out.String()
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			tr.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			tr.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tr.t.Fatalf("%v (run go test -run %s -update to write it)", err, tr.t.Name())
	}
	if got != string(want) {
		tr.t.Errorf("output differs from %s (go test -run %s -update rewrites it)\n--- got:\n%s\n--- want:\n%s", path, tr.t.Name(), got, want)
	}
}

var (
	tableHeader = regexp.MustCompile(`^[A-Z][A-Z-]*( {2,}[A-Z][A-Z-]*)+$`)
	cellGap     = regexp.MustCompile(` {2,}`)
)

// realign lays out again the table in s (from its header line on), after
// normalisation changed the width of cells; fix, if set, may change the
// cells of each row first.
func realign(s string, fix func(cells []string)) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if !tableHeader.MatchString(l) {
			continue
		}
		var b strings.Builder
		b.WriteString(strings.Join(lines[:i], "\n"))
		if i > 0 {
			b.WriteString("\n")
		}
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for j, row := range lines[i:] {
			if row == "" {
				continue
			}
			cells := cellGap.Split(row, -1)
			if j > 0 && fix != nil {
				fix(cells)
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		_ = tw.Flush()
		return b.String()
	}
	return s
}

// TestCLIKV writes, reads, lists and deletes keys through every kv
// command against a live cluster, both output formats, and compares the
// transcript with testdata/kv.golden: revisions are deterministic on a
// fresh cluster, so they are not normalised.
func TestCLIKV(t *testing.T) {
	tc := startTestCluster(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "value.json")
	if err := os.WriteFile(file, []byte("{\n  \"from\": \"a file\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := newTranscript(t, tc, dir, "<tmp>")
	tr.step(exitOK, "", "kv", "put", "workflow:a", `{"name":"Data Processing","progress":0}`)
	tr.step(exitOK, "", "kv", "put", "greeting", `"hello"`, "-o", "json")
	tr.step(exitPrecondition, "", "kv", "put", "--if-absent", "workflow:a", "1")
	tr.step(exitOK, "", "kv", "put", "--if-revision", "1", "workflow:a", `{"name":"Data Processing","progress":50}`)
	tr.step(exitPrecondition, "", "kv", "put", "--if-revision", "1", "workflow:a", "2")
	tr.step(exitOK, "", "kv", "put", "--if-absent", "count", "7")
	tr.step(exitOK, "[1, 2,\n 3]\n", "kv", "put", "list", "-")
	tr.step(exitOK, "", "kv", "put", "config", "--file", file)
	tr.step(exitUsage, "not json", "kv", "put", "bad", "--file", "-")
	tr.step(exitUsage, "", "kv", "put", "bad", "hello")

	tr.step(exitOK, "", "kv", "get", "workflow:a")
	tr.step(exitOK, "", "kv", "get", "workflow:a", "--output", "json")
	tr.step(exitOK, "", "kv", "get", "greeting", "--value-only")
	tr.step(exitOK, "", "kv", "get", "config", "--consistency", "local")
	tr.step(exitNotFound, "", "kv", "get", "missing")
	tr.step(exitNotFound, "", "kv", "get", "missing", "-o", "json")

	tr.step(exitOK, "", "kv", "list")
	tr.step(exitOK, "", "kv", "list", "workflow:", "-o", "json")
	tr.step(exitOK, "", "kv", "list", "nothing-here")
	tr.step(exitOK, "", "kv", "list", "nothing-here", "-o", "json")
	tr.step(exitOK, "", "kv", "list", "--limit", "2")
	tr.step(exitOK, "", "kv", "list", "--limit", "2", "-o", "json")
	tr.step(exitOK, "", "kv", "list", "--limit", "5", "-o", "json")
	tr.step(exitOK, "", "kv", "list", "--keys-only")
	tr.step(exitOK, "", "kv", "list", "workflow:", "--keys-only", "-o", "json")
	tr.step(exitOK, "", "kv", "list", "--count")
	tr.step(exitOK, "", "kv", "list", "nothing-here", "--count", "-o", "json")
	tr.step(exitUsage, "", "kv", "list", "--limit", "-1")
	tr.step(exitUsage, "", "kv", "list", "--keys-only", "--count")

	tr.step(exitPrecondition, "", "kv", "del", "greeting", "--if-revision", "1")
	tr.step(exitOK, "", "kv", "del", "greeting", "--if-revision", "2")
	tr.step(exitNotFound, "", "kv", "del", "greeting")
	tr.step(exitOK, "", "kv", "del", "count", "-o", "json")
	tr.step(exitNotFound, "", "kv", "get", "count")
	tr.step(exitOK, "", "kv", "list", "-o", "json")
	tr.check("kv")
}

// TestCLIWorkflow starts, updates, reads, lists and stops a workflow,
// and checks the refusals: starting a running one and stopping a stopped
// one (exit 4), a missing one (exit 3), bad --data (exit 2).
func TestCLIWorkflow(t *testing.T) {
	tc := startTestCluster(t)
	tr := newTranscript(t, tc)
	tr.step(exitOK, "", "workflow", "start", "pipeline", "--data", `{"name":"Data Processing","progress":0}`)
	tr.step(exitPrecondition, "", "workflow", "start", "pipeline")
	tr.step(exitOK, "", "workflow", "update", "pipeline", "--data", `{"progress":50}`, "-o", "json")
	tr.step(exitOK, "", "workflow", "start", "cleanup")
	tr.step(exitOK, "", "workflow", "get", "pipeline")
	tr.step(exitOK, "", "workflow", "get", "pipeline", "-o", "json")
	tr.step(exitOK, "", "workflow", "list")
	tr.step(exitOK, "", "workflow", "stop", "cleanup", "--data", `{"reason":"done"}`)
	tr.step(exitPrecondition, "", "workflow", "stop", "cleanup")
	tr.step(exitPrecondition, "", "workflow", "update", "cleanup", "--data", `{"progress":1}`)
	tr.step(exitOK, "", "workflow", "list", "-o", "json", "--consistency", "local")
	tr.step(exitNotFound, "", "workflow", "get", "nope")
	tr.step(exitNotFound, "", "workflow", "stop", "nope")
	tr.step(exitUsage, "", "workflow", "update", "pipeline")
	tr.step(exitUsage, "", "workflow", "start", "other", "--data", `[1]`)
	tr.check("workflow")
}

// TestCLITxnAndNodes: kv txn applies a batch all or nothing, and the node
// commands register, list and deregister application nodes.
func TestCLITxnAndNodes(t *testing.T) {
	tc := startTestCluster(t)
	tr := newTranscript(t, tc)
	tr.step(exitOK, `{"ops":[{"op":"put","key":"acct/a","value":100},{"op":"put","key":"acct/b","value":0,"ifRevision":0}]}`, "kv", "txn")
	// A stale precondition: nothing of the batch applies.
	tr.step(exitPrecondition, `{"ops":[{"op":"put","key":"acct/a","value":50},{"op":"put","key":"acct/b","value":50,"ifRevision":7}]}`, "kv", "txn")
	tr.step(exitOK, "", "kv", "list", "acct/")
	tr.step(exitOK, `{"ops":[{"op":"delete","key":"acct/a","ifRevision":1},{"op":"put","key":"acct/b","value":100,"ifRevision":1}]}`, "kv", "txn", "-o", "json")
	tr.step(exitOK, "", "kv", "list", "acct/")
	tr.step(exitNotFound, `{"ops":[{"op":"delete","key":"acct/a"}]}`, "kv", "txn")
	tr.step(exitUsage, `{"ops":[]}`, "kv", "txn")
	tr.step(exitUsage, `{"ops":[{"op":"rename","key":"x"}]}`, "kv", "txn")
	tr.step(exitUsage, `{"ops":[{"op":"put","key":"x"}]}`, "kv", "txn")
	tr.step(exitUsage, `not json`, "kv", "txn")

	tr.step(exitOK, "", "node", "register", "worker-1", "--data", `{"zone":"a"}`)
	tr.step(exitOK, "", "node", "register", "worker-2")
	tr.step(exitOK, "", "node", "list")
	tr.step(exitOK, "", "node", "deregister", "worker-1")
	tr.step(exitNotFound, "", "node", "deregister", "worker-1")
	tr.step(exitOK, "", "node", "list", "-o", "json")
	tr.step(exitUsage, "", "node", "register", "worker-3", "--data", `[1]`)
	tr.check("txn_nodes")
}

// statusRows runs status -o json and decodes it.
func statusRows(t *testing.T) ([]endpointStatus, cliResult) {
	t.Helper()
	r := runCLI(context.Background(), "", "status", "-o", "json")
	var res statusResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("status -o json: %v: %q (stderr %q)", err, r.stdout, r.stderr)
	}
	return res.Endpoints, r
}

// waitStatus waits until every endpoint names leader and every node is
// healthy.
func waitStatus(t *testing.T, leader string) {
	t.Helper()
	testwait.For(t, 20*time.Second, "every endpoint reports leader "+leader+" and health", func() bool {
		rows, r := statusRows(t)
		if r.code != 0 {
			return false
		}
		for _, row := range rows {
			if row.LeaderID != leader || row.Health != "healthy" || row.IsLeader != (row.NodeID == leader) {
				return false
			}
		}
		return true
	})
}

// statusJSONNumbers matches the raft counters of a status, which
// elections and heartbeats move: term, commit, applied and snapshot index.
var statusJSONNumbers = regexp.MustCompile(`"(term|commitIndex|appliedIndex|snapshotIndex)": [0-9]+`)

// normaliseStatus replaces the raft counters of a status with N.
func normaliseStatus(s string) string {
	s = statusJSONNumbers.ReplaceAllString(s, `"$1": N`)
	return realign(s, func(cells []string) {
		if len(cells) == 8 {
			cells[4], cells[5], cells[6] = "N", "N", "N"
		}
	})
}

// TestCLICluster transfers leadership and sees it in status; adds a
// member that never starts (it stays a learner), promotes and removes
// it; and checks not-found answers and an unreachable endpoint.
func TestCLICluster(t *testing.T) {
	tc := startTestCluster(t)
	n4Peer, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	n4HTTP, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	tr := newTranscript(t, tc, n4Peer, "<n4-peer>", n4HTTP, "<n4-http>")
	testwait.For(t, 20*time.Second, "a leader", func() bool {
		rows, r := statusRows(t)
		return r.code == 0 && rows[0].LeaderID != ""
	})

	tr.step(exitOK, "", "leader", "transfer", "n1")
	waitStatus(t, "n1")
	testwait.For(t, 20*time.Second, "every member advertises its HTTP address", func() bool {
		r := runCLI(context.Background(), "", "member", "list", "-o", "json")
		var res membersResult
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil {
			return false
		}
		for _, m := range res.Members {
			if m.HTTPAddr == "" {
				return false
			}
		}
		return len(res.Members) == 3
	})
	tr.norm = normaliseStatus
	tr.step(exitOK, "", "status")
	tr.norm = normaliseStatus
	tr.step(exitOK, "", "status", "-o", "json")

	tr.step(exitOK, "", "member", "list")
	tr.step(exitOK, "", "member", "add", "n4", "--peer-addr", n4Peer, "--http-addr", n4HTTP)
	tr.step(exitOK, "", "member", "list", "-o", "json")
	tr.step(exitOK, "", "member", "promote", "n4")
	tr.step(exitOK, "", "member", "list")
	tr.step(exitOK, "", "member", "remove", "n4", "-o", "json")
	tr.step(exitOK, "", "member", "list")
	tr.step(exitNotFound, "", "member", "promote", "nobody")
	tr.step(exitNotFound, "", "member", "remove", "nobody")
	tr.step(exitUsage, "", "member", "add", "n5")

	tr.step(exitOK, "", "leader", "transfer", "n2", "-o", "json")
	waitStatus(t, "n2")
	tr.norm = normaliseStatus
	tr.step(exitOK, "", "status")
	tr.check("cluster")

	// Without a target the leader picks a voter: leadership moves.
	r := runCLI(context.Background(), "", "leader", "transfer", "-o", "json")
	var moved struct {
		LeaderID string `json:"leaderId"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &moved); r.code != 0 || err != nil || moved.LeaderID == "" || moved.LeaderID == "n2" {
		t.Fatalf("leader transfer without target: exit %d, %q, %v; stderr %q", r.code, r.stdout, err, r.stderr)
	}

	// An endpoint that does not answer gets its own row, and exit 1.
	dead, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(envEndpoints, strings.Join(append(tc.HTTPAddrs, dead), ","))
	rows, r := statusRows(t)
	checkOneLine(t, []string{"status"}, r)
	if r.code != exitFailure || len(rows) != 4 || rows[3].Endpoint != dead || rows[3].Error == "" ||
		rows[0].Error != "" || rows[0].NodeID != "n1" || !strings.Contains(r.stderr, "1 of 4 endpoints") {
		t.Fatalf("status with a dead endpoint: exit %d %+v stderr %q", r.code, rows, r.stderr)
	}
}

// watchCLI runs kv watch in the background; opened delivers the start
// revision once its stream is open, done the result when it ends.
func watchCLI(ctx context.Context, args ...string) (opened chan int64, done chan cliResult) {
	opened, done = make(chan int64, 1), make(chan cliResult, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		env := cliEnv{watchOpened: func(rev int64) { opened <- rev }}
		code := execute(ctx, append([]string{"kv", "watch"}, args...), &stdout, &stderr, env)
		done <- cliResult{stdout.String(), stderr.String(), code}
	}()
	return opened, done
}

// awaitWatch waits for a background watch to open (or end early).
func awaitWatch(t *testing.T, opened chan int64, done chan cliResult) int64 {
	t.Helper()
	select {
	case rev := <-opened:
		return rev
	case r := <-done:
		t.Fatalf("watch ended before it opened: exit %d: %s", r.code, r.stderr)
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not open")
	}
	return 0
}

func awaitDone(t *testing.T, done chan cliResult) cliResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not end")
	}
	return cliResult{}
}

// TestCLIWatch checks that kv watch --count 2 prints exactly the two
// matching writes made after it started and exits 0; that --from-revision
// replays history in table form; and that cancelling (Ctrl-C) ends a
// watch cleanly.
func TestCLIWatch(t *testing.T) {
	tc := startTestCluster(t)
	t.Setenv(envEndpoints, strings.Join(tc.HTTPAddrs, ","))
	mustRun := func(args ...string) {
		t.Helper()
		if r := runCLI(context.Background(), "", args...); r.code != 0 {
			t.Fatalf("%q: exit %d: %s", args, r.code, r.stderr)
		}
	}
	mustRun("kv", "put", "jobs/before", "0") // revision 1: before the watch, not seen

	opened, done := watchCLI(context.Background(), "jobs/", "--count", "2", "-o", "json")
	if start := awaitWatch(t, opened, done); start != 2 {
		t.Fatalf("watch starts at revision %d, want 2", start)
	}
	mustRun("kv", "put", "jobs/a", `{"n":1}`) // 2
	mustRun("kv", "put", "other", "1")        // 3: not under the prefix
	mustRun("kv", "del", "jobs/before")       // 4
	mustRun("kv", "put", "jobs/b", "2")       // 5: past --count
	r := awaitDone(t, done)
	want := `{"type":"put","key":"jobs/a","value":{"n":1},"revision":2,"createRevision":2,"version":1}
{"type":"delete","key":"jobs/before","revision":4}
`
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Fatalf("watch --count 2: exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}

	// History from revision 3, table form, every key.
	opened, done = watchCLI(context.Background(), "--from-revision", "3", "--count", "3")
	awaitWatch(t, opened, done)
	r = awaitDone(t, done)
	if want := "3 put other 1\n4 delete jobs/before\n5 put jobs/b 2\n"; r.code != 0 || r.stdout != want {
		t.Fatalf("watch --from-revision 3: exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}

	// Ctrl-C (the context ending) while waiting for events: exit 0, quiet.
	ctx, cancel := context.WithCancel(context.Background())
	opened, done = watchCLI(ctx, "nothing/")
	awaitWatch(t, opened, done)
	cancel()
	if r := awaitDone(t, done); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("cancelled watch: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestCLIExitCodes checks the exit codes of usage errors, an unreachable
// endpoint and help, and that every failure is one line on stderr.
func TestCLIExitCodes(t *testing.T) {
	dead, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(envEndpoints, dead)
	t.Setenv(envToken, "")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("# comment\nsecret rw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args   []string
		code   int
		stderr string // a part of the one line
	}{
		{[]string{"nope"}, exitUsage, `unknown command "nope"`},
		{[]string{"kv"}, exitUsage, "kv: missing subcommand"},
		{[]string{"kv", "frobnicate"}, exitUsage, `unknown subcommand "frobnicate"`},
		{[]string{"kv", "put", "a"}, exitUsage, "want 2 argument(s) (KEY VALUE), got 1"},
		{[]string{"kv", "put", "a", "1", "--file", "x"}, exitUsage, "want 1 argument(s)"},
		{[]string{"kv", "put", "a", "1", "--if-revision", "0"}, exitUsage, "--if-revision 0"},
		{[]string{"kv", "put", "a", "1", "--if-revision", "2", "--if-absent"}, exitUsage, "if-absent"},
		{[]string{"kv", "put", "a", "{"}, exitUsage, "VALUE is not JSON"},
		{[]string{"kv", "put", "a", "-"}, exitUsage, "VALUE is not JSON"}, // empty stdin
		{[]string{"kv", "put", "a", "--file", "/nonexistent/v.json"}, exitUsage, "--file"},
		{[]string{"kv", "get", "a", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"kv", "get", "a", "--consistency", "eventual"}, exitUsage, `--consistency "eventual"`},
		{[]string{"kv", "get", "a", "b"}, exitUsage, "want 1 argument(s)"},
		{[]string{"kv", "get", "a", "-o", "yaml"}, exitUsage, `--output "yaml"`},
		{[]string{"kv", "get", "a", "--timeout", "0s"}, exitUsage, "--timeout"},
		{[]string{"kv", "get", "a", "--endpoints", " , "}, exitUsage, "no endpoint"},
		{[]string{"kv", "get", "a", "--endpoints", "ftp://x:1"}, exitUsage, "scheme"},
		{[]string{"kv", "get", "a", "--token", "t", "--token-file", tokenFile}, exitUsage, "token"},
		{[]string{"kv", "get", "a", "--token-file", "/nonexistent"}, exitUsage, "--token-file"},
		{[]string{"kv", "get", "a", "--cacert", "/nonexistent"}, exitUsage, "--cacert"},
		{[]string{"kv", "watch", "--count", "-1"}, exitUsage, "negative"},
		{[]string{"member", "add", "n9"}, exitUsage, "--peer-addr is required"},
		{[]string{"leader", "transfer", "a", "b"}, exitUsage, "at most 1"},
		{[]string{"status", "extra"}, exitUsage, "want 0 argument(s)"},
		{[]string{"workflow", "update", "w"}, exitUsage, "--data is required"},
		{[]string{"kv", "get", "a"}, exitFailure, "unavailable"},
		{[]string{"kv", "put", "a", "1", "--token-file", tokenFile}, exitFailure, "unavailable"},
		{[]string{"member", "list"}, exitFailure, "unavailable"},
		{[]string{"status"}, exitFailure, "1 of 1 endpoints did not answer"},
		{[]string{"kv", "watch"}, exitFailure, "unavailable"},
	}
	for _, c := range cases {
		r := runCLI(context.Background(), "", c.args...)
		checkOneLine(t, c.args, r)
		if r.code != c.code || !strings.Contains(r.stderr, c.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", c.args, r.code, r.stderr, c.code, c.stderr)
		}
	}

	// No arguments: the usage on stderr, exit 2; help: on stdout, exit 0.
	if r := runCLI(context.Background(), "", []string{}...); r.code != exitUsage || !strings.Contains(r.stderr, "Exit codes:") {
		t.Errorf("no arguments: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, help := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		if r := runCLI(context.Background(), "", help...); r.code != 0 || !strings.Contains(r.stdout, "Exit codes:") ||
			!strings.Contains(r.stdout, "3  not found") || !strings.Contains(r.stdout, "consensus serve [flags]") {
			t.Errorf("%q: exit %d, stdout %q", help, r.code, r.stdout)
		}
	}
	if r := runCLI(context.Background(), "", "kv", "put", "--help"); r.code != 0 || !strings.Contains(r.stdout, "--if-revision") ||
		!strings.Contains(r.stdout, "--endpoints") {
		t.Errorf("kv put --help: exit %d, stdout %q", r.code, r.stdout)
	}
	for _, v := range [][]string{{"version"}, {"--version"}} {
		if r := runCLI(context.Background(), "", v...); r.code != 0 || r.stdout != "consensus "+version+"\n" {
			t.Errorf("%q: exit %d, stdout %q", v, r.code, r.stdout)
		}
	}
	// certs is a cobra command like the rest: double-dash help on
	// stdout, for `help certs` too, without the client commands' flags,
	// which it refuses.
	for _, h := range [][]string{{"certs", "--help"}, {"help", "certs"}} {
		if r := runCLI(context.Background(), "", h...); r.code != 0 || !strings.Contains(r.stdout, "--nodes string") ||
			!strings.Contains(r.stdout, `(default "n1,n2,n3")`) || strings.Contains(r.stdout, "--endpoints") || r.stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", h, r.code, r.stdout, r.stderr)
		}
	}
	certDir := t.TempDir()
	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"certs", "--nodes", ""}, exitUsage, "consensus: certs: --nodes names no node\n"},
		{[]string{"certs", "-nodes", "a"}, exitUsage, "consensus: certs: unknown shorthand flag: 'n' in -nodes"},
		{[]string{"certs", "--dir", certDir, "--token", "x"}, exitUsage, "consensus: certs: --token: not a flag of this command"},
		{[]string{"--endpoints", "x:1", "certs", "--dir", certDir}, exitUsage, "consensus: certs: --endpoints: not a flag of this command"},
		{[]string{"certs", "extra"}, exitUsage, "consensus: certs: want 0 argument(s)"},
		{[]string{"certs", "--dir", certDir, "--nodes", "a"}, exitOK, ""},
		{[]string{"certs", "--dir", certDir, "--nodes", "a"}, exitFailure, "consensus: certs: "},
	} {
		r := runCLI(context.Background(), "", c.args...)
		checkOneLine(t, c.args, r)
		if r.code != c.code || !strings.HasPrefix(r.stderr, c.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", c.args, r.code, r.stderr, c.code, c.stderr)
		}
	}
}

// TestCLITokenAndTLS runs the client commands against a cluster whose API
// is HTTPS with bearer tokens: --cacert, --token, --token-file and
// CONSENSUS_TOKEN reach every path (/v1/ws, the HTTP routes, the watch).
func TestCLITokenAndTLS(t *testing.T) {
	dir := t.TempDir()
	if err := certs.WriteDev(dir, []string{"n1", "n2", "n3"}); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokenFile, []byte("# the server's file works as --token-file too\nsecret rw\nreader ro\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := server.LoadTokens(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	tc := startTestCluster(t, func(cfg *server.Config) {
		id := cfg.Node.ID
		tlsCfg, err := certs.ServerConfig(filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem"), "")
		if err != nil {
			t.Fatal(err)
		}
		cfg.HTTPTLS = tlsCfg
		cfg.HTTP.Tokens = tokens
	})
	var endpoints []string
	for _, a := range tc.HTTPAddrs {
		endpoints = append(endpoints, "https://"+a)
	}
	t.Setenv(envEndpoints, strings.Join(endpoints, ","))
	t.Setenv(envToken, "")
	ca := filepath.Join(dir, "ca.pem")
	plain := strings.Join(tc.HTTPAddrs, ",")
	cases := []struct {
		env    string // CONSENSUS_TOKEN
		args   []string
		code   int
		output string // a part of stdout, or of stderr on failure
	}{
		{"", []string{"kv", "put", "k", "1", "--cacert", ca}, exitFailure, "unauthorized"},
		{"", []string{"kv", "put", "k", "1", "--token", "secret"}, exitFailure, "certificate"},
		{"", []string{"kv", "put", "k", "1", "--cacert", ca, "--token", "secret"}, exitOK, "OK revision 1"},
		{"", []string{"kv", "put", "k", "2", "--cacert", ca, "--token", "reader"}, exitFailure, "forbidden"},
		{"secret", []string{"kv", "put", "k", "2", "--cacert", ca}, exitOK, "OK revision 2"},
		{"reader", []string{"kv", "get", "k", "--cacert", ca, "--value-only"}, exitOK, "2\n"},
		{"wrong", []string{"kv", "get", "k", "--cacert", ca, "--token-file", tokenFile}, exitOK, "2\n"},
		{"", []string{"member", "list", "--cacert", ca, "--token-file", tokenFile}, exitOK, "n3  voter"},
		{"", []string{"status", "--cacert", ca, "--token", "reader"}, exitOK, "leader"},
		{"", []string{"workflow", "start", "w", "--cacert", ca, "--token", "secret"}, exitOK, "OK revision 3"},
		{"", []string{"kv", "watch", "--from-revision", "2", "--count", "1", "--cacert", ca, "--token", "reader"}, exitOK, "2 put k 2\n"},
		{"", []string{"kv", "watch", "--count", "1", "--cacert", ca}, exitFailure, "unauthorized"},
		// Plain HTTP to the HTTPS ports: said so, on every path.
		{"secret", []string{"kv", "get", "k", "--endpoints", plain}, exitFailure, `consensus: kv get "k": this endpoint speaks HTTPS: use https:// and --cacert`},
		{"secret", []string{"member", "list", "--endpoints", plain}, exitFailure, "consensus: member list: this endpoint speaks HTTPS: use https:// and --cacert"},
		{"secret", []string{"kv", "watch", "--endpoints", plain}, exitFailure, `consensus: kv watch "": this endpoint speaks HTTPS: use https:// and --cacert`},
		{"secret", []string{"status", "--endpoints", plain, "-o", "json"}, exitFailure, "3 of 3 endpoints did not answer"},
	}
	for _, c := range cases {
		t.Setenv(envToken, c.env)
		r := runCLI(context.Background(), "", c.args...)
		checkOneLine(t, c.args, r)
		out := r.stdout
		if c.code != 0 {
			out = r.stderr
		}
		if r.code != c.code || !strings.Contains(out, c.output) {
			t.Errorf("CONSENSUS_TOKEN=%q %q: exit %d, stdout %q, stderr %q; want exit %d and %q",
				c.env, c.args, r.code, r.stdout, r.stderr, c.code, c.output)
		}
		if strings.Contains(r.stdout, "Bad Request") {
			t.Errorf("%q: %s", c.args, r.stdout)
		}
	}
	// status gives every row the same words.
	t.Setenv(envToken, "secret")
	t.Setenv(envEndpoints, plain)
	rows, r := statusRows(t)
	if r.code != exitFailure || len(rows) != 3 {
		t.Fatalf("status over plain HTTP: exit %d, %+v", r.code, rows)
	}
	for _, row := range rows {
		if row.Error != "this endpoint speaks HTTPS: use https:// and --cacert" {
			t.Errorf("status row %s: %q", row.Endpoint, row.Error)
		}
	}
}

// TestCLIInput checks what the command line may not ask for and how the
// answers read (testdata/input.golden): a key, value or txn the server
// refuses is a usage error (exit 2) like one the CLI refuses itself; a key
// with a control character is refused before anything is sent; not-found
// answers name their object; a table shows unprintable keys quoted and
// cuts long values (saying so), which -o json shows whole.
func TestCLIInput(t *testing.T) {
	tc := startTestCluster(t)
	longKey := strings.Repeat("k", kv.DefaultMaxKeyBytes+1)
	tr := newTranscript(t, tc, longKey, "<1025 k>")
	tr.step(exitUsage, "", "kv", "put", longKey, "1")
	tr.step(exitUsage, "", "kv", "get", longKey)
	big := `"` + strings.Repeat("v", kv.DefaultMaxValueBytes) + `"`
	tr.step(exitUsage, big, "kv", "put", "big", "-")
	tr.step(exitUsage, `{"ops":[{"op":"put","key":"a","value":1},{"op":"put","key":"a","value":2}]}`, "kv", "txn")
	tr.step(exitNotFound, `{"ops":[{"op":"put","key":"a","value":1},{"op":"delete","key":"gone"}]}`, "kv", "txn")
	tr.step(exitOK, "", "kv", "put", "b", "2")
	tr.step(exitNotFound, `{"ops":[{"op":"delete","key":"b"},{"op":"delete","key":"gone"}]}`, "kv", "txn")
	tr.step(exitNotFound, "", "leader", "transfer", "nobody")

	// Control characters: refused before anything is sent.
	tr.step(exitUsage, "", "kv", "put", "a\nb", "1")
	tr.step(exitUsage, "", "kv", "get", "a\x00b")
	tr.step(exitUsage, "", "kv", "del", "tab\tkey")
	tr.step(exitUsage, "", "kv", "list", "\x1b[2J")
	tr.step(exitUsage, "", "kv", "watch", "p\r")
	tr.step(exitUsage, `{"ops":[{"op":"put","key":"ok","value":1},{"op":"put","key":"bad\u0007","value":1}]}`, "kv", "txn")

	// A key that is not a control character yet would break a line (a
	// line separator), a value with a newline in a string, a long value.
	tr.step(exitOK, "", "kv", "put", "line\u2028sep", `"x\ny"`)
	tr.step(exitOK, "", "kv", "put", "long", `"`+strings.Repeat("0123456789", 30)+`"`)
	tr.step(exitOK, "", "kv", "list")
	tr.step(exitOK, "", "kv", "get", "long")
	tr.step(exitOK, "", "kv", "list", "long", "-o", "json")
	tr.check("input")
}

// TestTableEscapes renders items and watch events that hold what a table
// cannot show as it is (data written before the server refused control
// characters in keys, or by a client that sent a value with raw newlines
// between its JSON tokens) and compares the output with
// testdata/escape.golden: one row per item, whatever the bytes.
func TestTableEscapes(t *testing.T) {
	items := []kv.Item{
		{Key: "plain", Value: []byte(`{"a": 1,` + "\n" + ` "b": [1, 2]}`), Revision: 1, CreateRevision: 1, Version: 1},
		{Key: "new\nline", Value: []byte(`1`), Revision: 2, CreateRevision: 2, Version: 1},
		{Key: "nul\x00byte", Value: []byte(`"tab\tin a string"`), Revision: 3, CreateRevision: 3, Version: 1},
		{Key: "tab\tkey", Value: []byte("not json\r\nat all"), Revision: 4, CreateRevision: 4, Version: 1},
		{Key: "esc\x1b[2Jclear", Value: []byte(`"\u001b[2J"`), Revision: 5, CreateRevision: 5, Version: 1},
		{Key: "bad\xffutf8", Value: []byte(`"` + strings.Repeat("é", 150) + `"`), Revision: 6, CreateRevision: 6, Version: 1},
		{Key: "café", Value: []byte(`"` + strings.Repeat("x", maxValueCell) + `"`), Revision: 7, CreateRevision: 7, Version: 1},
	}
	var out bytes.Buffer
	s := &session{cli: &cli{stdout: &out}}
	rows := make([][]string, len(items))
	for i, it := range items {
		rows[i] = itemRow(it)
	}
	if err := s.table(itemHeader, rows); err != nil {
		t.Fatal(err)
	}
	out.WriteString("\n")
	for _, it := range items {
		if err := s.printEvent(kv.Event{Type: kv.EventPut, Item: it}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.printEvent(kv.Event{Type: kv.EventDelete, Item: kv.Item{Key: "gone\n", Revision: 8}}); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if n := strings.Count(got, "\n"); n != len(items)+1+1+len(items)+1 {
		t.Errorf("%d lines, want one per row and event:\n%s", n, got)
	}
	for _, r := range got {
		if r != '\n' && !strconv.IsPrint(r) {
			t.Errorf("output holds %U:\n%s", r, got)
		}
	}
	path := filepath.Join("testdata", "escape.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run TestTableEscapes -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -run TestTableEscapes -update rewrites it)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

// TestCLIListLargerThanAFrame lists a prefix whose answer is many /v1/ws
// frames long (the servers' frames are cut to 64 KiB): every key comes
// out once, in order, as a table, as JSON and counted.
func TestCLIListLargerThanAFrame(t *testing.T) {
	tc := startTestCluster(t, func(c *server.Config) {
		c.HTTP.WSMaxFrameBytes = 64 << 10
		c.HTTP.MaxBodyBytes = 1 << 10
	})
	t.Setenv(envEndpoints, strings.Join(tc.HTTPAddrs, ","))
	t.Setenv(envToken, "")
	c, err := client.New(client.Config{Endpoints: tc.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 3000
	value := []byte(`"` + strings.Repeat("v", 90) + `"`)
	for b := 0; b < n; b += 500 {
		var ops []kv.Op
		for i := b; i < b+500; i++ {
			ops = append(ops, kv.Op{Type: kv.OpPut, Key: fmt.Sprintf("big/%05d", i), Value: value})
		}
		if _, err := c.Batch(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	r := runCLI(ctx, "", "kv", "list", "big/", "-o", "json")
	var out struct {
		Items    []kv.Item `json:"items"`
		Revision int64     `json:"revision"`
		More     bool      `json:"more"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); r.code != 0 || err != nil {
		t.Fatalf("exit %d, %v: %.300s %s", r.code, err, r.stdout, r.stderr)
	}
	if len(out.Items) != n || out.More || out.Revision == 0 {
		t.Fatalf("listed %d items (more %v)", len(out.Items), out.More)
	}
	for i, it := range out.Items {
		if it.Key != fmt.Sprintf("big/%05d", i) {
			t.Fatalf("item %d is %q", i, it.Key)
		}
	}
	r = runCLI(ctx, "", "kv", "list", "big/")
	if lines := strings.Count(r.stdout, "\n"); r.code != 0 || lines != n+1 {
		t.Fatalf("table: exit %d, %d lines, want %d", r.code, lines, n+1)
	}
	r = runCLI(ctx, "", "kv", "list", "big/", "--keys-only")
	if lines := strings.Count(r.stdout, "\n"); r.code != 0 || lines != n {
		t.Fatalf("keys: exit %d, %d lines, want %d", r.code, lines, n)
	}
	r = runCLI(ctx, "", "kv", "list", "big/", "--count")
	if r.code != 0 || r.stdout != fmt.Sprintf("%d\n", n) {
		t.Fatalf("count: exit %d, %q", r.code, r.stdout)
	}
}
