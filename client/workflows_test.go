package client

import (
	"errors"
	"testing"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// WorkflowHistory reads a workflow's history by pages from a revision;
// an unknown workflow is kv.ErrWorkflowNotFound.
func TestWorkflowHistory(t *testing.T) {
	s := startWatchNode(t, kv.WatchConfig{})
	c := newClient(t, Config{Endpoints: []string{s.HTTPAddr()}})
	ctx := testContext(t)
	if _, err := c.StartWorkflow(ctx, "w", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Queue("q").Enqueue(ctx, []byte(`1`), EnqueueOptions{ID: "a", Workflow: "w"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateWorkflowState(ctx, "w", []byte(`{"progress":1}`)); err != nil {
		t.Fatal(err)
	}
	all, err := c.WorkflowHistory(ctx, "w", 0)
	if err != nil || len(all.Events) != 3 || all.More || all.Events[1].Type != api.HistoryStepEnqueued || all.Events[1].Task != "a" {
		t.Fatalf("history %+v, %v", all, err)
	}
	page, err := c.WorkflowHistory(ctx, "w", all.Events[1].Revision, WithLimit(1), WithConsistency(kv.Local))
	if err != nil || len(page.Events) != 1 || !page.More || page.Events[0] != all.Events[1] {
		t.Fatalf("page %+v, %v", page, err)
	}
	if _, err := c.WorkflowHistory(ctx, "nope", 0); !errors.Is(err, kv.ErrWorkflowNotFound) {
		t.Fatalf("unknown workflow: %v", err)
	}
	if _, err := c.WorkflowHistory(ctx, "w", -1); !errors.Is(err, kv.ErrInvalidRevision) {
		t.Fatalf("negative revision: %v", err)
	}
}
