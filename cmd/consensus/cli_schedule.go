package main

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
)

// scheduleCmd serves schedules (docs/API.md "Schedules").
func (c *cli) scheduleCmd() *cobra.Command {
	return groupCmd("schedule", "put, list and delete schedules that enqueue a task per tick",
		c.schedulePutCmd(), c.scheduleGetCmd(), c.scheduleListCmd(), c.scheduleDeleteCmd())
}

// scheduleFail is fail with the schedules' own refusal.
func scheduleFail(what string, err error) error {
	if errors.Is(err, client.ErrScheduleNotFound) {
		return &exitError{code: exitNotFound, msg: what + ": schedule not found"}
	}
	return fail(what, err)
}

func (c *cli) schedulePutCmd() *cobra.Command {
	var cronExpr string
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "put ID QUEUE DATA (--cron EXPR | --every D)",
		Short: "create or replace schedule ID: a task with DATA into QUEUE at each tick",
		Long: `Create or replace schedule ID: at each tick the cluster enqueues a task with DATA
(any JSON value; a string needs quotes) into QUEUE, with the id
sched:ID:<tick in Unix ms>, once per tick whatever happens to the leader.
--cron EXPR ticks by a cron expression of 5 fields (minute hour day-of-month
month day-of-week) or 6 with seconds first, or @hourly, @daily and the like,
in UTC; --every D ticks at each multiple of D (1s to 720h) since the Unix
epoch. Give exactly one. Ticks missed while there was no leader are enqueued
when one is back, up to 100 per schedule (the newest). Prints the id and the
log index of the put; a put equal to the schedule changes nothing.`,
		Args: exactArgs("ID", "QUEUE", "DATA"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := jsonArg("schedule put: DATA", []byte(args[2]), false)
			if err != nil {
				return err
			}
			if (cronExpr == "") == (every == 0) {
				return usageErrorf("schedule put: give --cron EXPR or --every D, one of them")
			}
			if every != 0 && (every < api.MinScheduleEveryMs*time.Millisecond || every > api.MaxScheduleEveryMs*time.Millisecond || every%time.Millisecond != 0) {
				return usageErrorf("schedule put: --every %v: want 1s to 720h, in whole milliseconds", every)
			}
			req := api.ScheduleRequest{Cron: cronExpr, EveryMs: every.Milliseconds(), Queue: args[1], Data: data}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				p, err := s.client.PutSchedule(ctx, args[0], req)
				if err != nil {
					return scheduleFail("schedule put", err)
				}
				if s.json {
					return s.printJSON(p)
				}
				return s.table([]string{"ID", "REVISION"}, [][]string{{p.ID, strconv.FormatInt(p.Revision, 10)}})
			})
		},
	}
	cmd.Flags().StringVar(&cronExpr, "cron", "", "a cron expression of 5 or 6 fields (seconds first), in UTC")
	cmd.Flags().DurationVar(&every, "every", 0, "a fixed interval (1s to 720h)")
	return cmd
}

var scheduleHeader = []string{"ID", "QUEUE", "SPEC", "NEXT-TICK", "LAST-TICK", "FIRED", "SKIPPED"}

func scheduleRow(s api.ScheduleInfo) []string {
	spec := s.Cron
	if spec == "" {
		spec = "every " + (time.Duration(s.EveryMs) * time.Millisecond).String()
	}
	orDash := func(t string) string {
		if t == "" {
			return "-"
		}
		return t
	}
	return []string{s.ID, s.Queue, spec, orDash(s.NextTick), orDash(s.LastTick),
		strconv.FormatInt(s.Fired, 10), strconv.FormatInt(s.Skipped, 10)}
}

func (c *cli) scheduleGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "show schedule ID: its next tick and the last it fired",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				info, err := s.client.Schedule(ctx, args[0])
				if err != nil {
					return scheduleFail("schedule get "+args[0], err)
				}
				if s.json {
					return s.printJSON(info)
				}
				return s.table(scheduleHeader, [][]string{scheduleRow(info)})
			})
		},
	}
}

func (c *cli) scheduleListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "list the schedules by id, with their next and last ticks",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				list, err := s.client.Schedules(ctx)
				if err != nil {
					return scheduleFail("schedule list", err)
				}
				if s.json {
					return s.printJSON(api.ScheduleList{Schedules: nonNil(list)})
				}
				rows := make([][]string, len(list))
				for i, info := range list {
					rows[i] = scheduleRow(info)
				}
				return s.table(scheduleHeader, rows)
			})
		},
	}
}

func (c *cli) scheduleDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm"},
		Short:   "delete schedule ID (the tasks it enqueued stay)",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				if _, err := s.client.DeleteSchedule(ctx, args[0]); err != nil {
					return scheduleFail("schedule delete "+args[0], err)
				}
				return s.printDone()
			})
		},
	}
}
