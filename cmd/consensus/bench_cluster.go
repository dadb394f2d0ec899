package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/bench"
	"github.com/unrdf/consensus/internal/loopback"
)

// benchCluster is a local cluster of child serve processes that bench
// started, so it may kill and restart them.
type benchCluster struct {
	self     string
	dir      string
	ownDir   bool // dir was created by bench and is removed at the end
	keepData bool
	logLevel string
	// serveArgs are extra flags for every node's serve.
	serveArgs []string
	nodes     []localNode
	peers     string

	mu    sync.Mutex
	procs []*exec.Cmd
	done  []chan struct{} // closed when the process has been reaped
}

func startBenchCluster(ctx context.Context, cfg benchConfig, text io.Writer) (*benchCluster, error) {
	lc, err := newBenchCluster(cfg)
	if err != nil {
		return lc, err
	}
	for i := range lc.nodes {
		if err := lc.start(i); err != nil {
			return lc, err
		}
	}
	if err := lc.waitStable(ctx, 30*time.Second); err != nil {
		return lc, err
	}
	fmt.Fprintf(text, "consensus bench: local %d-node cluster, data and logs in %s\n", len(lc.nodes), lc.dir)
	return lc, nil
}

// newBenchCluster lays out cfg.nodes nodes on free loopback ports with
// their data under cfg.dataDir (a new temporary directory if empty),
// without starting them. On an error the returned cluster, if not nil,
// still needs close.
func newBenchCluster(cfg benchConfig) (*benchCluster, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find own executable: %w", err)
	}
	lc := &benchCluster{self: self, dir: cfg.dataDir, keepData: cfg.keepData, logLevel: cfg.logLevel,
		serveArgs: fillServeArgs(cfg.fillKeys)}
	if lc.dir == "" {
		if lc.dir, err = os.MkdirTemp("", "consensus-bench-"); err != nil {
			return nil, err
		}
		lc.ownDir = true
	} else if err := os.MkdirAll(lc.dir, 0o700); err != nil {
		return nil, err
	}
	var addrErr error
	lc.nodes = localNodes(cfg.nodes, lc.dir, func(int) (string, string) {
		peer, err1 := loopback.FreeAddr()
		http, err2 := loopback.FreeAddr()
		addrErr = errors.Join(addrErr, err1, err2)
		return peer, http
	})
	if addrErr != nil {
		return lc, addrErr
	}
	lc.peers = peersFlag(lc.nodes)
	lc.procs = make([]*exec.Cmd, len(lc.nodes))
	lc.done = make([]chan struct{}, len(lc.nodes))
	return lc, nil
}

func (lc *benchCluster) addrs() []string {
	out := make([]string, len(lc.nodes))
	for i, n := range lc.nodes {
		out[i] = n.http
	}
	return out
}

// start starts node i, its output appended to <dir>/<id>.log.
func (lc *benchCluster) start(i int) error {
	n := lc.nodes[i]
	log, err := os.OpenFile(filepath.Join(lc.dir, n.id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := serveCommand(lc.self, n, lc.peers, lc.logLevel, lc.serveArgs...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", n.id, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	lc.mu.Lock()
	lc.procs[i], lc.done[i] = cmd, done
	lc.mu.Unlock()
	return nil
}

// kill sends SIGKILL to node i and waits until it is reaped.
func (lc *benchCluster) kill(i int) {
	lc.mu.Lock()
	cmd, done := lc.procs[i], lc.done[i]
	lc.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// cpuMeter reads the CPU time of every running node of lc (none if lc is
// nil) and of this process.
func (lc *benchCluster) cpuMeter() bench.CPUMeter {
	return func() (map[string]time.Duration, error) {
		pids := make(map[string]int)
		if lc != nil {
			for i, n := range lc.nodes {
				if pid := lc.pid(i); pid != 0 {
					pids[n.id] = pid
				}
			}
		}
		return bench.PidMeter(pids)()
	}
}

func (lc *benchCluster) pid(i int) int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.procs[i] == nil {
		return 0
	}
	return lc.procs[i].Process.Pid
}

// close stops every node (SIGTERM, then SIGKILL after ten seconds) and
// removes the data directory if bench created it.
func (lc *benchCluster) close() error {
	lc.mu.Lock()
	procs, done := slices.Clone(lc.procs), slices.Clone(lc.done)
	lc.mu.Unlock()
	for _, cmd := range procs {
		if cmd != nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(10 * time.Second)
	for i, d := range done {
		if d == nil {
			continue
		}
		select {
		case <-d:
		case <-deadline:
			_ = procs[i].Process.Kill()
			<-d
		}
	}
	if lc.ownDir && !lc.keepData {
		return os.RemoveAll(lc.dir)
	}
	return nil
}

// waitStable waits until every node in live (all when nil) is ready,
// agrees on one leader among them, and has a stream to every other.
func (lc *benchCluster) waitStable(ctx context.Context, timeout time.Duration, live ...int) error {
	if live == nil {
		for i := range lc.nodes {
			live = append(live, i)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if lc.stable(ctx, live) {
			return nil
		}
		if err := sleepOrDone(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("cluster not stable after %v (logs in %s): %w", timeout, lc.dir, err)
		}
	}
}

func (lc *benchCluster) stable(ctx context.Context, live []int) bool {
	leader := ""
	for _, i := range live {
		st, err := fetchStatus(ctx, lc.nodes[i].http)
		if err != nil || st.LeaderID == "" || (leader != "" && st.LeaderID != leader) {
			return false
		}
		leader = st.LeaderID
		for _, j := range live {
			if j != i && !slices.Contains(st.ConnectedPeers, lc.nodes[j].id) {
				return false
			}
		}
	}
	return slices.ContainsFunc(live, func(i int) bool { return lc.nodes[i].id == leader })
}

// leader returns the index of the node that says it leads, or -1.
func (lc *benchCluster) leader(ctx context.Context) (int, consensus.Status) {
	for i, n := range lc.nodes {
		if st, err := fetchStatus(ctx, n.http); err == nil && st.IsLeader {
			return i, st
		}
	}
	return -1, consensus.Status{}
}

// waitCaughtUp waits until node i is ready and has applied what the
// leader had committed when it was asked.
func (lc *benchCluster) waitCaughtUp(ctx context.Context, i int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		li, lst := lc.leader(ctx)
		if li >= 0 {
			if st, err := fetchStatus(ctx, lc.nodes[i].http); err == nil && st.LeaderID != "" && st.AppliedIndex >= lst.CommitIndex {
				return nil
			}
		}
		if err := sleepOrDone(ctx, 10*time.Millisecond); err != nil {
			return fmt.Errorf("%s did not catch up within %v: %w", lc.nodes[i].id, timeout, err)
		}
	}
}
