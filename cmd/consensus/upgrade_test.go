package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// upgradeDir holds the fixtures of earlier releases and PREVIOUS, the
// commit of the release before this one (testdata/upgrade/README.md).
const upgradeDir = "../../testdata/upgrade"

// TestUpgradeFixtures opens what each earlier release wrote with the
// current code: its data directory, started with `consensus serve`, and
// its backup, restored with `consensus snapshot restore` and started,
// must each answer every read of the release's expected.txt as that
// release did.
func TestUpgradeFixtures(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	releases, err := filepath.Glob(filepath.Join(upgradeDir, "*", "fixtures.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if len(releases) == 0 {
		t.Fatalf("no fixtures under %s (testdata/upgrade/README.md)", upgradeDir)
	}
	bin := buildBinary(t)
	for _, archive := range releases {
		dir := filepath.Dir(archive)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			reads := readExpected(t, filepath.Join(dir, "expected.txt"))
			root := t.TempDir()
			extractTarGz(t, archive, root)

			t.Run("data", func(t *testing.T) {
				addr := serveOne(t, bin, filepath.Join(root, "data"))
				// The node listens on new addresses and advertises them
				// to the membership (a conf change) soon after it starts:
				// whether a read sees the fixture's addresses or the new
				// ones is a race.
				checkReads(t, addr, reads, []string{"peerAddr", "httpAddr"})
			})
			t.Run("backup", func(t *testing.T) {
				backupFile := filepath.Join(root, "backup.cnsbak")
				if out, err := exec.Command(bin, "snapshot", "status", backupFile).CombinedOutput(); err != nil {
					t.Fatalf("snapshot status: %v\n%s", err, out)
				}
				data := filepath.Join(t.TempDir(), "restored")
				peer := freeAddr(t)
				restore := exec.Command(bin, "snapshot", "restore", backupFile, "--data", data, "--id", "n1", "--peers", "n1="+peer)
				if out, err := restore.CombinedOutput(); err != nil {
					t.Fatalf("snapshot restore: %v\n%s", err, out)
				}
				addr := serveOnePeer(t, bin, data, peer)
				// A restored cluster is a new one: its own id and addresses.
				checkReads(t, addr, reads, []string{"clusterId", "peerAddr", "httpAddr"})
			})
		})
	}
}

// expectedRead is one read of expected.txt: a path and the answer's JSON.
type expectedRead struct {
	path string
	want any
}

// readExpected parses expected.txt: "# comment" lines, then pairs of a
// "GET <path>" line and a line of JSON.
func readExpected(t *testing.T, file string) []expectedRead {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var reads []expectedRead
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		path, ok := strings.CutPrefix(line, "GET ")
		if !ok || !sc.Scan() {
			t.Fatalf("%s: want GET <path> and a line of JSON, got %q", file, line)
		}
		want, err := decodeJSONNumbers(sc.Bytes())
		if err != nil {
			t.Fatalf("%s: %s: %v", file, path, err)
		}
		reads = append(reads, expectedRead{path: path, want: changedOnPurpose(path, want)})
	}
	if err := sc.Err(); err != nil || len(reads) == 0 {
		t.Fatalf("%s: %d reads, error %v", file, len(reads), err)
	}
	return reads
}

// changedOnPurpose turns an answer a release gave into the answer the
// current code gives on purpose, for the changes CHANGELOG.md lists under
// "Fixed" since: a read that differs in any other way fails the test.
//
//   - GET /v1/kv (a list) gave an item's lease as a decimal number, every
//     other answer as a hexadecimal string; the list gives the string now.
func changedOnPurpose(path string, want any) any {
	if !strings.HasPrefix(path, "/v1/kv?") {
		return want
	}
	obj, _ := want.(map[string]any)
	items, _ := obj["items"].([]any)
	for _, it := range items {
		item, _ := it.(map[string]any)
		if n, ok := item["lease"].(json.Number); ok {
			if id, err := strconv.ParseUint(n.String(), 10, 64); err == nil {
				item["lease"] = strconv.FormatUint(id, 16)
			}
		}
	}
	return want
}

