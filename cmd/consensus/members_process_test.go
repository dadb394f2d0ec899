package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// writeOutcome classifies one attempt of a write over HTTP.
type writeOutcome int

const (
	writeOK writeOutcome = iota
	// writeNodeDown: the node did not answer or said it is stopping
	// (connection refused, 503 unavailable): try another node.
	writeNodeDown
	// writeNoLeader: 503 no_leader, a write failed for lack of a leader.
	writeNoLeader
	// writeOther: any other failure (a timeout included).
	writeOther
)

func tryPut(c *http.Client, httpAddr, key, val string) (writeOutcome, string) {
	req, _ := http.NewRequest(http.MethodPut, "http://"+httpAddr+"/v1/kv/"+key, strings.NewReader(val))
	resp, err := c.Do(req)
	if err != nil {
		return writeNodeDown, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return writeOK, ""
	}
	var eb struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(body, &eb)
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable && eb.Error.Code == "no_leader":
		return writeNoLeader, string(body)
	case resp.StatusCode == http.StatusServiceUnavailable && eb.Error.Code == "unavailable":
		return writeNodeDown, string(body)
	}
	return writeOther, fmt.Sprintf("%d %s", resp.StatusCode, body)
}

// waitExit waits for a signalled process to exit and reports its error.
func (pc *procCluster) waitExit(id string, timeout time.Duration) error {
	cmd := pc.procs[id]
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		delete(pc.procs, id)
		return err
	case <-time.After(timeout):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		delete(pc.procs, id)
		return fmt.Errorf("%s did not exit within %v of SIGTERM", id, timeout)
	}
}

// waitReady waits until id answers /readyz with 200.
func (pc *procCluster) waitReady(id string) {
	pc.t.Helper()
	c := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := c.Get("http://" + pc.https[id] + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	pc.t.Fatalf("%s not ready within 20s", id)
}

// TestProcessRollingRestartUnderLoad restarts every node of a 3-node
// cluster in turn with SIGTERM while clients write: a stopping leader
// hands leadership over first, so no write fails for lack of a leader (nor
// times out), and every acknowledged write is on every node afterwards.
// A write that reaches the node being stopped (connection refused, 503
// unavailable) is retried on another node.
func TestProcessRollingRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	pc := newProcCluster(t, bin, 3)
	pc.startAll()
	first := pc.waitLeader()

	addrs := make([]string, 0, len(pc.ids))
	for _, id := range pc.ids {
		addrs = append(addrs, pc.https[id])
	}
	var (
		mu        sync.Mutex
		acked     = map[string]string{}
		failures  []string
		noLeader  atomic.Int64
		nodeDowns atomic.Int64
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key, val := fmt.Sprintf("k/w%d/%d", w, i), fmt.Sprintf("%d", i)
				for attempt := 0; ; attempt++ {
					out, msg := tryPut(c, addrs[(i+w+attempt)%len(addrs)], key, val)
					if out == writeOK {
						mu.Lock()
						acked[key] = val
						mu.Unlock()
						break
					}
					if out == writeNodeDown && attempt < 50 {
						nodeDowns.Add(1)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					if out == writeNoLeader {
						noLeader.Add(1)
					}
					mu.Lock()
					failures = append(failures, key+": "+msg)
					mu.Unlock()
					break
				}
			}
		}()
	}

	// Restart the leader, then a follower, three times over, then any
	// node not restarted yet: every node goes down at least once and the
	// leader (whoever it is by then) three times.
	restarted := map[string]bool{}
	var order []string
	restart := func(id string) {
		time.Sleep(200 * time.Millisecond) // let writes flow between restarts; paces only
		start := time.Now()
		if err := pc.procs[id].Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := pc.waitExit(id, 20*time.Second); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		t.Logf("%s stopped gracefully in %v", id, time.Since(start).Round(time.Millisecond))
		pc.start(id)
		pc.waitReady(id)
		pc.waitLeader()
		restarted[id] = true
		order = append(order, id)
	}
	for round := range 6 {
		leader := pc.waitLeader()
		if round%2 == 0 {
			restart(leader)
			continue
		}
		for _, id := range pc.ids {
			if id != leader && !restarted[id] {
				restart(id)
				break
			}
		}
	}
	for _, id := range pc.ids {
		if !restarted[id] {
			restart(id)
		}
	}
	t.Logf("restart order %v (first leader %s)", order, first)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	t.Logf("%d writes acknowledged; %d attempts retried on another node; %d failed", len(acked), nodeDowns.Load(), len(failures))
	if n := noLeader.Load(); n > 0 {
		t.Errorf("%d writes failed for lack of a leader", n)
	}
	for _, f := range failures {
		t.Errorf("write failed: %s", f)
	}
	if len(acked) == 0 {
		t.Fatal("no write acknowledged")
	}
	for _, id := range pc.ids {
		got := pc.list(id)
		for k, v := range acked {
			if got[k] != v {
				t.Errorf("node %s: acknowledged %s = %q is %q", id, k, v, got[k])
			}
		}
	}
}

