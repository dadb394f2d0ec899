package main

// The workflow demo: a pipeline of steps as tasks of a queue, four worker
// processes (this binary's hidden demo-worker command), one killed with
// SIGKILL mid-step and one paused with SIGSTOP mid-step; each step is
// taken over after its claim's time to live and done exactly once, and
// the paused worker's late complete is refused (stale_epoch).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
)

// The workflow demo's shape: its queue and workflow, its workers, their
// claims' time to live and heartbeat, and how long each step's work
// takes (long enough for a signal to land mid-step).
const (
	wfQueue     = "pipeline"
	wfWorkflow  = "order-7"
	wfWorkers   = 4
	wfTTL       = 2 * time.Second
	wfHeartbeat = 500 * time.Millisecond
	wfWork      = 1500 * time.Millisecond
)

// wfEvent is one line a demo worker printed: "claimed ID EPOCH ATTEMPT",
// "done ID EPOCH" (a complete accepted), "stale ID EPOCH" (a complete
// refused with stale_epoch), "heartbeat-refused ID EPOCH".
type wfEvent struct {
	worker int // index in the demo's workers
	kind   string
	task   string
	epoch  int64
	at     time.Time
}

// wfWorker is one worker process of the demo.
type wfWorker struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once reaped
}

// wfRun is the workflow demo's state: its workers and every event they
// reported.
type wfRun struct {
	d       *demo
	workers []*wfWorker
	events  chan wfEvent
	seen    []wfEvent
}

