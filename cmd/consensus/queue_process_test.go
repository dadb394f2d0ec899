package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/internal/testwait"
)

// queueWorkerEnv makes the test binary run runQueueWorker: the value is
// the worker's name, then the nodes' HTTP addresses, comma-separated.
const queueWorkerEnv = "CONSENSUS_TEST_QUEUE_WORKER"

// queueTasksEnv scales TestQueueWorkersKilledAndPaused (default 2000).
const queueTasksEnv = "CONSENSUS_QUEUE_TASKS"

const procQueue = "work"

// slowWorker works 400 ms per task, so that when it is paused first (for
// longer than its claim's time to live) it is almost surely holding a
// claim: the late worker whose complete or heartbeat must be refused.
const slowWorker = "w1"

// runQueueWorker is one worker process: a client.Worker with 1 s claims,
// heartbeats every 300 ms, a few milliseconds of work per task, and a
// line on stdout for each claim's end: "done ID EPOCH" for a complete the
// cluster accepted, "stale ID EPOCH" for one it refused as a late
// worker's, "lost ID EPOCH" for a claim given up because a heartbeat was
// refused.
func runQueueWorker() int {
	name, addrs, _ := strings.Cut(os.Getenv(queueWorkerEnv), ",")
	c, err := client.New(client.Config{Endpoints: strings.Split(addrs, ","), RequestTimeout: 3 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	defer c.Close()
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		_ = out.Flush()
	}
	w := &client.Worker{Queue: c.Queue(procQueue), Name: name, TTL: time.Second, Heartbeat: 300 * time.Millisecond,
		Wait: 2 * time.Second,
		OnOutcome: func(claim api.Claim, completed bool, err error) {
			switch {
			case completed && err == nil:
				say("done %s %d", claim.Task.ID, claim.Epoch)
			case errors.Is(err, client.ErrStaleEpoch):
				say("stale %s %d", claim.Task.ID, claim.Epoch)
			case errors.Is(err, client.ErrClaimLost):
				say("lost %s %d", claim.Task.ID, claim.Epoch)
			}
		}}
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	err = w.Run(context.Background(), func(ctx context.Context, task api.Task) ([]byte, error) {
		work := time.Duration(rng.IntN(20)) * time.Millisecond
		if name == slowWorker {
			work = 400 * time.Millisecond
		}
		t := time.NewTimer(work) // the work
		defer t.Stop()
		<-t.C
		return []byte(strconv.Quote(name)), nil
	})
	fmt.Fprintln(os.Stderr, "worker:", err)
	return 1
}

// queueWorkerProc is one running worker process and what it said.
type queueWorkerProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when its output is read to the end
}