func decodeJSONNumbers(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// checkReads makes each read on the node at addr and compares the answer
// with the expected one (jsonCovers), ignoring remainingMs (a lease's
// countdown, which started again with the node) and the keys in ignore.
func checkReads(t *testing.T, addr string, reads []expectedRead, ignore []string) {
	t.Helper()
	ignore = append(ignore, "remainingMs")
	c := http.Client{Timeout: 5 * time.Second}
	for _, r := range reads {
		resp, err := c.Get("http://" + addr + r.path)
		if err != nil {
			t.Errorf("GET %s: %v", r.path, err)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d %s (%v)", r.path, resp.StatusCode, body, err)
			continue
		}
		got, err := decodeJSONNumbers(body)
		if err != nil {
			t.Errorf("GET %s: %v: %s", r.path, err, body)
			continue
		}
		if diff := jsonCovers(r.want, got, ignore, "$"); diff != "" {
			t.Errorf("GET %s: %s\n got: %s", r.path, diff, body)
		}
	}
}

// jsonCovers returns "" if got holds everything want holds: every key of
// an object (but those in ignore) with a covering value, arrays of the
// same length element by element, equal scalars. got may have keys want
// lacks: a newer release may answer with more fields. Otherwise it says
// where they differ.
func jsonCovers(want, got any, ignore []string, at string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: want an object, got %v", at, got)
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if slices.Contains(ignore, k) {
				continue
			}
			gv, ok := g[k]
			if !ok {
				return fmt.Sprintf("%s.%s: missing", at, k)
			}
			if d := jsonCovers(w[k], gv, ignore, at+"."+k); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: want %d elements, got %v", at, len(w), got)
		}
		for i := range w {
			if d := jsonCovers(w[i], g[i], ignore, fmt.Sprintf("%s[%d]", at, i)); d != "" {
				return d
			}
		}
		return ""
	default:
		if want != got {
			return fmt.Sprintf("%s: want %v, got %v", at, want, got)
		}
		return ""
	}
}

// serveOne runs `consensus serve` as the single member n1 on the data
// directory data (on free loopback ports) until the test ends, and
// returns its HTTP address once it is ready.
func serveOne(t *testing.T, bin, data string) string {
	return serveOnePeer(t, bin, data, freeAddr(t))
}

func serveOnePeer(t *testing.T, bin, data, peer string) string {
	t.Helper()
	addr := freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", "--id", "n1", "--listen", peer, "--http", addr,
		"--peers", "n1="+peer, "--data", data)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("serve exited with %v", err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("serve did not stop within 20s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("---- log of serve on %s ----\n%s", data, logs.String())
		}
	})
	c := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("serve exited before it was ready: %v\n%s", err, logs.String())
		default:
		}
		if resp, err := c.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("serve on %s not ready within 20s", data)
	return ""
}

// extractTarGz unpacks the regular files and directories of a .tar.gz
// into dir, refusing names that would leave it.
func extractTarGz(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := extractTar(zr, dir); err != nil {
		t.Fatalf("%s: %v", archive, err)
	}
}

func extractTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("entry %q leaves the directory", h.Name)
		}
		path := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// TestJSONCovers: the comparison TestUpgradeFixtures makes lets a newer
// release add fields, and nothing else.
func TestJSONCovers(t *testing.T) {
	cases := []struct {
		want, got string
		ok        bool
	}{
		{`{"a":1,"b":[1,"x",null]}`, `{"a":1,"b":[1,"x",null]}`, true},
		{`{"a":1}`, `{"a":1,"new":true}`, true},
		{`{"a":1,"remainingMs":5}`, `{"a":1,"remainingMs":9}`, true},
		{`{"a":1}`, `{"b":1}`, false},
		{`{"a":1}`, `{"a":1.0}`, false},
		{`{"a":"1"}`, `{"a":1}`, false},
		{`{"a":[1,2]}`, `{"a":[1]}`, false},
		{`{"a":[{"k":1}]}`, `{"a":[{"k":2}]}`, false},
		{`{"a":{"b":true}}`, `{"a":[]}`, false},
		{`null`, `{}`, false},
	}
	for _, c := range cases {
		want, err := decodeJSONNumbers([]byte(c.want))
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeJSONNumbers([]byte(c.got))
		if err != nil {
			t.Fatal(err)
		}
		if d := jsonCovers(want, got, []string{"remainingMs"}, "$"); (d == "") != c.ok {
			t.Errorf("jsonCovers(%s, %s) = %q, want ok %v", c.want, c.got, d, c.ok)
		}
	}
}