// demoWorkflow: the pipeline's steps through four workers; kill -9 of
// one mid-step, SIGSTOP of another; each step done exactly once.
func demoWorkflow(ctx context.Context, d *demo) error {
	if err := d.start(0, 1, 2); err != nil {
		return err
	}
	li, st, err := d.elected(ctx)
	if err != nil {
		return err
	}
	d.say("leader elected: %s in term %d", d.id(li), st.Term)

	r := &wfRun{d: d, events: make(chan wfEvent, 1024)}
	defer r.stopWorkers()
	for i := range wfWorkers {
		if err := r.startWorker(i); err != nil {
			return err
		}
	}
	d.say("each worker claims a task of queue %q for %v (its lease), heartbeats every %v, works %v, then completes with its epoch",
		wfQueue, wfTTL, wfHeartbeat, wfWork)

	c, err := d.via(li)
	if err != nil {
		return err
	}
	q := c.Queue(wfQueue)
	steps := make([]string, len(pipelineSteps))
	for i, s := range pipelineSteps {
		steps[i] = s.step
	}
	var (
		takeover   time.Duration
		lateEpoch  int64
		lateWorker int
	)
	for k, step := range steps {
		id := wfWorkflow + "/" + step
		e, err := q.Enqueue(ctx, fmt.Appendf(nil, `{"step":%q,"workMs":%d}`, step, wfWork.Milliseconds()),
			client.EnqueueOptions{ID: id, Workflow: wfWorkflow})
		if err != nil {
			return fmt.Errorf("enqueue %s: %w", id, err)
		}
		d.say("step %d of %d: enqueued %s (workflow %s) at revision %d", k+1, len(steps), id, wfWorkflow, e.Revision)
		claim, err := r.await(ctx, "claimed", id, -1)
		if err != nil {
			return err
		}
		d.say("  %s claimed %s with epoch %d", r.workers[claim.worker].name, id, claim.epoch)
		switch step {
		case "transform": // killed mid-step: taken over after its time to live
			w := r.workers[claim.worker]
			pid := w.cmd.Process.Pid
			_ = w.cmd.Process.Signal(syscall.SIGKILL)
			<-w.done
			killedAt := time.Now()
			d.say("  kill -9 %s (pid %d) mid-step: its heartbeats stop, its claim ends when its lease runs out", w.name, pid)
			next, err := r.await(ctx, "claimed", id, -1)
			if err != nil {
				return err
			}
			if next.epoch <= claim.epoch {
				return fmt.Errorf("%s claimed again with epoch %d, not above %d", id, next.epoch, claim.epoch)
			}
			takeover = next.at.Sub(killedAt)
			d.say("  taken over by %s with epoch %d (> %d), %v after the kill (time to live %v)",
				r.workers[next.worker].name, next.epoch, claim.epoch, takeover.Round(time.Millisecond), wfTTL)
		case "validate": // paused mid-step: taken over, then late
			w := r.workers[claim.worker]
			if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				return fmt.Errorf("SIGSTOP %s: %w", w.name, err)
			}
			d.say("  SIGSTOP %s (pid %d) mid-step: it is paused, not dead, and sends no heartbeat", w.name, w.cmd.Process.Pid)
			next, err := r.await(ctx, "claimed", id, -1)
			if err != nil {
				return err
			}
			if next.epoch <= claim.epoch {
				return fmt.Errorf("%s claimed again with epoch %d, not above %d", id, next.epoch, claim.epoch)
			}
			d.say("  taken over by %s with epoch %d (> %d) once the paused worker's lease ran out",
				r.workers[next.worker].name, next.epoch, claim.epoch)
			if _, err := r.await(ctx, "done", id, next.epoch); err != nil {
				return err
			}
			d.say("  %s completed %s with epoch %d", r.workers[next.worker].name, id, next.epoch)
			if err := w.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				return fmt.Errorf("SIGCONT %s: %w", w.name, err)
			}
			d.say("  SIGCONT %s: it wakes up late, finishes its work and completes with epoch %d", w.name, claim.epoch)
			late, err := r.await(ctx, "stale", id, claim.epoch)
			if err != nil {
				return err
			}
			if late.worker != claim.worker {
				return fmt.Errorf("a stale complete of %s came from %s, not %s", id, r.workers[late.worker].name, w.name)
			}
			lateEpoch, lateWorker = claim.epoch, claim.worker
			d.say("  %s's late complete with epoch %d was refused: stale_epoch (the task was done with epoch %d)", w.name, claim.epoch, next.epoch)
			continue
		}
		done, err := r.await(ctx, "done", id, -1)
		if err != nil {
			return err
		}
		d.say("  %s completed %s with epoch %d", r.workers[done.worker].name, id, done.epoch)
	}

	// Each step done exactly once: one accepted complete per task, from
	// the epoch the task records; nothing else completed.
	r.drain()
	accepted := map[string][]wfEvent{}
	for _, ev := range r.seen {
		if ev.kind == "done" {
			accepted[ev.task] = append(accepted[ev.task], ev)
		}
	}
	for _, step := range steps {
		id := wfWorkflow + "/" + step
		info, err := q.Task(ctx, id)
		if err != nil {
			return fmt.Errorf("task %s: %w", id, err)
		}
		got := accepted[id]
		if len(got) != 1 || info.State != api.TaskDone || info.Epoch != got[0].epoch {
			return fmt.Errorf("%s: %d completes accepted, state %s with epoch %d", id, len(got), info.State, info.Epoch)
		}
		var res struct {
			By string `json:"by"`
		}
		_ = json.Unmarshal(info.Result, &res)
		d.say("  %-20s done once: epoch %d, attempt %d, completed by %s", id, info.Epoch, info.Attempt, res.By)
	}
	if len(accepted) != len(steps) {
		return fmt.Errorf("completes accepted for %d tasks, want %d", len(accepted), len(steps))
	}
	d.say("summary: each step done exactly once (%d steps, %d completes accepted); 1 worker killed, taken over %v after the kill; %s's late complete with epoch %d refused",
		len(steps), len(steps), takeover.Round(time.Millisecond), r.workers[lateWorker].name, lateEpoch)
	return nil
}

// startWorker starts worker i, a demo-worker process of this binary, its
// stdout read into r.events and its stderr appended to <dir>/w<i>.log.
func (r *wfRun) startWorker(i int) error {
	name := fmt.Sprintf("w%d", i+1)
	log, err := os.OpenFile(filepath.Join(r.d.lc.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.d.lc.self, "demo-worker", name, wfQueue, strings.Join(r.d.lc.addrs(), ","))
	cmd.Stderr = log
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start worker %s: %w", name, err)
	}
	w := &wfWorker{name: name, cmd: cmd, done: make(chan struct{})}
	r.workers = append(r.workers, w)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if ev, ok := parseWorkerLine(sc.Text()); ok {
				ev.worker, ev.at = i, time.Now()
				select {
				case r.events <- ev:
				default: // a demo sees a few dozen events: never reached
				}
			}
		}
		_ = cmd.Wait()
		log.Close()
		close(w.done)
	}()
	r.d.say("started worker %s (pid %d)", name, cmd.Process.Pid)
	return nil
}

// parseWorkerLine reads one line of a demo worker: KIND ID EPOCH ...
func parseWorkerLine(line string) (wfEvent, bool) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return wfEvent{}, false
	}
	epoch, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return wfEvent{}, false
	}
	return wfEvent{kind: f[0], task: f[1], epoch: epoch}, true
}

