package main

// The demo command is split in four: demo.go holds the command, the
// harness the scripts share and the 2node and 3node scripts;
// demo_pipeline.go the workflow example those two run; demo_failover.go
// the failover script; demo_workflow.go the workflow script (task
// queues and worker processes).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
)

const demoLong = `Runs a local cluster of child serve processes on free loopback ports, in a
temporary directory, and narrates what it does to it:

  2node     two nodes (a quorum of two is both); a workflow started through
            the leader, read back from the follower, updated and watched
  3node     three nodes; writes through every node, a follower stopped while
            writes go on, restarted and caught up
  failover  writes running, kill -9 of the leader; how long the cluster was
            without a leader, the killed node restarted and every
            acknowledged write checked on every node
  workflow  a pipeline of four steps as tasks of a queue, four worker
            processes; kill -9 of one mid-step, the step taken over after
            its claim's time to live; SIGSTOP of another mid-step, the step
            taken over and done, the paused worker's late complete refused
            (stale_epoch); each step done exactly once

Every node is stopped and the directory removed at the end, and on Ctrl-C.`

// demoBound bounds each wait of a demo (an election, a catch-up, a
// watch event); a demo that exceeds it fails with the step it was at.
const demoBound = 30 * time.Second

// demoScripts are the demos by name.
var demoScripts = map[string]struct {
	nodes int
	run   func(context.Context, *demo) error
}{
	"2node":    {2, demoTwoNodes},
	"3node":    {3, demoThreeNodes},
	"failover": {3, demoFailover},
	"workflow": {3, demoWorkflow},
}

// demoCmd runs one demo: exit 0 when every step worked, 1 with one error
// line otherwise, 2 for a usage error.
func demoCmd(stdout io.Writer) *cobra.Command {
	var (
		keep     bool
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "demo 2node|3node|failover|workflow [flags]",
		Short: "run a narrated demo on a local cluster: 2node, 3node, failover or workflow",
		Long:  demoLong,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return usageErrorf("demo: which demo? 2node, 3node, failover or workflow (see 'consensus demo --help')")
			case len(args) > 1:
				return usageErrorf("demo: unexpected argument %q (see 'consensus demo --help')", args[1])
			}
			if _, ok := demoScripts[args[0]]; !ok {
				return usageErrorf("demo: unknown demo %q: want 2node, 3node, failover or workflow", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := newLogger(io.Discard, logLevel, "text"); err != nil {
				return usageErrorf("demo: %v", err)
			}
			return runDemo(cmd.Context(), args[0], keep, logLevel, stdout)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the data directory (the nodes' data and logs) and print where it is")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level of the nodes (logs go to <data>/<id>.log)")
	return withGlobalFlags(cmd)
}

// runDemo runs the demo name on a new local cluster and stops it.
func runDemo(ctx context.Context, name string, keep bool, logLevel string, stdout io.Writer) error {
	script := demoScripts[name]
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "consensus-demo-")
	if err != nil {
		return failuref("demo %s: %v", name, err)
	}
	lc, err := newBenchCluster(benchConfig{nodes: script.nodes, dataDir: dir, logLevel: logLevel})
	d := &demo{out: stdout, began: time.Now(), lc: lc, clients: map[int]*client.Client{}}
	if err == nil {
		d.say("consensus demo %s: %d nodes on loopback, data and logs in %s", name, script.nodes, dir)
		err = script.run(ctx, d)
	}
	interrupted := ctx.Err() != nil && err != nil
	if err == nil {
		d.say("demo complete; stopping the nodes")
	} else if interrupted {
		d.say("interrupted; stopping the nodes")
	}
	d.close()
	if lc != nil {
		_ = lc.close() // the directory is dir, removed below
	}
	// A failed demo keeps its directory: the node logs say what they saw.
	keepDir := keep || (err != nil && !interrupted)
	var rmErr error
	if !keepDir {
		rmErr = os.RemoveAll(dir)
	}
	switch {
	case interrupted:
		return failuref("demo %s: interrupted", name)
	case err != nil:
		return failuref("demo %s: %v (node logs kept in %s)", name, err, dir)
	case rmErr != nil:
		return failuref("demo %s: %v", name, rmErr)
	case keep:
		fmt.Fprintf(stdout, "data and logs kept in %s\n", dir)
	}
	return nil
}

// demo is one running demo: its cluster, a client per node, and the
// clock its narration counts from.
type demo struct {
	out   io.Writer
	began time.Time
	lc    *benchCluster

	mu      sync.Mutex // guards out and clients
	clients map[int]*client.Client
}

// say prints one step of the narration with the time since the demo
// began.
func (d *demo) say(format string, a ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "[%6.3fs] %s\n", time.Since(d.began).Seconds(), fmt.Sprintf(format, a...))
}

// id is node i's name.
func (d *demo) id(i int) string { return d.lc.nodes[i].id }

// via returns a client that sends every request to node i alone, so that
// the narration can say which node served what.
func (d *demo) via(i int) (*client.Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.clients[i]; ok {
		return c, nil
	}
	c, err := client.New(client.Config{Endpoints: []string{d.lc.nodes[i].http}, ClientID: "demo-via-" + d.id(i)})
	if err != nil {
		return nil, err
	}
	d.clients[i] = c
	return c, nil
}

func (d *demo) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.clients {
		_ = c.Close()
	}
}

