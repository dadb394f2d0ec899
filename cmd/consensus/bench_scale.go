package main

// bench --scale-keys: what a cluster costs with N keys.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/unrdf/consensus/bench"
	"github.com/unrdf/consensus/internal/loopback"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server"
)

// scaleWait bounds each wait of a scale run: a restart, a catch-up.
const scaleWait = 5 * time.Minute

// benchServeArgs are the extra serve flags of the nodes bench starts: a
// --max-keys with room for the keys --fill-keys or --scale-keys writes
// (and a tenth more) when the default would refuse them, and a
// --max-watches-per-client with room for --watches-per-conn.
func benchServeArgs(cfg benchConfig) []string {
	var args []string
	keys := max(cfg.fillKeys, cfg.scaleKeys)
	if want := keys + keys/10; want > kv.DefaultMaxKeys {
		args = append(args, "--max-keys", strconv.Itoa(want))
	}
	// Watches over /v1/ws share a connection, so a client identity.
	if cfg.watchers > 0 && cfg.watchProtocol == "ws" && cfg.watchesPerConn > server.DefaultMaxWatchesPerClient {
		args = append(args, "--max-watches-per-client", strconv.Itoa(cfg.watchesPerConn))
	}
	return args
}

// runScale fills the local cluster with cfg.scaleKeys keys and measures
// what they cost: each node's RSS and data directory, a backup's size and
// time, a stopped follower's restart, the whole cluster's restart and a
// new member's catch-up.
func runScale(ctx context.Context, lc *benchCluster, cfg benchConfig, text io.Writer) (*bench.Scale, error) {
	s := &bench.Scale{System: "consensus", Version: version, Keys: cfg.scaleKeys, ValueSize: cfg.opts.ValueSize, LoadStart: bench.LoadAvg()}
	// Also when a figure fails: the report keeps the others.
	defer func() {
		if s.LoadEnd == "" {
			s.LoadEnd = bench.LoadAvg()
		}
	}()
	fillCfg := cfg
	fillCfg.fillKeys = cfg.scaleKeys
	start := time.Now()
	mem, err := runFill(ctx, lc, fillCfg, text)
	if err != nil {
		return s, err
	}
	s.Fill, s.Memory = time.Since(start), mem

	leader, _ := lc.leader(ctx)
	if leader < 0 {
		return s, errors.New("no leader after the fill")
	}
	if s.SnapshotBytes, s.Snapshot, err = saveBackup(ctx, lc.nodes[leader].http, filepath.Join(lc.dir, "backup")); err != nil {
		return s, fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(text, "\nbackup from the leader: %s in %v\n", bench.MiB(s.SnapshotBytes), s.Snapshot.Round(time.Millisecond))

	follower := (leader + 1) % len(lc.nodes)
	lc.stop(follower)
	if s.RestartNode, err = lc.timeRestart(ctx, follower); err != nil {
		return s, err
	}
	fmt.Fprintf(text, "%s restarted, serving linearizable reads, in %v\n", lc.nodes[follower].id, s.RestartNode.Round(time.Millisecond))

	all := make([]int, len(lc.nodes))
	for i := range lc.nodes {
		all[i] = i
		lc.stop(i)
	}
	if s.RestartCluster, err = lc.timeRestart(ctx, all...); err != nil {
		return s, err
	}
	fmt.Fprintf(text, "whole cluster restarted, every node serving linearizable reads, in %v\n", s.RestartCluster.Round(time.Millisecond))

	if s.CatchUp, s.CatchUpRSS, err = lc.timeJoin(ctx); err != nil {
		return s, err
	}
	fmt.Fprintf(text, "new member caught up in %v, RSS then %s\n\n", s.CatchUp.Round(time.Millisecond), bench.MiB(s.CatchUpRSS))
	s.LoadEnd = bench.LoadAvg()
	bench.WriteScale(text, s)
	return s, nil
}

// saveBackup streams GET /v1/snapshot from the node at addr into file,
// syncs it and removes it; it returns its size and the time from the
// request to the sync.
func saveBackup(ctx context.Context, addr, file string) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, scaleWait)
	defer cancel()
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/snapshot", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET /v1/snapshot from %s: %s", addr, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(file)
	n, err := io.Copy(f, resp.Body)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	return n, time.Since(start), err
}

// stop sends SIGTERM to node i and waits until it is reaped (SIGKILL
// after a minute: a node with a million keys may take a while to stop).
func (lc *benchCluster) stop(i int) {
	lc.mu.Lock()
	cmd, done := lc.procs[i], lc.done[i]
	lc.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
	}
}

// timeRestart starts the stopped nodes in idx and returns the time until
// each serves a linearizable read (the first key bench wrote).
func (lc *benchCluster) timeRestart(ctx context.Context, idx ...int) (time.Duration, error) {
	start := time.Now()
	for _, i := range idx {
		if err := lc.start(i); err != nil {
			return 0, err
		}
	}
	for _, i := range idx {
		if err := waitServing(ctx, lc.nodes[i].http, scaleWait); err != nil {
			return 0, fmt.Errorf("%s after its restart (logs in %s): %w", lc.nodes[i].id, lc.dir, err)
		}
	}
	return time.Since(start), nil
}

// waitServing waits until the node at addr answers /readyz 200 and a
// linearizable read of the first key bench writes 200.
func waitServing(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		last = getOK(ctx, "http://"+addr+"/readyz")
		if last == nil {
			if last = getOK(ctx, "http://"+addr+"/v1/kv/"+bench.Key(0)); last == nil {
				return nil
			}
		}
		if err := sleepOrDone(ctx, 10*time.Millisecond); err != nil {
			return fmt.Errorf("not serving within %v: %w", timeout, errors.Join(last, err))
		}
	}
}

// getOK is nil when GET url answers 200 within a second.
func getOK(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := statusClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// timeJoin starts a new node with `serve --join` (the members add it as
// a learner) and returns the time from its start until it is ready and
// has applied the leader's commit index and serves a linearizable read,
// and its RSS then. It stays a
// node of lc, stopped by close.
func (lc *benchCluster) timeJoin(ctx context.Context) (time.Duration, int64, error) {
	peer, err1 := loopback.FreeAddr()
	httpAddr, err2 := loopback.FreeAddr()
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	id := fmt.Sprintf("n%d", len(lc.nodes)+1)
	join := strings.Join(lc.addrs(), ",")
	n := localNode{id: id, peer: peer, http: httpAddr, data: filepath.Join(lc.dir, id)}
	lc.mu.Lock()
	lc.nodes = append(lc.nodes, n)
	lc.procs = append(lc.procs, nil)
	lc.done = append(lc.done, nil)
	lc.mu.Unlock()
	i := len(lc.nodes) - 1
	args := append([]string{"serve", "--id", id, "--listen", peer, "--http", httpAddr, "--join", join,
		"--data", n.data, "--log-level", lc.logLevel}, lc.serveArgs...)
	cmd := exec.Command(lc.self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	start := time.Now()
	if err := lc.startCmd(i, cmd); err != nil {
		return 0, 0, err
	}
	if err := lc.waitCaughtUp(ctx, i, scaleWait); err != nil {
		return 0, 0, err
	}
	if err := waitServing(ctx, httpAddr, scaleWait); err != nil {
		return 0, 0, fmt.Errorf("%s after catching up: %w", id, err)
	}
	d := time.Since(start)
	pm, err := bench.ProcMemory(lc.pid(i))
	return d, pm.RSS, err
}
