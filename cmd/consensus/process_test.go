package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unrdf/consensus/internal/loopback"
)

// TestProcessKillAndRestart runs real `consensus serve` processes, writes
// keys, kill -9s the leader and then a follower (restarting each), and
// checks every acknowledged key is present on every node and the cluster
// takes writes again.
func TestProcessKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	pc := newProcCluster(t, bin, 3)
	pc.startAll()

	var mu sync.Mutex
	acked := map[string]string{}
	write := func(round string, n int) {
		for i := range n {
			key := fmt.Sprintf("k/%s/%d", round, i)
			val := fmt.Sprintf(`"%s-%d"`, round, i)
			if pc.put(key, val, 10*time.Second) {
				mu.Lock()
				acked[key] = val
				mu.Unlock()
			}
		}
	}

	write("before", 30)
	leader := pc.waitLeader()
	t.Logf("killing leader %s", leader)
	pc.kill(leader)
	write("leaderdown", 30)
	pc.start(leader)

	follower := ""
	leader = pc.waitLeader()
	for _, id := range pc.ids {
		if id != leader {
			follower = id
			break
		}
	}
	t.Logf("killing follower %s", follower)
	pc.kill(follower)
	write("followerdown", 30)
	pc.start(follower)
	pc.waitLeader()
	write("after", 10)

	if len(acked) < 90 {
		t.Fatalf("only %d of 100 writes acknowledged", len(acked))
	}
	// Data is for the node's owner alone: directories 0700, files 0600.
	err := filepath.WalkDir(filepath.Join(pc.root, pc.ids[0]), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group or other access", path, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range pc.ids {
		got := pc.list(id)
		for k, v := range acked {
			if got[k] != v {
				t.Errorf("node %s: %s = %q, want %q", id, k, got[k], v)
			}
		}
	}
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "consensus")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type procCluster struct {
	t     *testing.T
	bin   string
	ids   []string
	peers map[string]string
	https map[string]string
	root  string
	procs map[string]*exec.Cmd
	logs  map[string]*bytes.Buffer
	// env adds variables to a node's environment (failpoints).
	env map[string][]string
	// bins runs a node on another binary than bin (an older release);
	// args are appended to every node's serve flags.
	bins map[string]string
	args []string
}

func newProcCluster(t *testing.T, bin string, n int) *procCluster {
	pc := &procCluster{t: t, bin: bin, peers: map[string]string{}, https: map[string]string{},
		root: t.TempDir(), procs: map[string]*exec.Cmd{}, logs: map[string]*bytes.Buffer{}, env: map[string][]string{},
		bins: map[string]string{}}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		pc.ids = append(pc.ids, id)
		pc.peers[id] = freeAddr(t)
		pc.https[id] = freeAddr(t)
		pc.logs[id] = &bytes.Buffer{}
	}
	t.Cleanup(func() {
		for id := range pc.procs {
			pc.kill(id)
		}
		if t.Failed() {
			for _, id := range pc.ids {
				t.Logf("---- log of %s ----\n%s", id, pc.logs[id])
			}
		}
	})
	return pc
}

// freeAddr reserves a loopback port below the ephemeral range (see
// internal/loopback) and releases it for the caller.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func (pc *procCluster) startAll() {
	for _, id := range pc.ids {
		pc.start(id)
	}
}

func (pc *procCluster) start(id string) {
	pc.t.Helper()
	var peers []string
	for _, p := range pc.ids {
		peers = append(peers, p+"="+pc.peers[p])
	}
	bin := pc.bin
	if b := pc.bins[id]; b != "" {
		bin = b
	}
	args := []string{"serve", "--id", id, "--listen", pc.peers[id], "--http", pc.https[id],
		"--peers", strings.Join(peers, ","), "--data", filepath.Join(pc.root, id), "--log-level", "info"}
	cmd := exec.Command(bin, append(args, pc.args...)...)
	cmd.Stdout = pc.logs[id]
	cmd.Stderr = pc.logs[id]
	if extra := pc.env[id]; len(extra) > 0 {
		cmd.Env = append(os.Environ(), extra...)
	}
	if err := cmd.Start(); err != nil {
		pc.t.Fatalf("start %s: %v", id, err)
	}
	pc.procs[id] = cmd
}

func (pc *procCluster) kill(id string) {
	cmd := pc.procs[id]
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	delete(pc.procs, id)
}