// start starts nodes idx and says where they listen.
func (d *demo) start(idx ...int) error {
	for _, i := range idx {
		if err := d.lc.start(i); err != nil {
			return err
		}
		n := d.lc.nodes[i]
		d.say("started %s (pid %d): peers on %s, API on http://%s", n.id, d.lc.pid(i), n.peer, n.http)
	}
	return nil
}

// restart starts node i again and waits until it has caught up with the
// leader; it returns the node's status then and how long that took.
func (d *demo) restart(ctx context.Context, i int) (consensus.Status, time.Duration, error) {
	at := time.Now()
	if err := d.start(i); err != nil {
		return consensus.Status{}, 0, err
	}
	if err := d.lc.waitCaughtUp(ctx, i, demoBound); err != nil {
		return consensus.Status{}, 0, err
	}
	st, err := fetchStatus(ctx, d.lc.nodes[i].http)
	return st, time.Since(at).Round(time.Millisecond), err
}

// stop stops node i gracefully (SIGTERM; a leader hands over first) and
// waits for it to exit, killing it after demoBound.
func (d *demo) stop(i int) {
	d.lc.mu.Lock()
	cmd, done := d.lc.procs[i], d.lc.done[i]
	d.lc.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(demoBound):
		d.lc.kill(i)
	}
}

// elected waits until the nodes live agree on a leader among them and
// are connected to one another, and returns its index and status.
func (d *demo) elected(ctx context.Context, live ...int) (int, consensus.Status, error) {
	if err := d.lc.waitStable(ctx, demoBound, live...); err != nil {
		return -1, consensus.Status{}, fmt.Errorf("no leader: %w", err)
	}
	li, st := d.lc.leader(ctx)
	if li < 0 {
		return -1, st, errors.New("the leader stepped down at once")
	}
	return li, st, nil
}

// role says whether node i leads, for the narration.
func (d *demo) role(i, leader int) string {
	if i == leader {
		return "the leader"
	}
	return fmt.Sprintf("a follower, which forwards it to %s", d.id(leader))
}

