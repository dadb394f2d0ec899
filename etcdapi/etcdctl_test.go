package etcdapi_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/testwait"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// buildEtcdctl builds the real etcdctl (internal/etcdctl, a module of its
// own: a two-line main calling ctlv3.MustStart) into a temporary
// directory.
func buildEtcdctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "etcdctl")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join("..", "internal", "etcdctl")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build etcdctl: %v\n%s", err, out)
	}
	return bin
}

// lockedBuffer is a bytes.Buffer a process writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// transcript runs etcdctl commands and records what they print, with
// what varies from run to run (addresses, lease ids, timings) replaced by
// placeholders.
type transcript struct {
	t     *testing.T
	bin   string
	eps   []string
	out   strings.Builder
	lease string // the last lease granted, as etcdctl prints it
}

func (tr *transcript) normalize(s string) string {
	for i, ep := range tr.eps {
		s = strings.ReplaceAll(s, ep, fmt.Sprintf("EP%d", i+1))
	}
	if tr.lease != "" {
		s = strings.ReplaceAll(s, tr.lease, "LEASE")
	}
	s = regexp.MustCompile(`took = [0-9.]+[µnm]?s`).ReplaceAllString(s, "took = T")
	s = regexp.MustCompile(`remaining\(\d+s\)`).ReplaceAllString(s, "remaining(Ns)")
	s = regexp.MustCompile(`http://127\.0\.0\.1:\d+`).ReplaceAllString(s, "http://PEER")
	// etcdctl prints the cluster id with %16x: fewer than 16 digits (one
	// id in 16) come with leading spaces.
	s = regexp.MustCompile(`cluster +[0-9a-f]{1,16}\b`).ReplaceAllString(s, "cluster CLUSTER")
	s = regexp.MustCompile(`myelection/[0-9a-f]+`).ReplaceAllString(s, "myelection/LEASE")
	s = regexp.MustCompile(`"(ClusterID|MemberID|RaftTerm)" : \d+`).ReplaceAllString(s, `"$1" : N`)
	// clientv3's retry warnings carry times and ports.
	s = regexp.MustCompile(`(?m)^\{"level":"warn".*\n`).ReplaceAllString(s, "")
	return s
}

// run runs etcdctl with args against every endpoint (or the endpoints
// given with --endpoints in args), stdin from stdin, and records it.
func (tr *transcript) run(stdin string, args ...string) string {
	tr.t.Helper()
	stdout, stderr, code := tr.exec(stdin, args...)
	tr.record(args, stdout, stderr, code)
	return stdout
}

