package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
)

// queueCmd serves task queues (docs/API.md "Task queues").
func (c *cli) queueCmd() *cobra.Command {
	return groupCmd("queue", "push, claim, complete and fail tasks of a queue; list and count them",
		c.queuePushCmd(), c.queueClaimCmd(), c.queueCompleteCmd(), c.queueFailCmd(), c.queueRequeueCmd(),
		c.queueGetCmd(), c.queueListCmd(), c.queueStatsCmd())
}

// parseEpoch reads a claim's epoch argument.
func parseEpoch(what, s string) (int64, error) {
	e, err := strconv.ParseInt(s, 10, 64)
	if err != nil || e < 1 {
		return 0, usageErrorf("%s %q: want the claim's epoch, an integer of at least 1", what, s)
	}
	return e, nil
}

// queueFail is fail with the queues' own refusals.
func queueFail(what string, err error) error {
	switch {
	case errors.Is(err, client.ErrStaleEpoch):
		return &exitError{code: exitPrecondition, msg: what + ": stale epoch: not the task's current claim (lost, or the task is finished)"}
	case errors.Is(err, client.ErrTaskNotFound):
		return &exitError{code: exitNotFound, msg: what + ": task not found"}
	case errors.Is(err, api.ErrTaskNotDead):
		return &exitError{code: exitPrecondition, msg: what + ": the task is not dead"}
	case errors.Is(err, client.ErrNoTask):
		return &exitError{code: exitNotFound, msg: what + ": no task became ready within --wait"}
	}
	return fail(what, err)
}

func (c *cli) queuePushCmd() *cobra.Command {
	var id, workflow, runAt string
	var delay time.Duration
	var attempts int
	cmd := &cobra.Command{
		Use:   "push QUEUE DATA",
		Short: "add a task with DATA (a JSON value) to QUEUE and print its id",
		Long: `Add a task to QUEUE with DATA, any JSON value (a string needs quotes), and print
its id and the log index that created it. --id names it: pushing an id the queue
holds adds nothing and prints the existing task. --delay D or --run-at TIME
(RFC 3339) puts off its first claim; --max-attempts N bounds its claims (default
3); --workflow W records the workflow it belongs to.`,
		Args: exactArgs("QUEUE", "DATA"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := jsonArg("queue push: DATA", []byte(args[1]), false)
			if err != nil {
				return err
			}
			o := client.EnqueueOptions{ID: id, Delay: delay, MaxAttempts: attempts, Workflow: workflow}
			if runAt != "" {
				if o.RunAt, err = time.Parse(time.RFC3339Nano, runAt); err != nil {
					return usageErrorf("queue push: --run-at %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", runAt)
				}
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				e, err := s.client.Queue(args[0]).Enqueue(ctx, data, o)
				if err != nil {
					return queueFail("queue push", err)
				}
				if s.json {
					return s.printJSON(e)
				}
				return s.table([]string{"ID", "REVISION"}, [][]string{{e.ID, strconv.FormatInt(e.Revision, 10)}})
			})
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the task's id (default: one the server picks)")
	cmd.Flags().DurationVar(&delay, "delay", 0, "put off the first claim by this long")
	cmd.Flags().StringVar(&runAt, "run-at", "", "put off the first claim until this time (RFC 3339)")
	cmd.Flags().IntVar(&attempts, "max-attempts", 0, "the most claims of the task (default 3)")
	cmd.Flags().StringVar(&workflow, "workflow", "", "the workflow the task belongs to")
	return cmd
}

func (c *cli) queueClaimCmd() *cobra.Command {
	var worker, ttlFlag string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "claim QUEUE",
		Short: "claim the next ready task of QUEUE; print its id, epoch, lease and data",
		Long: `Claim the next ready task of QUEUE for --worker and print its id, epoch (pass it
to complete and fail), the claim's lease, attempt and data. The claim lasts --ttl
(default 30s) unless kept alive: then the task is claimable again, and this epoch
is refused (exit code 4). --wait D waits up to D for a task (default: try once);
none ready exits with code 3.`,
		Args: exactArgs("QUEUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ttl, err := parseTTL("queue claim: --ttl", ttlFlag)
			if err != nil {
				return err
			}
			if worker == "" {
				return usageErrorf("queue claim: --worker is required: it names the claimer")
			}
			if wait < 0 || wait > client.MaxLockWait {
				return usageErrorf("queue claim: --wait %v: want 0 to %v", wait, client.MaxLockWait)
			}
			return c.withClient(cmd, false, func(ctx context.Context, s *session) error {
				ctx, cancel := context.WithTimeout(ctx, wait+s.timeout)
				defer cancel()
				claim, err := s.client.Queue(args[0]).Claim(ctx, worker, ttl, wait)
				if err != nil {
					return queueFail("queue claim", err)
				}
				if s.json {
					return s.printJSON(claim)
				}
				return s.table([]string{"ID", "EPOCH", "LEASE", "ATTEMPT", "DATA"}, [][]string{{claim.Task.ID,
					strconv.FormatInt(claim.Epoch, 10), claim.Lease.String(), strconv.Itoa(claim.Task.Attempt), valueCell(claim.Task.Data)}})
			})
		},
	}
	cmd.Flags().StringVar(&worker, "worker", "", "the worker's name (required)")
	cmd.Flags().StringVar(&ttlFlag, "ttl", "30s", "the claim's lease: how long it lasts without a heartbeat")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for a task (0: try once)")
	return cmd
}

