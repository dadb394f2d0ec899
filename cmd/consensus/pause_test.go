package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unrdf/consensus/internal/testwait"
)

// pauseHolderEnv makes the test binary run runPauseHolder: the value is
// the nodes' HTTP addresses, comma-separated.
const pauseHolderEnv = "CONSENSUS_TEST_PAUSE_HOLDER"

const (
	pauseLock = "pause"
	pauseKey  = "pause-data"
	pauseTTL  = 2000 // ms, the holder's lease
)

// pauseClient calls the nodes' HTTP API, trying each node in turn until
// one answers other than 503 (no leader yet, forwarding not ready).
type pauseClient struct {
	addrs []string
	http  http.Client
}

func (c *pauseClient) do(method, path, body string, header map[string]string) (int, []byte, error) {
	var lastErr error
	for round := 0; round < 50; round++ {
		for _, addr := range c.addrs {
			req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
			if err != nil {
				return 0, nil, err
			}
			for k, v := range header {
				req.Header.Set(k, v)
			}
			resp, err := c.http.Do(req)
			if err != nil {
				lastErr = err
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				lastErr = fmt.Errorf("%s: %s", addr, b)
				continue
			}
			return resp.StatusCode, b, nil
		}
		time.Sleep(100 * time.Millisecond) // a round of retries, in a helper process
	}
	return 0, nil, lastErr
}

// runPauseHolder is the lock holder: it grants a lease, keeps it alive,
// takes the lock, says "holding <token>", then writes the data key fenced
// by its token every 50 ms, saying "wrote <i> <revision>" for each write
// applied, until one is refused: then it says "fenced" and exits 0.
func runPauseHolder() int {
	c := &pauseClient{addrs: strings.Split(os.Getenv(pauseHolderEnv), ","), http: http.Client{Timeout: 3 * time.Second}}
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "holder: %s: %v\n", what, err)
		return 2
	}
	status, body, err := c.do(http.MethodPost, "/v1/leases", fmt.Sprintf(`{"ttlMs":%d}`, pauseTTL), nil)
	if err != nil || status != http.StatusOK {
		return fail("grant", fmt.Errorf("%d %s %v", status, body, err))
	}
	var lease struct{ ID string }
	_ = json.Unmarshal(body, &lease)
	go func() {
		for {
			time.Sleep(pauseTTL / 5 * time.Millisecond)
			_, _, _ = c.do(http.MethodPost, "/v1/leases/"+lease.ID+"/keepalive", "", nil)
		}
	}()
	status, body, err = c.do(http.MethodPost, "/v1/locks/"+pauseLock, fmt.Sprintf(`{"lease":%q,"waitMs":10000}`, lease.ID), nil)
	if err != nil || status != http.StatusOK {
		return fail("acquire", fmt.Errorf("%d %s %v", status, body, err))
	}
	var held struct{ Token int64 }
	_ = json.Unmarshal(body, &held)
	fmt.Printf("holding %d\n", held.Token)
	fence := map[string]string{"X-Fence": fmt.Sprintf("%s:%d", pauseLock, held.Token)}
	for i := 1; ; i++ {
		status, body, err := c.do(http.MethodPut, "/v1/kv/"+pauseKey, fmt.Sprintf(`"h1-%d"`, i), fence)
		switch {
		case err != nil:
			return fail("write", err)
		case status == http.StatusPreconditionFailed && strings.Contains(string(body), `"fenced"`):
			fmt.Println("fenced")
			return 0
		case status != http.StatusOK:
			return fail("write", fmt.Errorf("%d %s", status, body))
		}
		var rev struct{ Revision int64 }
		_ = json.Unmarshal(body, &rev)
		fmt.Printf("wrote %d %d\n", i, rev.Revision)
		time.Sleep(50 * time.Millisecond) // the holder's pace of work
	}
}