// demoTwoNodes: with two members a quorum is both; the workflow example
// through the leader, read back from the follower.
func demoTwoNodes(ctx context.Context, d *demo) error {
	d.say("a cluster of 2 needs both nodes for a quorum (a majority of 2 is 2): nothing is elected or committed while one is down")
	if err := d.start(0); err != nil {
		return err
	}
	// n1 alone campaigns and never wins: it hears no leader, and one
	// vote of two is not a majority.
	ctx1, cancel := context.WithTimeout(ctx, time.Second)
	for ctx1.Err() == nil {
		if st, err := fetchStatus(ctx1, d.lc.nodes[0].http); err == nil && st.LeaderID != "" {
			cancel()
			return fmt.Errorf("%s alone says %s leads", d.id(0), st.LeaderID)
		}
		_ = sleepOrDone(ctx1, 50*time.Millisecond)
	}
	cancel()
	if err := ctx.Err(); err != nil {
		return err
	}
	st, err := fetchStatus(ctx, d.lc.nodes[0].http)
	if err != nil {
		return err
	}
	if st.LeaderID != "" {
		return fmt.Errorf("%s alone says %s leads", d.id(0), st.LeaderID)
	}
	d.say("%s alone has no leader after 1s (term %d): one vote of two is not a majority", d.id(0), st.Term)
	startedAt := time.Now()
	if err := d.start(1); err != nil {
		return err
	}
	li, st, err := d.elected(ctx)
	if err != nil {
		return err
	}
	d.say("leader elected: %s in term %d, %v after %s started; both nodes know it and are connected",
		d.id(li), st.Term, time.Since(startedAt).Round(time.Millisecond), d.id(1))
	follower := 1 - li
	return d.runPipeline(ctx, li, []int{li, follower}, follower)
}

// demoThreeNodes: writes through every node; a follower stopped while
// writes go on, restarted and caught up.
func demoThreeNodes(ctx context.Context, d *demo) error {
	if err := d.start(0, 1, 2); err != nil {
		return err
	}
	li, st, err := d.elected(ctx)
	if err != nil {
		return err
	}
	d.say("leader elected: %s in term %d; every node knows it and is connected to the other two", d.id(li), st.Term)
	followers := []int{(li + 1) % 3, (li + 2) % 3}
	// Writes go through every node in turn; the watch runs on the first
	// follower, and the second is the one stopped later.
	if err := d.runPipeline(ctx, li, []int{li, followers[0], followers[1]}, followers[0]); err != nil {
		return err
	}

	down := followers[1]
	d.say("stopping %s (a follower); 2 of 3 nodes are still a quorum, so writes go on", d.id(down))
	d.stop(down)
	d.say("%s stopped", d.id(down))
	const tasks = 20
	c, err := d.via(followers[0])
	if err != nil {
		return err
	}
	var first, last int64
	for k := range tasks {
		rev, err := c.Put(ctx, fmt.Sprintf("tasks/%02d", k), fmt.Appendf(nil, `{"task":%d,"done":true}`, k))
		if err != nil {
			return fmt.Errorf("write while %s is down: %w", d.id(down), err)
		}
		if k == 0 {
			first = rev
		}
		last = rev
	}
	d.say("wrote %d keys tasks/00..tasks/%02d through %s while %s was down: revisions %d to %d", tasks, tasks-1, d.id(followers[0]), d.id(down), first, last)

	dst, took, err := d.restart(ctx, down)
	if err != nil {
		return err
	}
	d.say("%s restarted and caught up in %v: applied index %d, following %s in term %d",
		d.id(down), took, dst.AppliedIndex, dst.LeaderID, dst.Term)
	dc, err := d.via(down)
	if err != nil {
		return err
	}
	items, err := collectItems(dc.List(ctx, "tasks/", client.WithConsistency(kv.Local)))
	if err != nil {
		return fmt.Errorf("local list on %s: %w", d.id(down), err)
	}
	if len(items) != tasks || items[len(items)-1].Revision != last {
		return fmt.Errorf("%s holds %d of the %d keys written while it was down", d.id(down), len(items), tasks)
	}
	d.say("%s holds all %d keys written while it was down (a local read of its own state, up to revision %d)", d.id(down), tasks, last)
	return nil
}

// collectItems gathers a list's items, for the demos' small prefixes.
func collectItems(seq iter.Seq2[kv.Item, error]) ([]kv.Item, error) {
	var items []kv.Item
	for it, err := range seq {
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}