// Real processes: 8 workers over 2,000 tasks (CONSENSUS_QUEUE_TASKS), on
// a 3-node cluster, with workers killed (SIGKILL, then replaced) and
// paused (SIGSTOP past their claims' time to live, then SIGCONT) at
// random until every task is done. Every task ends done, none lost or
// dead; each was completed once as far as the workers saw (no task has
// two accepted completes) and the epoch of the accepted complete is the
// task's last; late workers' completes and heartbeats are refused (the
// first pause is of a worker that is almost surely mid-task).
func TestQueueWorkersKilledAndPaused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs real processes")
	}
	nTasks := 2000
	if s := os.Getenv(queueTasksEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive count", queueTasksEnv, s)
		}
		nTasks = n
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("CONSENSUS_TEST_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (replay the chaos schedule with CONSENSUS_TEST_SEED=%d), %d tasks", seed, seed, nTasks)
	rng := rand.New(rand.NewPCG(seed, 0x717565))

	pc := newProcCluster(t, buildBinary(t), 3)
	pc.startAll()
	pc.waitLeader()
	var addrs []string
	for _, id := range pc.ids {
		addrs = append(addrs, pc.https[id])
	}
	c, err := client.New(client.Config{Endpoints: addrs, RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := c.Queue(procQueue)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for p := range 8 {
		wg.Go(func() {
			for i := p; i < nTasks; i += 8 {
				if _, err := q.Enqueue(ctx, []byte(strconv.Itoa(i)), client.EnqueueOptions{ID: strconv.Itoa(i), MaxAttempts: api.MaxTaskAttempts}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("enqueue: %v", err)
	}
	t.Logf("enqueued %d tasks in %v", nTasks, time.Since(start).Round(time.Millisecond))

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	done := map[string][]int64{} // accepted completes by task: their epochs
	var stale, lost int
	var workers []*queueWorkerProc
	started := 0
	startWorker := func() *queueWorkerProc {
		started++
		w := &queueWorkerProc{name: fmt.Sprintf("w%d", started), done: make(chan struct{})}
		w.cmd = exec.Command(self, "-test.run=^$")
		w.cmd.Env = append(os.Environ(), queueWorkerEnv+"="+w.name+","+strings.Join(addrs, ","))
		w.cmd.Stderr = io.Discard
		out, err := w.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := w.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			defer close(w.done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var what, id string
				var epoch int64
				if _, err := fmt.Sscanf(sc.Text(), "%s %s %d", &what, &id, &epoch); err != nil {
					continue
				}
				mu.Lock()
				switch what {
				case "done":
					done[id] = append(done[id], epoch)
				case "stale":
					stale++
				case "lost":
					lost++
				}
				mu.Unlock()
			}
		}()
		return w
	}
	stop := func(w *queueWorkerProc) {
		_ = w.cmd.Process.Signal(syscall.SIGCONT)
		_ = w.cmd.Process.Kill()
		<-w.done
		_ = w.cmd.Wait()
	}
	for range 8 {
		workers = append(workers, startWorker())
	}
	var pausers sync.WaitGroup
	defer func() {
		pausers.Wait()
		for _, w := range workers {
			stop(w)
		}
	}()
	kills, pauses := 0, 0
	paused := map[*queueWorkerProc]bool{}
	var pausedMu sync.Mutex
	deadline := time.Now().Add(4 * time.Minute)
	var st api.QueueStats
	for {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		st, err = q.Stats(sctx)
		scancel()
		if err == nil && st.Done == nTasks {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every task done within 4 minutes: %+v (%v)", st, err)
		}
		// The chaos: every 200-500 ms a worker is killed and replaced,
		// or paused for 1.5-3 s (its claims' leases are 1 s).
		time.Sleep(time.Duration(200+rng.IntN(300)) * time.Millisecond) // the chaos's pace, not a wait for a condition
		i := rng.IntN(len(workers))
		if pauses == 0 {
			i = 0 // the slow worker, paused first
		}
		w := workers[i]
		pausedMu.Lock()
		isPaused := paused[w]
		pausedMu.Unlock()
		if isPaused {
			continue
		}
		if rng.IntN(2) == 0 && pauses > 0 {
			stop(w)
			workers[i] = startWorker()
			kills++
			continue
		}
		pauseFor := time.Duration(1500+rng.IntN(1500)) * time.Millisecond
		if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		pauses++
		pausedMu.Lock()
		paused[w] = true
		pausedMu.Unlock()
		pausers.Go(func() {
			time.Sleep(pauseFor) // the length of the pause, the point of the test
			_ = w.cmd.Process.Signal(syscall.SIGCONT)
			pausedMu.Lock()
			delete(paused, w)
			pausedMu.Unlock()
		})
	}
	elapsed := time.Since(start)
	pausers.Wait()
	// The slow worker, resumed, hears its claim refused (its heartbeat or
	// its complete).
	testwait.For(t, 20*time.Second, "a late worker refused", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return stale+lost > 0
	})
	// Every task done, each with one accepted complete at its last epoch.
	var twice, unseen []string
	for from := ""; ; {
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		page, err := q.Tasks(lctx, "", from, 1000)
		lcancel()
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		for _, task := range page.Tasks {
			if task.State != api.TaskDone {
				t.Errorf("task %s is %s", task.ID, task.State)
			}
			switch epochs := done[task.ID]; {
			case len(epochs) > 1:
				twice = append(twice, fmt.Sprintf("%s %v", task.ID, epochs))
			case len(epochs) == 0:
				unseen = append(unseen, task.ID) // its worker was killed after the answer, before the line
			case epochs[0] != task.Epoch:
				t.Errorf("task %s: the accepted complete had epoch %d, the task's last claim is %d", task.ID, epochs[0], task.Epoch)
			}
		}
		mu.Unlock()
		if !page.More {
			break
		}
		from = page.Tasks[len(page.Tasks)-1].ID
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d tasks done in %v by %d worker processes (%d killed -9, %d paused past their claims): %d completes accepted, %d late completes refused (stale_epoch), %d claims given up on a refused heartbeat, %d tasks done whose worker was killed before it said so; final counts %+v",
		nTasks, elapsed.Round(time.Millisecond), started, kills, pauses, len(done), stale, lost, len(unseen), st)
	if len(twice) > 0 {
		t.Fatalf("tasks completed more than once: %q", twice)
	}
	if st.Done != nTasks || st.Dead != 0 || st.Ready+st.Delayed+st.Claimed != 0 {
		t.Fatalf("final counts %+v, want all %d done", st, nTasks)
	}
	if len(unseen) > kills {
		t.Fatalf("%d done tasks without an accepted complete seen, more than the %d kills could hide: %q", len(unseen), kills, unseen)
	}
}
