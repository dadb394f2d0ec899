package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/internal/testwait"
)

// TestProcessStalledLeaderDisk: on real processes, the leader's storage
// writes are held by the failpoint (as if its fsync hung). The others
// elect a new leader and take writes within a bounded time; the stalled
// node reports not ready and storageStalled; when its disk returns it
// rejoins and holds every acknowledged write.
func TestProcessStalledLeaderDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	pc := newProcCluster(t, buildBinary(t), 3)
	stallFile := map[string]string{}
	for _, id := range pc.ids {
		stallFile[id] = filepath.Join(pc.root, id+".stall")
		pc.env[id] = []string{stallSaveEnv + "=" + stallFile[id]}
	}
	pc.startAll()
	old := pc.waitLeader()
	for i := range 20 {
		if !pc.put(fmt.Sprintf("k/before-%d", i), `1`, 10*time.Second) {
			t.Fatalf("write %d before the stall was not acknowledged", i)
		}
	}
	if err := os.WriteFile(stallFile[old], nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(stallFile[old]) })
	stalledAt := time.Now()
	// The stalled leader's disk hangs on its next write: this one.
	go pc.putOn(old, "k/during", `1`)

	others := map[string]bool{}
	for _, id := range pc.ids {
		others[id] = id != old
	}
	var leader string
	testwait.For(t, 20*time.Second, "the two others to agree on a new leader", func() bool {
		l1, ok1 := "", true
		for id, other := range others {
			if !other {
				continue
			}
			l, ok := pc.status(id)
			if !ok || l == "" || l == old || (l1 != "" && l != l1) {
				ok1 = false
			}
			l1 = l
		}
		leader = l1
		return ok1
	})
	elected := time.Since(stalledAt)
	var acked []string
	for i := range 20 {
		k := fmt.Sprintf("k/after-%d", i)
		if !pc.putOn(leader, k, `1`) {
			t.Fatalf("write %s through the new leader %s was not acknowledged", k, leader)
		}
		acked = append(acked, k)
	}
	resumed := time.Since(stalledAt)
	testwait.For(t, 10*time.Second, "the stalled node to report it", func() bool {
		ready, stalled := pc.stallState(old)
		return ready == http.StatusServiceUnavailable && stalled
	})
	if err := os.Remove(stallFile[old]); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 20*time.Second, "the stalled node to rejoin, ready", func() bool {
		ready, stalled := pc.stallState(old)
		return ready == http.StatusOK && !stalled
	})
	var want map[string]string
	testwait.For(t, 20*time.Second, "every node to hold the same keys", func() bool {
		want = pc.list(pc.ids[0])
		for _, id := range pc.ids[1:] {
			if fmt.Sprint(pc.list(id)) != fmt.Sprint(want) {
				return false
			}
		}
		return true
	})
	for i := range 20 {
		acked = append(acked, fmt.Sprintf("k/before-%d", i))
	}
	for _, k := range acked {
		if _, ok := want[k]; !ok {
			t.Errorf("acknowledged write %s lost", k)
		}
	}
	t.Logf("leader %s's disk stalled: the others agreed on %s after %v, took writes after %v; %d acknowledged writes kept",
		old, leader, elected.Round(time.Millisecond), resumed.Round(time.Millisecond), len(acked))
}

// putOn writes key through node id once (3 s timeout): whether it was
// acknowledged.
func (pc *procCluster) putOn(id, key, val string) bool {
	c := http.Client{Timeout: 3 * time.Second}
	req, _ := http.NewRequest(http.MethodPut, "http://"+pc.https[id]+"/v1/kv/"+key, strings.NewReader(val))
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stallState returns node id's /readyz status and /v1/status
// storageStalled (0, false if it does not answer).
func (pc *procCluster) stallState(id string) (ready int, stalled bool) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + pc.https[id] + "/readyz")
	if err != nil {
		return 0, false
	}
	resp.Body.Close()
	ready = resp.StatusCode
	resp, err = c.Get("http://" + pc.https[id] + "/v1/status")
	if err != nil {
		return ready, false
	}
	defer resp.Body.Close()
	var st struct {
		StorageStalled bool `json:"storageStalled"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return ready, st.StorageStalled
}