// previousRelease reads testdata/upgrade/PREVIOUS: "<commit> <name>".
func previousRelease(t *testing.T) (commit, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(upgradeDir, "PREVIOUS"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		t.Fatalf("%s/PREVIOUS: want \"<commit> <name>\", got %q", upgradeDir, b)
	}
	return f[0], f[1]
}

// buildPrevious builds the previous release's consensus from git history
// (git archive of its commit into a temporary directory) and returns the
// binary, which lives as long as the test's temporary directory. It fails,
// never skips, when the history is not there: a mixed-version test that
// quietly does not run would prove nothing.
func buildPrevious(t *testing.T) string {
	t.Helper()
	commit, name := previousRelease(t)
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = bytes.TrimSpace(ee.Stderr)
		}
		t.Fatalf("this test builds the previous release, %s (commit %s), from git history, but the source is not in a git checkout (git rev-parse: %v %s); run it in a git clone of the repository, or skip it with -short", name, commit, err, stderr)
	}
	repo := strings.TrimSpace(string(top))
	if out, err := exec.Command("git", "-C", repo, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		t.Fatalf("the previous release, %s, is commit %s (testdata/upgrade/PREVIOUS), which this clone does not have (%v %s); fetch the full history (git fetch --unshallow) or skip the test with -short", name, commit, err, bytes.TrimSpace(out))
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	archive := exec.Command("git", "-C", repo, "archive", "--format=tar", commit)
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	tarStream, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := archive.Start(); err != nil {
		t.Fatal(err)
	}
	extractErr := extractTar(tarStream, src)
	_, _ = io.Copy(io.Discard, tarStream)
	if err := archive.Wait(); err != nil || extractErr != nil {
		t.Fatalf("git archive %s: %v, extract: %v\n%s", commit, err, extractErr, stderr.String())
	}
	bin := filepath.Join(dir, "consensus-"+name)
	// Built like buildBinary's (no -trimpath), so the dependencies come
	// from the build cache that building this tree filled; only this
	// module's packages are compiled again, in the old tree.
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+name, "-o", bin, "./cmd/consensus")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of %s (%s): %v\n%s", name, commit, err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "consensus "+name {
		t.Fatalf("%s version: %q, %v", bin, out, err)
	}
	return bin
}