func (pc *procCluster) status(id string) (leader string, ok bool) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + pc.https[id] + "/v1/status")
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var st struct {
		LeaderID string `json:"leaderId"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return "", false
	}
	return st.LeaderID, true
}

// waitLeader waits until every running node reports the same leader, and
// that leader is running.
func (pc *procCluster) waitLeader() string {
	pc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		leader, agreed := "", true
		for id := range pc.procs {
			l, ok := pc.status(id)
			if !ok || l == "" || (leader != "" && l != leader) {
				agreed = false
				break
			}
			leader = l
		}
		if agreed && leader != "" && pc.procs[leader] != nil {
			return leader
		}
		time.Sleep(20 * time.Millisecond)
	}
	pc.t.Fatal("no agreed leader within 20s")
	return ""
}

// put writes key through any running node, retrying on 503 and connection
// errors until timeout. It reports whether the write was acknowledged.
func (pc *procCluster) put(key, val string, timeout time.Duration) bool {
	c := http.Client{Timeout: 3 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for attempt := 0; ctx.Err() == nil; attempt++ {
		id := pc.ids[attempt%len(pc.ids)]
		if pc.procs[id] == nil {
			continue
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+pc.https[id]+"/v1/kv/"+key, strings.NewReader(val))
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func (pc *procCluster) list(id string) map[string]string {
	pc.t.Helper()
	var got map[string]string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + pc.https[id] + "/v1/kv?prefix=k/")
		if err == nil {
			var list struct {
				Items []struct {
					Key   string          `json:"key"`
					Value json.RawMessage `json:"value"`
				} `json:"items"`
			}
			ok := resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&list) == nil
			resp.Body.Close()
			if ok {
				got = map[string]string{}
				for _, it := range list.Items {
					got[it.Key] = string(it.Value)
				}
				return got
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	pc.t.Fatalf("cannot list keys on %s", id)
	return nil
}

// TestProcessRandomKills is the crash loop over the real binary: writers
// run on every node while a seeded nemesis kill -9s a random node (the
// leader in some rounds) and restarts it. Afterwards every acknowledged
// write is present on every node and the nodes hold the same keys.
func TestProcessRandomKills(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KILL_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (set KILL_SEED to replay the nemesis's choices)", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	bin := buildBinary(t)
	pc := newProcCluster(t, bin, 3)
	pc.startAll()
	pc.waitLeader()

	var mu sync.Mutex
	acked := map[string]string{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("k/w%d/%d", w, i)
				val := fmt.Sprintf(`%d`, i)
				if pc.putOnce(key, val) {
					mu.Lock()
					acked[key] = val
					mu.Unlock()
				}
			}
		}()
	}
	const rounds = 5
	for r := range rounds {
		victim := pc.ids[rng.IntN(len(pc.ids))]
		if rng.IntN(2) == 0 {
			victim = pc.waitLeader()
		}
		// Let some writes land first; the wait is bounded and only paces
		// the nemesis, it does not synchronise anything.
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		t.Logf("round %d: kill -9 %s", r+1, victim)
		pc.kill(victim)
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		pc.start(victim)
		pc.waitLeader()
	}
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
	t.Logf("%d writes acknowledged across %d kills", len(acked), rounds)
	var first map[string]string
	for _, id := range pc.ids {
		got := pc.list(id)
		for k, v := range acked {
			if got[k] != v {
				t.Errorf("node %s: acknowledged %s = %q is %q", id, k, v, got[k])
			}
		}
		if first == nil {
			first = got
		} else if len(got) != len(first) {
			t.Errorf("node %s holds %d keys, %s holds %d", id, len(got), pc.ids[0], len(first))
		}
	}
}

// putOnce tries one write through a random running node and reports
// whether it was acknowledged. It never retries: a write that failed may
// or may not be applied, so only acknowledged writes are checked.
func (pc *procCluster) putOnce(key, val string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	id := pc.ids[int(time.Now().UnixNano())%len(pc.ids)]
	req, _ := http.NewRequest(http.MethodPut, "http://"+pc.https[id]+"/v1/kv/"+key, strings.NewReader(val))
	resp, err := c.Do(req)
	if err != nil {
		time.Sleep(10 * time.Millisecond)
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		time.Sleep(10 * time.Millisecond)
	}
	return resp.StatusCode == http.StatusOK
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}