// A lock holder paused (SIGSTOP) past its lease's time to live loses the
// lock to another client; resumed, its fenced write is refused, and the
// data holds nothing it wrote after the second holder began: real
// processes, the way these primitives fail in production.
func TestPausedLockHolderIsFenced(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs real processes")
	}
	pc := newProcCluster(t, buildBinary(t), 3)
	pc.startAll()
	pc.waitLeader()
	var addrs []string
	for _, id := range pc.ids {
		addrs = append(addrs, pc.https[id])
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	holder := exec.Command(self, "-test.run=^$")
	holder.Env = append(os.Environ(), pauseHolderEnv+"="+strings.Join(addrs, ","))
	var stderr strings.Builder
	holder.Stderr = &stderr
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- holder.Wait()
	}()
	t.Cleanup(func() {
		_ = holder.Process.Signal(syscall.SIGCONT)
		_ = holder.Process.Kill()
	})
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the holder exited waiting for %s: %s", what, stderr.String())
			}
			return l
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s from the holder within 30s: %s", what, stderr.String())
		}
		return ""
	}
	var firstToken int64
	if _, err := fmt.Sscanf(next("its token"), "holding %d", &firstToken); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if l := next("a write"); !strings.HasPrefix(l, "wrote ") {
			t.Fatalf("holder said %q, want a write", l)
		}
	}
	if err := holder.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	c := &pauseClient{addrs: addrs, http: http.Client{Timeout: 3 * time.Second}}
	// Its lease expires without keepalives, and the lock with it.
	testwait.For(t, 20*time.Second, "the paused holder's lock to be freed", func() bool {
		status, _, _ := c.do(http.MethodGet, "/v1/locks/"+pauseLock, "", nil)
		return status == http.StatusNotFound
	})
	t.Logf("the paused holder's lock was freed %v after the pause (lease %d ms)", time.Since(paused).Round(time.Millisecond), pauseTTL)
	status, body, err := c.do(http.MethodPost, "/v1/leases", `{"ttlMs":60000}`, nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("grant: %d %s %v", status, body, err)
	}
	var lease struct{ ID string }
	_ = json.Unmarshal(body, &lease)
	status, body, err = c.do(http.MethodPost, "/v1/locks/"+pauseLock, fmt.Sprintf(`{"lease":%q,"waitMs":0}`, lease.ID), nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("the second client's acquire: %d %s %v", status, body, err)
	}
	var held struct{ Token int64 }
	_ = json.Unmarshal(body, &held)
	if held.Token <= firstToken {
		t.Fatalf("second token %d, not above the first %d", held.Token, firstToken)
	}
	fence := map[string]string{"X-Fence": fmt.Sprintf("%s:%d", pauseLock, held.Token)}
	var firstRev int64
	for i := 1; i <= 3; i++ {
		status, body, err := c.do(http.MethodPut, "/v1/kv/"+pauseKey, fmt.Sprintf(`"h2-%d"`, i), fence)
		if err != nil || status != http.StatusOK {
			t.Fatalf("the second holder's write: %d %s %v", status, body, err)
		}
		if i == 1 {
			var rev struct{ Revision int64 }
			_ = json.Unmarshal(body, &rev)
			firstRev = rev.Revision
		}
	}
	if err := holder.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Resumed, it writes on with its old token until refused.
	for {
		l := next("the resumed holder's outcome")
		if l == "fenced" {
			break
		}
		var i, rev int64
		if _, err := fmt.Sscanf(l, "wrote %d %d", &i, &rev); err != nil {
			t.Fatalf("holder said %q", l)
		}
		if rev >= firstRev {
			t.Fatalf("the paused holder's write %d landed at revision %d, after the second holder's first write at %d", i, rev, firstRev)
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("holder: %v: %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the holder did not exit after being fenced")
	}
	status, body, _ = c.do(http.MethodGet, "/v1/kv/"+pauseKey, "", nil)
	var item struct{ Value json.RawMessage }
	_ = json.Unmarshal(body, &item)
	if status != http.StatusOK || string(item.Value) != `"h2-3"` {
		t.Fatalf("data = %d %s, want the second holder's last write", status, body)
	}
}
