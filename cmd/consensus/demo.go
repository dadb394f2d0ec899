package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
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
}

// demoCmd runs one demo: exit 0 when every step worked, 1 with one error
// line otherwise, 2 for a usage error.
func demoCmd(stdout io.Writer) *cobra.Command {
	var (
		keep     bool
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "demo 2node|3node|failover [flags]",
		Short: "run a narrated demo on a local cluster: 2node, 3node or failover",
		Long:  demoLong,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return usageErrorf("demo: which demo? 2node, 3node or failover (see 'consensus demo --help')")
			case len(args) > 1:
				return usageErrorf("demo: unexpected argument %q (see 'consensus demo --help')", args[1])
			}
			if _, ok := demoScripts[args[0]]; !ok {
				return usageErrorf("demo: unknown demo %q: want 2node, 3node or failover", args[0])
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

// workflowFields is what the demos read back from a workflow.
type workflowFields struct {
	Name     string  `json:"name"`
	Status   string  `json:"status"`
	Step     string  `json:"step"`
	Progress float64 `json:"progress"`
	Result   string  `json:"result"`
}

func decodeWorkflow(v []byte) (workflowFields, error) {
	var f workflowFields
	if err := json.Unmarshal(v, &f); err != nil {
		return f, fmt.Errorf("workflow value %s: %w", v, err)
	}
	return f, nil
}

// pipelineID is the seed's workflow example.
const pipelineID = "data-pipeline"

// pipelineSteps are the updates the demos make to it.
var pipelineSteps = []struct {
	step     string
	progress float64
}{{"extract", 0.25}, {"transform", 0.5}, {"validate", 0.75}, {"load", 1}}

// awaitEvent takes responses from w until it has delivered revision rev,
// and returns the event at rev under key.
func awaitEvent(ctx context.Context, w *client.Watcher, key string, rev int64) (kv.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, demoBound)
	defer cancel()
	for {
		select {
		case resp, ok := <-w.C():
			if !ok {
				return kv.Event{}, fmt.Errorf("the watch ended: %w", w.Err())
			}
			for _, ev := range resp.Events {
				if ev.Item.Revision == rev && ev.Item.Key == key {
					return ev, nil
				}
			}
			if resp.Revision >= rev {
				return kv.Event{}, fmt.Errorf("the watch passed revision %d without the change to %s", rev, key)
			}
		case <-ctx.Done():
			return kv.Event{}, fmt.Errorf("the watch did not deliver revision %d: %w", rev, ctx.Err())
		}
	}
}

// runPipeline runs the seed's workflow example: start it through
// writers[0], update it through the writers in turn, stop it, each change
// seen by a watch on node watcher; then every node must hold the final
// state locally.
func (d *demo) runPipeline(ctx context.Context, leader int, writers []int, watcher int) error {
	wc, err := d.via(watcher)
	if err != nil {
		return err
	}
	key := kv.WorkflowPrefix + pipelineID
	w, err := wc.Watch(ctx, kv.WorkflowPrefix, 0)
	if err != nil {
		return fmt.Errorf("watch on %s: %w", d.id(watcher), err)
	}
	defer w.Close()
	d.say("watching %s* through %s from revision %d on", kv.WorkflowPrefix, d.id(watcher), w.StartRevision())

	seen := func(rev int64) error {
		ev, err := awaitEvent(ctx, w, key, rev)
		if err != nil {
			return err
		}
		f, err := decodeWorkflow(ev.Item.Value)
		if err != nil {
			return err
		}
		d.say("  the watch on %s saw %s %s at revision %d (status %s, progress %g)",
			d.id(watcher), ev.Type, ev.Item.Key, ev.Item.Revision, f.Status, f.Progress)
		return nil
	}

	wr, err := d.via(writers[0])
	if err != nil {
		return err
	}
	rev, err := wr.StartWorkflow(ctx, pipelineID, []byte(`{"name":"Data Processing","step":"queued","progress":0}`))
	if err != nil {
		return fmt.Errorf("start workflow through %s: %w", d.id(writers[0]), err)
	}
	d.say("started workflow %s through %s (%s): revision %d", pipelineID, d.id(writers[0]), d.role(writers[0], leader), rev)
	if err := seen(rev); err != nil {
		return err
	}

	// Read it back from a node other than the one that wrote it.
	reader := watcher
	if reader == writers[0] {
		reader = (writers[0] + 1) % len(d.lc.nodes)
	}
	rc, err := d.via(reader)
	if err != nil {
		return err
	}
	wf, err := rc.WorkflowState(ctx, pipelineID)
	if err != nil {
		return fmt.Errorf("read workflow from %s: %w", d.id(reader), err)
	}
	f, err := decodeWorkflow(wf.Value)
	if err != nil {
		return err
	}
	if wf.Revision != rev || f.Status != kv.StatusRunning || f.Name != "Data Processing" {
		return fmt.Errorf("workflow read back from %s is %s at revision %d, want running at %d", d.id(reader), wf.Value, wf.Revision, rev)
	}
	kind := "a follower"
	if reader == leader {
		kind = "the leader"
	}
	d.say("workflow state read back from %s (%s, linearizable read): %q is %s, step %s, progress %g, revision %d",
		d.id(reader), kind, f.Name, f.Status, f.Step, f.Progress, wf.Revision)

	for k, s := range pipelineSteps {
		via := writers[(k+1)%len(writers)]
		c, err := d.via(via)
		if err != nil {
			return err
		}
		fields, _ := json.Marshal(map[string]any{"step": s.step, "progress": s.progress})
		rev, err = c.UpdateWorkflowState(ctx, pipelineID, fields)
		if err != nil {
			return fmt.Errorf("update workflow through %s: %w", d.id(via), err)
		}
		d.say("updated it through %s (%s): step %s, progress %g: revision %d", d.id(via), d.role(via, leader), s.step, s.progress, rev)
		if err := seen(rev); err != nil {
			return err
		}
	}
	c, err := d.via(writers[0])
	if err != nil {
		return err
	}
	rev, err = c.StopWorkflow(ctx, pipelineID, []byte(`{"result":"completed"}`))
	if err != nil {
		return fmt.Errorf("stop workflow through %s: %w", d.id(writers[0]), err)
	}
	d.say("stopped it through %s with result completed: revision %d", d.id(writers[0]), rev)
	if err := seen(rev); err != nil {
		return err
	}
	return d.replicated(ctx, key, rev)
}

// replicated waits until every node running holds key at revision rev
// in its own applied state (a local read), and says so.
func (d *demo) replicated(ctx context.Context, key string, rev int64) error {
	ctx, cancel := context.WithTimeout(ctx, demoBound)
	defer cancel()
	for i := range d.lc.nodes {
		c, err := d.via(i)
		if err != nil {
			return err
		}
		for {
			it, err := c.Get(ctx, key, client.WithConsistency(kv.Local))
			if err == nil && it.Revision == rev {
				f, err := decodeWorkflow(it.Value)
				if err != nil {
					return err
				}
				d.say("  %s holds %s locally: status %s, result %s, progress %g, revision %d, version %d",
					d.id(i), key, f.Status, f.Result, f.Progress, it.Revision, it.Version)
				break
			}
			if err := sleepOrDone(ctx, 5*time.Millisecond); err != nil {
				return fmt.Errorf("%s did not apply revision %d of %s: %w", d.id(i), rev, key, err)
			}
		}
	}
	return nil
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
	items, _, err := dc.List(ctx, "tasks/", client.WithConsistency(kv.Local))
	if err != nil {
		return fmt.Errorf("local list on %s: %w", d.id(down), err)
	}
	if len(items) != tasks || items[len(items)-1].Revision != last {
		return fmt.Errorf("%s holds %d of the %d keys written while it was down", d.id(down), len(items), tasks)
	}
	d.say("%s holds all %d keys written while it was down (a local read of its own state, up to revision %d)", d.id(down), tasks, last)
	return nil
}

// Failover writers: how many, and how long they write before the kill
// and after the first write acknowledged after it.
const (
	failoverWriters = 4
	failoverBefore  = time.Second
	failoverAfter   = time.Second
)

// demoWrite is one acknowledged write of the failover demo.
type demoWrite struct {
	key, value  string
	sent, acked time.Time
	revision    int64
}

// demoFailover: kill -9 of the leader under writes; time without a
// leader, time to the next acknowledged write, the killed node restarted
// and every acknowledged write checked on every node.
func demoFailover(ctx context.Context, d *demo) error {
	if err := d.start(0, 1, 2); err != nil {
		return err
	}
	li, st, err := d.elected(ctx)
	if err != nil {
		return err
	}
	d.say("leader elected: %s in term %d", d.id(li), st.Term)

	// Writers reach the cluster through the Go client, the leader first
	// in its endpoint list: when it dies, the client moves on, retrying a
	// write that lost its answer with the same request id.
	endpoints := []string{d.lc.nodes[li].http}
	for i, n := range d.lc.nodes {
		if i != li {
			endpoints = append(endpoints, n.http)
		}
	}
	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	var (
		mu     sync.Mutex
		writes []demoWrite
		failed int // writes not acknowledged: not applied, or of unknown outcome
		wg     sync.WaitGroup
	)
	firstAck := make(chan struct{}, 1)
	for w := range failoverWriters {
		c, err := client.New(client.Config{Endpoints: endpoints, RetryBackoff: 10 * time.Millisecond})
		if err != nil {
			return err
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; wctx.Err() == nil; seq++ {
				key := fmt.Sprintf("orders/w%d/%06d", w, seq)
				value := fmt.Sprintf(`{"writer":%d,"seq":%d}`, w, seq)
				sent := time.Now()
				rev, err := c.Put(wctx, key, []byte(value))
				acked := time.Now()
				mu.Lock()
				if err == nil {
					writes = append(writes, demoWrite{key: key, value: value, sent: sent, acked: acked, revision: rev})
					select {
					case firstAck <- struct{}{}:
					default:
					}
				} else if wctx.Err() == nil {
					failed++
				}
				mu.Unlock()
				_ = sleepOrDone(wctx, time.Millisecond)
			}
		}()
	}
	d.say("%d writers put orders/w<writer>/<seq> through the Go client, endpoints %s first", failoverWriters, d.id(li))
	if err := sleepOrDone(ctx, failoverBefore); err != nil {
		return err
	}
	mu.Lock()
	before := len(writes)
	mu.Unlock()
	if before == 0 {
		return fmt.Errorf("no write acknowledged in %v", failoverBefore)
	}
	d.say("%d writes acknowledged so far", before)

	var survivors []int
	for i := range d.lc.nodes {
		if i != li {
			survivors = append(survivors, i)
		}
	}
	killed := d.id(li)
	pid := d.lc.pid(li)
	killedAt := time.Now()
	d.lc.kill(li)
	d.say("kill -9 %s (pid %d), the leader in term %d", killed, pid, st.Term)

	// The first moment a survivor names a new leader.
	var newLeader consensus.Status
	lctx, cancel := context.WithTimeout(ctx, demoBound)
	defer cancel()
	for newLeader.LeaderID == "" {
		for _, i := range survivors {
			if s, err := fetchStatus(lctx, d.lc.nodes[i].http); err == nil && s.LeaderID != "" && s.LeaderID != killed {
				newLeader = s
				break
			}
		}
		if newLeader.LeaderID == "" {
			if err := sleepOrDone(lctx, time.Millisecond); err != nil {
				return fmt.Errorf("no new leader: %w", err)
			}
		}
	}
	leaderless := time.Since(killedAt)
	who := fmt.Sprintf("%s became the leader", newLeader.LeaderID)
	if newLeader.NodeID != newLeader.LeaderID {
		who = fmt.Sprintf("%s follows %s", newLeader.NodeID, newLeader.LeaderID)
	}
	d.say("the cluster was without a leader for %v: %s in term %d", leaderless.Round(time.Microsecond), who, newLeader.Term)

	// The first write acknowledged that was sent after the kill.
	var firstAfter time.Duration
	for firstAfter == 0 {
		mu.Lock()
		for _, w := range writes {
			if w.sent.After(killedAt) && (firstAfter == 0 || w.acked.Sub(killedAt) < firstAfter) {
				firstAfter = w.acked.Sub(killedAt)
			}
		}
		mu.Unlock()
		if firstAfter == 0 {
			select {
			case <-firstAck:
			case <-lctx.Done():
				return fmt.Errorf("no write acknowledged after the kill: %w", lctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	d.say("first write acknowledged %v after the kill (sent after it, through a surviving node)", firstAfter.Round(time.Microsecond))
	if err := sleepOrDone(ctx, failoverAfter); err != nil {
		return err
	}
	stopWriters()
	wg.Wait()
	d.say("writers stopped: %d writes acknowledged, %d failed", len(writes), failed)

	kst, took, err := d.restart(ctx, li)
	if err != nil {
		return err
	}
	d.say("%s restarted on its data directory and caught up in %v: applied index %d, following %s in term %d",
		killed, took, kst.AppliedIndex, kst.LeaderID, kst.Term)

	// Every acknowledged write, on every node, with its value, applied
	// once (version 1: each key is written once).
	want := make(map[string]demoWrite, len(writes))
	for _, w := range writes {
		want[w.key] = w
	}
	for i := range d.lc.nodes {
		if err := d.lc.waitCaughtUp(ctx, i, demoBound); err != nil {
			return err
		}
		c, err := d.via(i)
		if err != nil {
			return err
		}
		items, _, err := c.List(ctx, "orders/", client.WithConsistency(kv.Local))
		if err != nil {
			return fmt.Errorf("local list on %s: %w", d.id(i), err)
		}
		got := make(map[string]kv.Item, len(items))
		for _, it := range items {
			got[it.Key] = it
		}
		var missing []string
		for k, w := range want {
			it, ok := got[k]
			if !ok || it.Revision != w.revision || string(it.Value) != w.value || it.Version != 1 {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			return fmt.Errorf("%s: %d of %d acknowledged writes missing or changed, first %s", d.id(i), len(missing), len(want), missing[0])
		}
		note := ""
		if i == li {
			note = " (the node that was killed)"
		}
		d.say("  %s%s: all %d acknowledged writes present, each with its value, revision and version 1 (applied once)",
			d.id(i), note, len(want))
	}
	d.say("summary: %d acknowledged writes, none lost; leaderless for %v, first write %v after the kill",
		len(want), leaderless.Round(time.Microsecond), firstAfter.Round(time.Microsecond))
	return nil
}