// TestUpgradeMixedVersion runs a 3-node cluster whose n1 is the previous
// release's binary (testdata/upgrade/PREVIOUS) and n2, n3 the current one,
// under writes from several clients through every node: leadership moves
// to the old node and back to a new one, then n1 is upgraded in place (a
// rolling upgrade: SIGTERM, the current binary on the same data
// directory). Every acknowledged write must be readable on every node after
// each step, and the nodes must end with the same state. Snapshots are
// taken on the way (--snapshot-threshold 100) by both versions.
//
// It uses only operations the previous release knows: a rolling upgrade
// keeps old and new nodes together only while no new operation is used
// (docs/OPERATIONS.md, "Upgrades").
func TestUpgradeMixedVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two releases and runs them")
	}
	start := time.Now()
	prevBin := buildPrevious(t)
	bin := buildBinary(t)
	t.Logf("built both binaries in %v", time.Since(start).Round(time.Millisecond))

	pc := newProcCluster(t, bin, 3)
	pc.bins["n1"] = prevBin
	pc.args = []string{"--snapshot-threshold", "100"}
	pc.startAll()
	pc.waitLeader()
	clusterUp := time.Now()

	// Writers: each puts its own keys through nodes it picks in turn; a
	// write that fails is retried, same key and value, through the next
	// node, and counts once one attempt is acknowledged.
	const writers = 4
	var (
		mu    sync.Mutex
		acked = map[string]string{}
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				key, val := fmt.Sprintf("k/w%d/%05d", w, i), fmt.Sprintf(`"%d-%d"`, w, i)
				for attempt := 0; ; attempt++ {
					select {
					case <-stop:
						return
					default:
					}
					if pc.putOn(pc.ids[(w+i+attempt)%len(pc.ids)], key, val) {
						mu.Lock()
						acked[key] = val
						mu.Unlock()
						break
					}
					time.Sleep(10 * time.Millisecond) // paces retries only
				}
			}
		}()
	}
	stopWriters := func() {
		if stop != nil {
			close(stop)
			wg.Wait()
			stop = nil
		}
	}
	defer stopWriters()
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	// progress waits until n more writes are acknowledged.
	progress := func(n int, what string) {
		t.Helper()
		target := ackedCount() + n
		deadline := time.Now().Add(20 * time.Second)
		for ackedCount() < target {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d writes acknowledged, want %d within 20s", what, ackedCount(), target)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// checkAcked reads every node (linearizably): each write acknowledged
	// before the read must be there.
	checkAcked := func(when string) {
		t.Helper()
		mu.Lock()
		want := maps.Clone(acked)
		mu.Unlock()
		for _, id := range pc.ids {
			got := pc.list(id)
			missing := 0
			for k, v := range want {
				if got[k] != v {
					if missing < 5 {
						t.Errorf("%s: node %s: %s = %q, want %q", when, id, k, got[k], v)
					}
					missing++
				}
			}
			if missing > 0 {
				t.Fatalf("%s: node %s lacks %d of %d acknowledged writes", when, id, missing, len(want))
			}
		}
		t.Logf("%s: %d acknowledged writes on every node", when, len(want))
	}

	progress(200, "mixed cluster")
	// Leadership to the old node: it proposes the writes, and a lease, a
	// leased key, a lock and a queue claim the new nodes must read.
	pc.transferLeader("n1")
	progress(200, "leader n1")
	claim := pc.coordinate("n1")
	pc.checkCoordination(claim, "leader n1")
	checkAcked("leader n1")
	// And back to a new one.
	pc.transferLeader("n2")
	progress(200, "leader n2")
	pc.checkCoordination(claim, "leader n2")
	checkAcked("leader n2")

	// The rolling upgrade of n1.
	if err := pc.procs["n1"].Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := pc.waitExit("n1", 20*time.Second); err != nil {
		t.Fatalf("n1: %v", err)
	}
	delete(pc.bins, "n1")
	pc.start("n1")
	pc.waitReady("n1")
	progress(200, "after the upgrade of n1")
	pc.transferLeader("n1")
	progress(200, "upgraded n1 leads")
	stopWriters()
	checkAcked("after the upgrade")
	pc.checkCoordination(claim, "after the upgrade")
	// The claim the old leader granted completes on the new code, and the
	// lease it granted is revoked with its key and lock.
	pc.mustCall("n3", http.MethodPost, "/v1/queues/jobs/tasks/t1/complete", fmt.Sprintf(`{"epoch":%s}`, claim.epoch))
	pc.mustCall("n3", http.MethodDelete, "/v1/leases/c1", "")
	for _, id := range pc.ids {
		if st, body := pc.call(id, http.MethodGet, "/v1/queues/jobs/tasks/t1", ""); st != http.StatusOK || !strings.Contains(string(body), `"state":"done"`) {
			t.Errorf("node %s: task t1: %d %s, want done", id, st, body)
		}
		if st, body := pc.call(id, http.MethodGet, "/v1/kv/leased", ""); st != http.StatusNotFound {
			t.Errorf("node %s: leased key after its lease's revoke: %d %s, want 404", id, st, body)
		}
	}

	// Same state everywhere: every key, not only the acknowledged ones
	// (a write whose answer was lost may be there too, on every node).
	first := pc.list(pc.ids[0])
	for _, id := range pc.ids[1:] {
		if got := pc.list(id); !maps.Equal(got, first) {
			t.Errorf("node %s holds %d keys, node %s %d, or other values", id, len(got), pc.ids[0], len(first))
		}
	}
	t.Logf("mixed-version cluster and rolling upgrade: %d writes acknowledged in %v (builds took %v)",
		ackedCount(), time.Since(clusterUp).Round(time.Millisecond), clusterUp.Sub(start).Round(time.Millisecond))
}

// transferLeader hands leadership to target, through the current leader,
// and waits until every running node agrees target leads.
func (pc *procCluster) transferLeader(target string) {
	pc.t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		leader := pc.waitLeader()
		if leader == target {
			return
		}
		resp, err := c.Post("http://"+pc.https[leader]+"/v1/leader/transfer?target="+target, "application/json", nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		time.Sleep(20 * time.Millisecond) // paces retries only
	}
	pc.t.Fatalf("leadership did not move to %s within 20s", target)
}

// coordinationState is what coordinate made: the lock's token and the
// claim's epoch, as JSON numbers.
type coordinationState struct {
	token, epoch string
}

// coordinate makes, through node id: lease c1 (1 h), the key "leased" on
// it, the lock "report" held by it, and task t1 of queue "jobs" claimed.
func (pc *procCluster) coordinate(id string) coordinationState {
	pc.t.Helper()
	pc.mustCall(id, http.MethodPost, "/v1/leases", `{"id":"c1","ttlMs":3600000}`)
	pc.mustCall(id, http.MethodPut, "/v1/kv/leased?lease=c1", `"on c1"`)
	lock := pc.mustCall(id, http.MethodPost, "/v1/locks/report", `{"lease":"c1","waitMs":0}`)
	pc.mustCall(id, http.MethodPost, "/v1/queues/jobs/tasks", `{"id":"t1","data":{"n":1}}`)
	claim := pc.mustCall(id, http.MethodPost, "/v1/queues/jobs/claim", `{"worker":"w1","ttlMs":3600000}`)
	var l struct{ Token json.Number }
	var c struct {
		Task  struct{ ID string }
		Epoch json.Number
	}
	if json.Unmarshal(lock, &l) != nil || json.Unmarshal(claim, &c) != nil || c.Task.ID != "t1" {
		pc.t.Fatalf("lock %s, claim %s", lock, claim)
	}
	return coordinationState{token: l.Token.String(), epoch: c.Epoch.String()}
}

// checkCoordination reads what coordinate made on every node.
func (pc *procCluster) checkCoordination(cs coordinationState, when string) {
	pc.t.Helper()
	for _, id := range pc.ids {
		want := map[string]string{
			"/v1/leases/c1":            `"keys":["leased"]`,
			"/v1/kv/leased":            `"value":"on c1"`,
			"/v1/locks/report":         `"token":` + cs.token,
			"/v1/queues/jobs/tasks/t1": `"epoch":` + cs.epoch,
		}
		for path, part := range want {
			if st, body := pc.call(id, http.MethodGet, path, ""); st != http.StatusOK || !strings.Contains(string(body), part) {
				pc.t.Errorf("%s: node %s: GET %s: %d %s, want %s", when, id, path, st, body, part)
			}
		}
	}
}

// call makes one request of node id; a read answered 503 (no leader for
// a moment) is tried again for up to 10 s.
func (pc *procCluster) call(id, method, path, body string) (int, []byte) {
	pc.t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, err := http.NewRequest(method, "http://"+pc.https[id]+path, strings.NewReader(body))
		if err != nil {
			pc.t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			pc.t.Fatalf("%s %s on %s: %v", method, path, id, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			pc.t.Fatalf("%s %s on %s: %v", method, path, id, err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || method != http.MethodGet || time.Now().After(deadline) {
			return resp.StatusCode, b
		}
		time.Sleep(20 * time.Millisecond) // paces retries only
	}
}

// mustCall makes a request that must answer 200 and returns the body.
func (pc *procCluster) mustCall(id, method, path, body string) []byte {
	pc.t.Helper()
	st, b := pc.call(id, method, path, body)
	if st != http.StatusOK {
		pc.t.Fatalf("%s %s on %s: %d %s", method, path, id, st, b)
	}
	return b
}
