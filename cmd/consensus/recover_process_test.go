package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// indexes returns id's commit and applied index from /v1/status.
func (pc *procCluster) indexes(id string) (commit, applied uint64, ok bool) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + pc.https[id] + "/v1/status")
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	var st struct {
		CommitIndex  uint64 `json:"commitIndex"`
		AppliedIndex uint64 `json:"appliedIndex"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return 0, 0, false
	}
	return st.CommitIndex, st.AppliedIndex, true
}

// startJoin starts a new node id that joins the cluster through the
// member whose HTTP address is via, with an empty data directory.
func (pc *procCluster) startJoin(id, via string) {
	pc.t.Helper()
	if _, ok := pc.peers[id]; !ok {
		pc.peers[id], pc.https[id] = freeAddr(pc.t), freeAddr(pc.t)
		pc.ids = append(pc.ids, id)
		pc.logs[id] = &bytes.Buffer{}
	}
	cmd := exec.Command(pc.bin, "serve", "--id", id, "--listen", pc.peers[id], "--http", pc.https[id],
		"--join", via, "--data", filepath.Join(pc.root, id))
	cmd.Stdout, cmd.Stderr = pc.logs[id], pc.logs[id]
	if err := cmd.Start(); err != nil {
		pc.t.Fatalf("start %s: %v", id, err)
	}
	pc.procs[id] = cmd
}

// waitVoters waits until on lists every one of ids as a voter.
func (pc *procCluster) waitVoters(on string, ids ...string) {
	pc.t.Helper()
	c := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		voters := map[string]bool{}
		if resp, err := c.Get("http://" + pc.https[on] + "/v1/members"); err == nil {
			var mr struct {
				Members []struct {
					ID    string `json:"id"`
					Voter bool   `json:"voter"`
				} `json:"members"`
			}
			if json.NewDecoder(resp.Body).Decode(&mr) == nil {
				for _, m := range mr.Members {
					voters[m.ID] = m.Voter
				}
			}
			resp.Body.Close()
		}
		all := true
		for _, id := range ids {
			all = all && voters[id]
		}
		if all {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	pc.t.Fatalf("%v not all voters on %s within 30s", ids, on)
}

// runRecover runs the binary's recover command and returns its combined
// output and exit code.
func (pc *procCluster) runRecover(args ...string) (string, int) {
	pc.t.Helper()
	out, err := exec.Command(pc.bin, append([]string{"recover"}, args...)...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	pc.t.Fatalf("recover: %v", err)
	return "", 0
}

var (
	lastIndexLine   = regexp.MustCompile(`(?m)^last index: +([0-9]+) \(term ([0-9]+)\)$`)
	commitIndexLine = regexp.MustCompile(`(?m)^commit index: +([0-9]+) \(term [0-9]+\)$`)
)

// TestProcessRecoverLostQuorum: a 5-node cluster of real processes takes
// writes, one member (B) is killed part way; then the leader and two more
// are kill -9ed for good, and B comes back: the two survivors (A, B)
// cannot elect. recover refuses A's directory while A runs; without --yes
// it changes neither directory and prints each survivor's commit and last
// index, by which A (which saw every write) is picked. A is recovered
// with --yes, started alone, writes resume, and the cluster grows back to
// three with --join (B with its data directory wiped, and a new node n6):
// every write acknowledged before the loss is on all three.
//
// stopped: the survivors are stopped with SIGTERM, as an operator would,
// and recovered by default (the tail past the commit index dropped).
// crashed: the survivors are killed with kill -9 too, so A's stored
// commit index may be behind what it applied, and A is recovered with
// --keep-tail, which keeps every entry it has.
func TestProcessRecoverLostQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	t.Run("stopped", func(t *testing.T) { testRecoverLostQuorum(t, bin, false) })
	t.Run("crashed", func(t *testing.T) { testRecoverLostQuorum(t, bin, true) })
}

func testRecoverLostQuorum(t *testing.T, bin string, crash bool) {
	pc := newProcCluster(t, bin, 5)
	pc.startAll()
	leader := pc.waitLeader()
	var others []string
	for _, id := range pc.ids {
		if id != leader {
			others = append(others, id)
		}
	}
	a, b := others[0], others[1]
	doomed := []string{leader, others[2], others[3]}
	t.Logf("leader %s; survivors %s and %s; lost for good: %v", leader, a, b, doomed)

	var mu sync.Mutex
	acked := map[string]string{}
	write := func(round string, n int) {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 4 {
					key, val := fmt.Sprintf("k/%s/%d", round, i), fmt.Sprintf(`"%s-%d"`, round, i)
					if pc.put(key, val, 10*time.Second) {
						mu.Lock()
						acked[key] = val
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
	}
	write("all5", 60)
	t.Logf("kill -9 %s (a survivor, behind from now on)", b)
	pc.kill(b)
	write("four", 60)
	if len(acked) != 120 {
		t.Fatalf("%d of 120 writes acknowledged with a quorum up", len(acked))
	}
	// A holds every commit before the loss: wait (bounded) until it has
	// applied the highest commit index of the running nodes (the
	// leader's, whichever node leads now), which covers every
	// acknowledged write. (Without this, A might not yet know the last
	// commits: see docs/OPERATIONS.md.)
	var leaderCommit uint64
	for id := range pc.procs {
		commit, _, ok := pc.indexes(id)
		if !ok {
			t.Fatalf("no status from %s", id)
		}
		leaderCommit = max(leaderCommit, commit)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, applied, ok := pc.indexes(a); ok && applied >= leaderCommit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not apply the leader's commit index %d within 20s", a, leaderCommit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range doomed {
		pc.kill(id)
	}
	pc.start(b)
	t.Logf("kill -9 %v for good; %s restarted: survivors %s, %s", doomed, b, a, b)

	// No quorum: a write through either survivor fails.
	c := &http.Client{Timeout: 3 * time.Second}
	for _, id := range []string{a, b} {
		pc.waitHTTP(id)
		if out, msg := tryPut(c, pc.https[id], "k/noquorum", `"x"`); out == writeOK {
			t.Fatalf("write through %s succeeded without a quorum: %s", id, msg)
		}
	}

	dir := func(id string) string { return filepath.Join(pc.root, id) }
	out, code := pc.runRecover("--data", dir(a), "--id", a, "--yes")
	if code != exitFailure || !strings.Contains(out, "in use by a running node") {
		t.Fatalf("recover of a running node's directory: exit %d: %s", code, out)
	}
	// The operator stops the survivors, or they crash (a crashed
	// survivor may have stored a commit index behind what it applied:
	// docs/OPERATIONS.md).
	for _, id := range []string{a, b} {
		if crash {
			pc.kill(id)
			continue
		}
		_ = pc.procs[id].Process.Signal(syscall.SIGTERM)
		if err := pc.waitExit(id, 15*time.Second); err != nil {
			t.Logf("stop %s: %v", id, err)
		}
	}

	// The pick of docs/OPERATIONS.md: the highest commit index, then the
	// highest last term, then last index.
	type position struct{ commit, term, index uint64 }
	lasts := map[string]position{}
	for _, id := range []string{a, b} {
		before := dirChecksum(t, dir(id))
		out, code := pc.runRecover("--data", dir(id), "--id", id)
		if code != exitUsage || !strings.Contains(out, "nothing changed") {
			t.Fatalf("recover %s without --yes: exit %d: %s", id, code, out)
		}
		if dirChecksum(t, dir(id)) != before {
			t.Fatalf("recover %s without --yes changed its directory", id)
		}
		m, c := lastIndexLine.FindStringSubmatch(out), commitIndexLine.FindStringSubmatch(out)
		if m == nil || c == nil {
			t.Fatalf("no last or commit index in %s's plan:\n%s", id, out)
		}
		index, _ := strconv.ParseUint(m[1], 10, 64)
		term, _ := strconv.ParseUint(m[2], 10, 64)
		commit, _ := strconv.ParseUint(c[1], 10, 64)
		lasts[id] = position{commit, term, index}
		t.Logf("plan for %s:\n%s", id, out)
	}
	best := a
	if l, m := lasts[b], lasts[a]; l.commit > m.commit || (l.commit == m.commit && (l.term > m.term || (l.term == m.term && l.index > m.index))) {
		best = b
	}
	if best != a {
		t.Fatalf("commit, last term and last index: %s %+v, %s %+v: %s, which missed the writes after it was killed, looks the most up to date", a, lasts[a], b, lasts[b], b)
	}
	args := []string{"--data", dir(a), "--id", a, "--yes"}
	if crash {
		args = append(args, "--keep-tail")
	}
	start := time.Now()
	out, code = pc.runRecover(args...)
	if code != 0 {
		t.Fatalf("recover %s: exit %d: %s", a, code, out)
	}
	t.Logf("recover --yes took %v:\n%s", time.Since(start).Round(time.Millisecond), out)

	pc.start(a) // its stored membership (itself alone) wins over --peers
	pc.waitReady(a)
	got := pc.list(a)
	kept := 0
	for k, v := range acked {
		if got[k] == v {
			kept++
		} else {
			t.Errorf("acknowledged %s = %s lost by the recovery (%s has %q)", k, v, a, got[k])
		}
	}
	t.Logf("writes acknowledged before the loss: %d; kept by the recovered %s: %d; lost: %d (%s: commit index %d, last index %d)",
		len(acked), a, kept, len(acked)-kept, a, lasts[a].commit, lasts[a].index)
	if out, msg := tryPut(c, pc.https[a], "k/after", `"after"`); out != writeOK {
		t.Fatalf("write on the recovered %s: %s", a, msg)
	}
	acked["k/after"] = `"after"`

	// Grow back to three: B with its old directory wiped, and a new node.
	if err := os.RemoveAll(dir(b)); err != nil {
		t.Fatal(err)
	}
	pc.startJoin(b, pc.https[a])
	pc.waitVoters(a, b)
	pc.startJoin("n6", pc.https[a])
	pc.waitVoters(a, b, "n6")
	for _, id := range []string{a, b, "n6"} {
		got := pc.list(id)
		for k, v := range acked {
			if got[k] != v {
				t.Errorf("%s: acknowledged %s = %s is %q", id, k, v, got[k])
			}
		}
	}
}

// waitHTTP waits until id answers /v1/status.
func (pc *procCluster) waitHTTP(id string) {
	pc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, ok := pc.indexes(id); ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	pc.t.Fatalf("%s does not answer /v1/status within 20s", id)
}