// TestProcessFastFailoverRepeated kill -9s the leader of a 3-node cluster
// ten times; each time the survivors elect a new leader and take a write.
// It prints how long each failover took (kill to the first acknowledged
// write) and asserts only generous correctness bounds, never speed.
func TestProcessFastFailoverRepeated(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	pc := newProcCluster(t, bin, 3)
	pc.startAll()
	const trials = 10
	c := &http.Client{Timeout: time.Second}
	var times []time.Duration
	for trial := 1; trial <= trials; trial++ {
		leader := pc.waitLeader()
		for _, id := range pc.ids {
			pc.waitReady(id)
		}
		survivors := slices.DeleteFunc(slices.Clone(pc.ids), func(id string) bool { return id == leader })
		start := time.Now()
		pc.kill(leader)
		key := fmt.Sprintf("k/failover/%d", trial)
		ok := false
		for attempt := 0; time.Since(start) < 20*time.Second; attempt++ {
			if out, _ := tryPut(c, pc.https[survivors[attempt%2]], key, `"x"`); out == writeOK {
				ok = true
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		took := time.Since(start)
		if !ok {
			t.Fatalf("trial %d: no write acknowledged within 20s of killing leader %s", trial, leader)
		}
		next := pc.waitLeader()
		if next == leader {
			t.Fatalf("trial %d: killed %s still leads", trial, leader)
		}
		times = append(times, took)
		t.Logf("trial %d: killed %s, %s leads, first write after %v", trial, leader, next, took.Round(100*time.Microsecond))
		pc.start(leader)
	}
	sorted := slices.Clone(times)
	slices.Sort(sorted)
	t.Logf("failover (kill -9 to first acknowledged write) over %d trials: min %v, median %v, max %v",
		trials, sorted[0].Round(100*time.Microsecond), sorted[len(sorted)/2].Round(100*time.Microsecond), sorted[len(sorted)-1].Round(100*time.Microsecond))
}

// TestProcessJoinGrowAndShrink grows a cluster of real processes from 3
// to 5 with `consensus serve --join` (the first --join address is dead),
// waits until the new nodes are voters, then removes them with DELETE
// /v1/members/{id}, while clients write through the founders: every write
// is acknowledged or fails with a (retryable) 503, and every acknowledged
// write is on every remaining node.
func TestProcessJoinGrowAndShrink(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	pc := newProcCluster(t, bin, 3)
	pc.startAll()
	pc.waitLeader()
	founders := slices.Clone(pc.ids)
	var founderHTTP []string // the writers' own copy: pc's maps grow below
	for _, id := range founders {
		founderHTTP = append(founderHTTP, pc.https[id])
	}
	var (
		mu       sync.Mutex
		acked    = map[string]string{}
		failures []string
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key, val := fmt.Sprintf("k/w%d/%d", w, i), fmt.Sprintf("%d", i)
				req, _ := http.NewRequest(http.MethodPut, "http://"+founderHTTP[(w+i)%3]+"/v1/kv/"+key, strings.NewReader(val))
				resp, err := c.Do(req)
				if err != nil {
					mu.Lock()
					failures = append(failures, key+": "+err.Error())
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				switch resp.StatusCode {
				case http.StatusOK:
					acked[key] = val
				case http.StatusServiceUnavailable:
					// retryable; the write may or may not be applied
				default:
					failures = append(failures, fmt.Sprintf("%s: %d %s", key, resp.StatusCode, body))
				}
				mu.Unlock()
			}
		}()
	}
	dead := freeAddr(t)
	for _, id := range []string{"n4", "n5"} {
		pc.peers[id], pc.https[id] = freeAddr(t), freeAddr(t)
		pc.ids = append(pc.ids, id)
		pc.logs[id] = &bytes.Buffer{}
		cmd := exec.Command(bin, "serve", "--id", id, "--listen", pc.peers[id], "--http", pc.https[id],
			"--join", dead+","+pc.https["n1"]+","+pc.https["n2"], "--data", pc.root+"/"+id)
		cmd.Stdout, cmd.Stderr = pc.logs[id], pc.logs[id]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pc.procs[id] = cmd
		pc.waitVoter(id)
	}
	pc.waitReady("n5")
	if out, msg := tryPut(&http.Client{Timeout: 5 * time.Second}, pc.https["n5"], "k/on-n5", `"5"`); out != writeOK {
		t.Fatalf("write on n5: %s", msg)
	}
	for _, id := range []string{"n4", "n5"} {
		req, _ := http.NewRequest(http.MethodDelete, "http://"+pc.https["n1"]+"/v1/members/"+id, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("remove %s: %s", id, resp.Status)
		}
	}
	for _, id := range []string{"n4", "n5"} {
		pc.waitRemoved(id)
		pc.kill(id)
	}
	pc.waitLeader()
	time.Sleep(200 * time.Millisecond) // writes after the shrink; paces only
	close(stop)
	wg.Wait()
	t.Logf("%d writes acknowledged while growing to 5 and shrinking to 3", len(acked))
	for _, f := range failures {
		t.Errorf("write failed other than with 503: %s", f)
	}
	if len(acked) == 0 {
		t.Fatal("no write acknowledged")
	}
	for _, id := range founders {
		got := pc.list(id)
		if got["k/on-n5"] != `"5"` {
			t.Errorf("%s: write through n5 lost", id)
		}
		for k, v := range acked {
			if got[k] != v {
				t.Errorf("node %s: acknowledged %s = %q is %q", id, k, v, got[k])
			}
		}
	}
}

// waitRemoved waits until id's status says it was removed.
func (pc *procCluster) waitRemoved(id string) {
	pc.t.Helper()
	c := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := c.Get("http://" + pc.https[id] + "/v1/status"); err == nil {
			var st struct {
				Removed bool `json:"removed"`
			}
			ok := json.NewDecoder(resp.Body).Decode(&st) == nil && st.Removed
			resp.Body.Close()
			if ok {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	pc.t.Fatalf("%s does not say it was removed within 20s", id)
}

// waitVoter waits until n1 lists id as a voter.
func (pc *procCluster) waitVoter(id string) {
	pc.t.Helper()
	c := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := c.Get("http://" + pc.https["n1"] + "/v1/members"); err == nil {
			var mr struct {
				Members []struct {
					ID    string `json:"id"`
					Voter bool   `json:"voter"`
				} `json:"members"`
			}
			ok := json.NewDecoder(resp.Body).Decode(&mr) == nil
			resp.Body.Close()
			for _, m := range mr.Members {
				if ok && m.ID == id && m.Voter {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	pc.t.Fatalf("%s not a voter within 30s", id)
}