func (c *cli) queueCompleteCmd() *cobra.Command {
	var result string
	cmd := &cobra.Command{
		Use:   "complete QUEUE ID EPOCH",
		Short: "complete task ID claimed with EPOCH (--result JSON)",
		Long: `Complete task ID of QUEUE, claimed with EPOCH, with --result (a JSON value).
An epoch that is not the task's current claim is refused with exit code 4
(stale epoch): the claim was lost or the task is finished; nothing changes.`,
		Args: exactArgs("QUEUE", "ID", "EPOCH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			epoch, err := parseEpoch("queue complete: EPOCH", args[2])
			if err != nil {
				return err
			}
			var res []byte
			if result != "" {
				if res, err = jsonArg("queue complete: --result", []byte(result), false); err != nil {
					return err
				}
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				if err := s.client.Queue(args[0]).Complete(ctx, args[1], epoch, res); err != nil {
					return queueFail("queue complete "+args[1], err)
				}
				return s.printDone()
			})
		},
	}
	cmd.Flags().StringVar(&result, "result", "", "the task's result, a JSON value")
	return cmd
}

func (c *cli) queueFailCmd() *cobra.Command {
	var msg string
	var retry time.Duration
	cmd := &cobra.Command{
		Use:   "fail QUEUE ID EPOCH --error MSG",
		Short: "fail task ID claimed with EPOCH: retried later, or dead",
		Long: `Fail the claim with EPOCH of task ID of QUEUE with --error MSG. The task is
retried after --retry-after (default: 1s doubled per attempt, at most 5m), or is
dead when its attempts are used up. A stale epoch exits with code 4.`,
		Args: exactArgs("QUEUE", "ID", "EPOCH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			epoch, err := parseEpoch("queue fail: EPOCH", args[2])
			if err != nil {
				return err
			}
			var after *time.Duration
			if cmd.Flags().Changed("retry-after") {
				if retry < 0 {
					return usageErrorf("queue fail: --retry-after %v: want 0 or more", retry)
				}
				after = &retry
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				if err := s.client.Queue(args[0]).Fail(ctx, args[1], epoch, msg, after); err != nil {
					return queueFail("queue fail "+args[1], err)
				}
				return s.printDone()
			})
		},
	}
	cmd.Flags().StringVar(&msg, "error", "", "what went wrong")
	cmd.Flags().DurationVar(&retry, "retry-after", 0, "retry after this long instead of the default backoff")
	return cmd
}