// await returns the next event of kind for task (and epoch, unless -1),
// keeping every event it reads in r.seen; it fails after demoBound.
func (r *wfRun) await(ctx context.Context, kind, task string, epoch int64) (wfEvent, error) {
	t := time.NewTimer(demoBound)
	defer t.Stop()
	for {
		select {
		case ev := <-r.events:
			r.seen = append(r.seen, ev)
			if ev.kind == kind && ev.task == task && (epoch < 0 || ev.epoch == epoch) {
				return ev, nil
			}
		case <-t.C:
			return wfEvent{}, fmt.Errorf("no %s of %s within %v", kind, task, demoBound)
		case <-ctx.Done():
			return wfEvent{}, ctx.Err()
		}
	}
}

// drain moves the events reported so far into r.seen.
func (r *wfRun) drain() {
	for {
		select {
		case ev := <-r.events:
			r.seen = append(r.seen, ev)
		default:
			return
		}
	}
}

// stopWorkers ends every worker (a paused one is resumed first) and
// waits until each is reaped.
func (r *wfRun) stopWorkers() {
	for _, w := range r.workers {
		_ = w.cmd.Process.Signal(syscall.SIGCONT)
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, w := range r.workers {
		select {
		case <-w.done:
		case <-time.After(demoBound):
			_ = w.cmd.Process.Kill()
			<-w.done
		}
	}
}

// demoWorkerCmd is the hidden command the workflow demo runs as its
// worker processes.
func demoWorkerCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "demo-worker NAME QUEUE ENDPOINTS",
		Short:  "a worker process of consensus demo workflow",
		Hidden: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 3 {
				return usageErrorf("demo-worker: want NAME QUEUE ENDPOINTS, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if err := runDemoWorker(ctx, args[0], args[1], strings.Split(args[2], ","), stdout); err != nil {
				return failuref("demo-worker %s: %v", args[0], err)
			}
			return nil
		},
	}
	return withGlobalFlags(cmd)
}

// runDemoWorker claims tasks of queue until ctx ends. For each it
// heartbeats in the background, works for the task's workMs whatever
// happens meanwhile (as a worker that cannot tell it was paused would),
// then completes with its epoch, and prints one line per event (see
// wfEvent). The fence, not the worker, keeps a late complete out.
func runDemoWorker(ctx context.Context, name, queue string, endpoints []string, stdout io.Writer) error {
	c, err := client.New(client.Config{Endpoints: endpoints, ClientID: "demo-worker-" + name, RequestTimeout: 3 * time.Second})
	if err != nil {
		return err
	}
	defer c.Close()
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stdout, format+"\n", a...)
	}
	q := c.Queue(queue)
	for ctx.Err() == nil {
		claim, err := q.Claim(ctx, name, wfTTL, time.Second)
		if err != nil {
			if !errors.Is(err, client.ErrNoTask) && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "%s: claim: %v\n", name, err)
				_ = sleepOrDone(ctx, 100*time.Millisecond)
			}
			continue
		}
		id, epoch := claim.Task.ID, claim.Epoch
		say("claimed %s %d %d", id, epoch, claim.Task.Attempt)
		var work struct {
			WorkMs int64 `json:"workMs"`
		}
		_ = json.Unmarshal(claim.Task.Data, &work)
		hctx, stopHeartbeat := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() {
			t := time.NewTicker(wfHeartbeat)
			defer t.Stop()
			for {
				select {
				case <-hctx.Done():
					return
				case <-t.C:
				}
				if _, err := q.Heartbeat(hctx, id, epoch); errors.Is(err, client.ErrStaleEpoch) {
					say("heartbeat-refused %s %d", id, epoch)
					return
				}
			}
		})
		// The work: a timer, so that a paused process finds it over
		// when it resumes.
		t := time.NewTimer(time.Duration(work.WorkMs) * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		stopHeartbeat()
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
		err = q.Complete(context.WithoutCancel(ctx), id, epoch, fmt.Appendf(nil, `{"by":%q}`, name))
		switch {
		case err == nil:
			say("done %s %d", id, epoch)
		case errors.Is(err, client.ErrStaleEpoch):
			say("stale %s %d", id, epoch)
		default:
			fmt.Fprintf(os.Stderr, "%s: complete %s with epoch %d: %v\n", name, id, epoch, err)
		}
	}
	return nil
}