// exec runs etcdctl as run does, without recording it.
func (tr *transcript) exec(stdin string, args ...string) (string, string, int) {
	tr.t.Helper()
	full := append([]string{"--command-timeout=15s"}, args...)
	if !strings.HasPrefix(args[0], "--endpoints=") {
		full = append([]string{"--endpoints=" + strings.Join(tr.eps, ",")}, full...)
	}
	cmd := exec.Command(tr.bin, full...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			tr.t.Fatalf("etcdctl %q: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

func (tr *transcript) record(args []string, stdout, stderr string, code int) {
	fmt.Fprintf(&tr.out, "$ etcdctl %s\n%s", tr.normalize(strings.Join(args, " ")), tr.normalize(stdout))
	if stderr != "" {
		fmt.Fprintf(&tr.out, "[stderr] %s", tr.normalize(stderr))
	}
	if code != 0 {
		fmt.Fprintf(&tr.out, "[exit %d]\n", code)
	}
	tr.out.WriteString("\n")
}

// background runs a command that does not end by itself (watch, elect)
// until its output contains until, then stops it and records it.
func (tr *transcript) background(until string, args ...string) *exec.Cmd {
	tr.t.Helper()
	full := append([]string{"--endpoints=" + strings.Join(tr.eps, ",")}, args...)
	cmd := exec.Command(tr.bin, full...)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		tr.t.Fatal(err)
	}
	tr.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	testwait.For(tr.t, 20*time.Second, fmt.Sprintf("etcdctl %q prints %q (stdout %q, stderr %q)", args, until, stdout.String(), stderr.String()),
		func() bool { return strings.Contains(stdout.String(), until) })
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	tr.record(args, stdout.String(), stderr.String(), 0)
	return cmd
}

// TestEtcdctl runs the real etcdctl against a 3-node cluster and compares
// its transcript with testdata/etcdctl.txt (-update rewrites it).
func TestEtcdctl(t *testing.T) {
	if testing.Short() {
		t.Skip("builds etcdctl")
	}
	bin := buildEtcdctl(t)
	c, eps := fixedEtcdCluster(t, 3)
	c.WaitLeader(t, 10*time.Second)
	tr := &transcript{t: t, bin: bin, eps: eps}

	tr.run("", "put", "foo", "bar")
	tr.run("", "put", "foo/a", "1")
	tr.run("", "put", "foo/b", `{"json":true}`)
	tr.run("", "put", "foo/c", "3", "--prev-kv")
	tr.run("", "put", "foo/c", "three", "--prev-kv")
	tr.run("", "get", "foo")
	tr.run("", "get", "foo/", "--prefix")
	tr.run("", "get", "foo/", "--prefix", "--limit=2")
	tr.run("", "get", "foo/", "--prefix", "--sort-by=MODIFY", "--order=DESCEND")
	tr.run("", "get", "foo/", "--prefix", "--keys-only")
	tr.run("", "get", "foo/", "--prefix", "--count-only", "--write-out=fields")
	tr.run("", "get", "foo", "--rev=5")
	tr.run("", "get", "foo", "--rev=1")
	tr.run("", "get", "foo/", "--prefix", "--rev=4")
	tr.run("", "get", "", "--from-key", "--print-value-only")
	tr.run("", "del", "foo/a")
	tr.run("value(\"foo\") = \"bar\"\n\nput foo txn-yes\nget foo/c\n\nput foo txn-no\n\n", "txn", "-i")
	tr.run("mod(\"foo\") < \"2\"\n\nput foo never\n\ndel foo/ --prefix --prev-kv\n\n", "txn", "-i")
	tr.run("", "get", "", "--from-key")
	tr.background("DELETE\nfoo/c\n", "watch", "foo", "--prefix", "--rev=1")
	tr.background("foo\nbar\nfoo\ntxn-yes\n", "watch", "foo", "--prev-kv", "--rev=1")

	grant, stderr, code := tr.exec("", "lease", "grant", "60")
	if m := regexp.MustCompile(`lease ([0-9a-f]+) granted`).FindStringSubmatch(grant); m != nil {
		tr.lease = m[1]
	} else {
		t.Fatalf("lease grant printed %q", grant)
	}
	tr.record([]string{"lease", "grant", "60"}, grant, stderr, code)
	tr.run("", "put", "leased", "x", "--lease="+tr.lease)
	tr.run("", "lease", "timetolive", tr.lease, "--keys")
	tr.run("", "lease", "keep-alive", "--once", tr.lease)
	tr.run("", "lease", "list")
	tr.run("", "lease", "revoke", tr.lease)
	tr.run("", "get", "leased")
	tr.lease = ""
	tr.run("", "lease", "timetolive", "1234abcd")

	tr.run("", "lock", "mylock", "--", "echo", "held the lock")
	tr.background("proposal\n", "elect", "myelection", "proposal")

	tr.run("", "--endpoints="+eps[0], "member", "list")
	// A member added by name (the peer URL's user) and never started
	// (nothing listens at 127.0.0.2:7, an address the placeholders leave
	// alone), listed, refused a second time at its URL, moved to port 8,
	// and removed by the id the add printed.
	n4 := fmt.Sprintf("%x", consensus.RaftID("n4"))
	tr.run("", "member", "add", "n4", "--peer-urls=http://n4@127.0.0.2:7")
	tr.run("", "--endpoints="+eps[0], "member", "list")
	tr.run("", "member", "add", "n5", "--peer-urls=http://n5@127.0.0.2:7", "--learner")
	tr.run("", "member", "update", n4, "--peer-urls=http://n4@127.0.0.2:8")
	tr.run("", "--endpoints="+eps[0], "member", "list")
	tr.run("", "member", "remove", n4)
	// Health checks run at once: their lines in order of endpoint.
	health, stderr, code := tr.exec("", "endpoint", "health")
	lines := strings.Split(strings.TrimSpace(tr.normalize(health)), "\n")
	slices.Sort(lines)
	tr.record([]string{"endpoint", "health"}, strings.Join(lines, "\n")+"\n", stderr, code)
	status := tr.run("", "endpoint", "status", "--write-out=simple")
	if n := strings.Count(status, ", 3.7.3, "); n != 3 {
		t.Errorf("endpoint status names version 3.7.3 %d times, want 3:\n%s", n, status)
	}
	if n := strings.Count(status, ", true, false, "); n != 1 {
		t.Errorf("endpoint status shows %d leaders, want 1:\n%s", n, status)
	}
	tr.run("", "endpoint", "hashkv", "--rev=5")
	tr.run("", "compaction", "1")
	tr.run("", "compaction", "5")
	tr.run("", "get", "foo", "--rev=4")
	tr.run("", "get", "foo", "--rev=5")
	tr.run("", "compaction", "5")
	tr.run("", "compaction", "1000")

	got := tr.out.String()
	// The endpoint status lines carry sizes, terms and indexes: keep them
	// out of the golden file.
	got = regexp.MustCompile(`(?m)^(\$ etcdctl endpoint status --write-out=simple\n)(?:EP\d.*\n)+`).ReplaceAllString(got, "$1(checked above)\n")
	path := filepath.Join("testdata", "etcdctl.txt")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestEtcdctl -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("transcript differs from %s (go test -run TestEtcdctl -update rewrites it)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}