func (c *cli) queueRequeueCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "requeue QUEUE ID",
		Short: "give dead task ID fresh attempts",
		Args:  exactArgs("QUEUE", "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				if err := s.client.Queue(args[0]).Requeue(ctx, args[1]); err != nil {
					return queueFail("queue requeue "+args[1], err)
				}
				return s.printDone()
			})
		},
	}
}

// taskRow is a task's line in a table.
func taskRow(t api.TaskInfo) []string {
	return []string{t.ID, t.State, strconv.Itoa(t.Attempt) + "/" + strconv.Itoa(t.MaxAttempts),
		strconv.FormatInt(t.Epoch, 10), valueCell(t.Data), valueCell(t.Result), t.Error}
}

var taskHeader = []string{"ID", "STATE", "ATTEMPT", "EPOCH", "DATA", "RESULT", "ERROR"}

func (c *cli) queueGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get QUEUE ID",
		Short: "show task ID: its state, attempts, epoch, data, result and error",
		Args:  exactArgs("QUEUE", "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				t, err := s.client.Queue(args[0]).Task(ctx, args[1])
				if err != nil {
					return queueFail("queue get "+args[1], err)
				}
				if s.json {
					return s.printJSON(t)
				}
				return s.table(taskHeader, [][]string{taskRow(t)})
			})
		},
	}
}

func (c *cli) queueListCmd() *cobra.Command {
	var state, after string
	var limit int
	cmd := &cobra.Command{
		Use:     "list QUEUE",
		Aliases: []string{"ls"},
		Short:   "list QUEUE's tasks by id (--state dead, --limit N, --after ID)",
		Args:    exactArgs("QUEUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch state {
			case "", api.TaskReady, api.TaskDelayed, api.TaskClaimed, api.TaskDone, api.TaskDead:
			default:
				return usageErrorf("queue list: --state %q: want ready, delayed, claimed, done or dead", state)
			}
			if limit < 1 || limit > 1000 {
				return usageErrorf("queue list: --limit %d: want 1 to 1000", limit)
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				l, err := s.client.Queue(args[0]).Tasks(ctx, state, after, limit)
				if err != nil {
					return queueFail("queue list", err)
				}
				if s.json {
					l.Tasks = nonNil(l.Tasks)
					return s.printJSON(l)
				}
				rows := make([][]string, len(l.Tasks))
				for i, t := range l.Tasks {
					rows[i] = taskRow(t)
				}
				return s.table(taskHeader, rows)
			})
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only tasks in this state: ready, delayed, claimed, done or dead")
	cmd.Flags().StringVar(&after, "after", "", "start after this task id (the last one listed)")
	cmd.Flags().IntVar(&limit, "limit", 100, "list at most this many tasks (1 to 1000)")
	return cmd
}

func (c *cli) queueStatsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stats QUEUE",
		Short: "count QUEUE's tasks by state",
		Args:  exactArgs("QUEUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				st, err := s.client.Queue(args[0]).Stats(ctx)
				if err != nil {
					return queueFail("queue stats", err)
				}
				if s.json {
					return s.printJSON(st)
				}
				itoa := strconv.Itoa
				return s.table([]string{"QUEUE", "READY", "DELAYED", "CLAIMED", "DONE", "DEAD"},
					[][]string{{st.Queue, itoa(st.Ready), itoa(st.Delayed), itoa(st.Claimed), itoa(st.Done), itoa(st.Dead)}})
			})
		},
	}
}

// printDone reports an accepted complete, fail or requeue: "OK", or {}.
func (s *session) printDone() error {
	if s.json {
		return s.printJSON(struct{}{})
	}
	_, err := fmt.Fprintln(s.stdout, "OK")
	return err
}
