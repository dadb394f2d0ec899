package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
)

func (c *cli) workflowCmd() *cobra.Command {
	return groupCmd("workflow", "start, stop, update and read workflows (JSON objects under workflow:<id>)",
		c.workflowWriteCmd("start", "start workflow ID: status running, with --data's fields", false),
		c.workflowWriteCmd("stop", "stop the running workflow ID, merging --data's fields", false),
		c.workflowWriteCmd("update", "merge --data's fields into the running workflow ID", true),
		c.workflowGetCmd(), c.workflowListCmd(), c.workflowHistoryCmd())
}

// workflowResult is the JSON answer of a workflow write.
type workflowResult struct {
	ID       string `json:"id"`
	Revision int64  `json:"revision"`
}

// workflowWriteCmd is start, stop or update: a write of fields (--data, a
// JSON object) to one workflow.
func (c *cli) workflowWriteCmd(verb, short string, needData bool) *cobra.Command {
	var data string
	use := verb + " ID [--data JSON]"
	if needData {
		use = verb + " ID --data JSON"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			var fields []byte
			switch {
			case cmd.Flags().Changed("data"):
				var err error
				if fields, err = jsonArg(fmt.Sprintf("workflow %s %q: --data", verb, id), []byte(data), true); err != nil {
					return err
				}
			case needData:
				return usageErrorf("workflow %s: --data is required", verb)
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				var rev int64
				var err error
				switch verb {
				case "start":
					rev, err = s.client.StartWorkflow(ctx, id, fields)
				case "stop":
					rev, err = s.client.StopWorkflow(ctx, id, fields)
				default:
					rev, err = s.client.UpdateWorkflowState(ctx, id, fields)
				}
				if err != nil {
					return fail(fmt.Sprintf("workflow %s %q", verb, id), err)
				}
				if s.json {
					return s.printJSON(workflowResult{ID: id, Revision: rev})
				}
				_, err = fmt.Fprintf(s.stdout, "OK revision %d\n", rev)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "fields to merge into the workflow, a JSON object")
	return cmd
}

var workflowHeader = []string{"ID", "STATUS", "REVISION", "VALUE"}

func workflowRow(w kv.Workflow) []string {
	return []string{w.ID, dash(w.Status), strconv.FormatInt(w.Revision, 10), string(w.Value)}
}

func (c *cli) workflowGetCmd() *cobra.Command {
	var read readOption
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "read workflow ID",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt, err := read.option()
			if err != nil {
				return err
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				w, err := s.client.WorkflowState(ctx, args[0], opt)
				if err != nil {
					return fail(fmt.Sprintf("workflow get %q", args[0]), err)
				}
				if s.json {
					return s.printJSON(w)
				}
				return s.table(workflowHeader, [][]string{workflowRow(w)})
			})
		},
	}
	read.add(cmd)
	return cmd
}

// workflowsResult is the JSON answer of workflow list.
type workflowsResult struct {
	Workflows []kv.Workflow `json:"workflows"`
	Revision  int64         `json:"revision"`
}

func (c *cli) workflowListCmd() *cobra.Command {
	return listCmd(c, "workflow list", "list every workflow", workflowHeader, workflowRow,
		func(ctx context.Context, cl *client.Client, opt client.ReadOption) ([]kv.Workflow, int64, error) {
			return cl.Workflows(ctx, opt)
		},
		func(ws []kv.Workflow, rev int64) any { return workflowsResult{Workflows: ws, Revision: rev} })
}

var historyHeader = []string{"REVISION", "TYPE", "TIME", "TASK", "ATTEMPT", "EPOCH", "WORKER", "DETAIL"}

func historyRow(ev api.WorkflowEvent) []string {
	task, attempt, epoch := "-", "-", "-"
	if ev.Task != "" {
		task, attempt = ev.Queue+"/"+ev.Task, strconv.Itoa(ev.Attempt)
	}
	if ev.Epoch != 0 {
		epoch = strconv.FormatInt(ev.Epoch, 10)
	}
	var detail []string
	if ev.Error != "" {
		detail = append(detail, "error "+strconv.Quote(ev.Error))
	}
	if ev.ReadyAt != "" {
		detail = append(detail, "ready at "+ev.ReadyAt)
	}
	return []string{strconv.FormatInt(ev.Revision, 10), ev.Type, dash(ev.Time), task, attempt, epoch, dash(ev.Worker),
		dash(strings.Join(detail, ", "))}
}

func (c *cli) workflowHistoryCmd() *cobra.Command {
	var read readOption
	var from int64
	var limit int
	cmd := &cobra.Command{
		Use:   "history ID",
		Short: "read workflow ID's history: its events, oldest first (--from-revision N, --limit N)",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt, err := read.option()
			if err != nil {
				return err
			}
			if from < 0 {
				return usageErrorf("workflow history: --from-revision %d: want 0 or more", from)
			}
			if limit < 1 || limit > api.MaxWorkflowHistoryPage {
				return usageErrorf("workflow history: --limit %d: want 1 to %d", limit, api.MaxWorkflowHistoryPage)
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				h, err := s.client.WorkflowHistory(ctx, args[0], from, opt, client.WithLimit(limit))
				if err != nil {
					return fail(fmt.Sprintf("workflow history %q", args[0]), err)
				}
				if s.json {
					h.Events = nonNil(h.Events)
					return s.printJSON(h)
				}
				rows := make([][]string, len(h.Events))
				for i, ev := range h.Events {
					rows[i] = historyRow(ev)
				}
				if err := s.table(historyHeader, rows); err != nil {
					return err
				}
				if h.More {
					_, err = fmt.Fprintf(s.stdout, "more: --from-revision %d\n", h.Events[len(h.Events)-1].Revision+1)
				}
				return err
			})
		},
	}
	read.add(cmd)
	cmd.Flags().Int64Var(&from, "from-revision", 0, "start at this revision (0: the oldest event kept)")
	cmd.Flags().IntVar(&limit, "limit", api.MaxWorkflowHistoryPage, "read at most this many events")
	return cmd
}
