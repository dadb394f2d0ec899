// Command data-pipeline is the seed's workflow coordination example with
// the Go client: start a workflow, move it through its steps, stop it,
// and read it back both as a workflow and as its workflow:<id> key.
//
//	go run ./cmd/consensus up              # in one terminal
//	go run ./examples/data-pipeline        # in another
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:9080,127.0.0.1:9081,127.0.0.1:9082",
		"HTTP addresses of cluster members, host:port,... (the cluster `consensus up` starts)")
	keep := flag.Bool("keep", false, "leave the stopped workflow in the cluster to look at (curl .../v1/workflows)")
	flag.Parse()
	if err := run(*endpoints, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "data-pipeline:", err)
		os.Exit(1)
	}
}

// pipeline is the part of the workflow's JSON object this example reads.
type pipeline struct {
	Name      string  `json:"name"`
	Status    string  `json:"status"`
	Step      string  `json:"step"`
	Progress  float64 `json:"progress"`
	Result    string  `json:"result"`
	StartedAt int64   `json:"startedAt"`
	StoppedAt int64   `json:"stoppedAt"`
}

func run(endpoints string, keep bool) error {
	c, err := client.New(client.Config{Endpoints: strings.Split(endpoints, ",")})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A run tag keeps this run's workflow apart from earlier ones.
	id := "data-pipeline-" + runTag()

	// START_WORKFLOW: workflow:<id> becomes the fields plus "id",
	// "status":"running" and "startedAt".
	rev, err := c.StartWorkflow(ctx, id, []byte(`{"name":"Data Processing","step":"queued","progress":0}`))
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	fmt.Printf("started workflow %s at revision %d\n", id, rev)

	// Starting it again while it runs is an invalid transition.
	if _, err := c.StartWorkflow(ctx, id, nil); !errors.Is(err, kv.ErrInvalidTransition) {
		return fmt.Errorf("second start: got %v, want an invalid transition", err)
	}
	fmt.Println("starting it again while it runs is refused: invalid transition")

	// UPDATE_STATE: each step's fields are merged into the running
	// workflow ("updatedAt" is set). Every node applies the same updates
	// in the same order.
	for _, s := range []struct {
		step     string
		progress float64
	}{{"extract", 0.25}, {"transform", 0.5}, {"validate", 0.75}, {"load", 1}} {
		fields, _ := json.Marshal(map[string]any{"step": s.step, "progress": s.progress})
		rev, err := c.UpdateWorkflowState(ctx, id, fields)
		if err != nil {
			return fmt.Errorf("update %s: %w", s.step, err)
		}
		wf, err := c.WorkflowState(ctx, id)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		p, err := decode(wf.Value)
		if err != nil {
			return err
		}
		if p.Step != s.step || p.Progress != s.progress || wf.Revision != rev {
			return fmt.Errorf("read back %s at revision %d, want step %s at %d", wf.Value, wf.Revision, s.step, rev)
		}
		fmt.Printf("step %-9s progress %4.2f  status %s  revision %d\n", p.Step, p.Progress, wf.Status, wf.Revision)
	}

	// STOP_WORKFLOW: status becomes "stopped", "stoppedAt" is set, and the
	// fields given are merged in.
	rev, err = c.StopWorkflow(ctx, id, []byte(`{"result":"completed"}`))
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	fmt.Printf("stopped workflow %s at revision %d\n", id, rev)
	if _, err := c.UpdateWorkflowState(ctx, id, []byte(`{"progress":0}`)); !errors.Is(err, kv.ErrInvalidTransition) {
		return fmt.Errorf("update after stop: got %v, want an invalid transition", err)
	}
	fmt.Println("updating a stopped workflow is refused: invalid transition")

	// The workflow view (getWorkflowState) and the key it lives under
	// are the same state.
	wf, err := c.WorkflowState(ctx, id)
	if err != nil {
		return fmt.Errorf("workflow state: %w", err)
	}
	item, err := c.Get(ctx, kv.WorkflowPrefix+id)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	p, err := decode(wf.Value)
	if err != nil {
		return err
	}
	if wf.Revision != rev || item.Revision != rev || !bytes.Equal(wf.Value, item.Value) || wf.Version != item.Version {
		return fmt.Errorf("workflow view %s at revision %d and key %s at revision %d disagree", wf.Value, wf.Revision, item.Value, item.Revision)
	}
	if p.Status != kv.StatusStopped || p.Result != "completed" || p.Progress != 1 || p.StoppedAt < p.StartedAt {
		return fmt.Errorf("final state %s", wf.Value)
	}
	fmt.Printf("workflow view and key %s%s agree at revision %d (version %d): %s\n", kv.WorkflowPrefix, id, rev, item.Version, item.Value)
	fmt.Printf("%q ran for %v and ended %s with result %s\n", p.Name,
		time.Duration(p.StoppedAt-p.StartedAt)*time.Millisecond, p.Status, p.Result)

	// It is listed among all workflows too.
	all, _, err := c.Workflows(ctx)
	if err != nil {
		return fmt.Errorf("workflows: %w", err)
	}
	found := false
	for _, w := range all {
		found = found || w.ID == id
	}
	if !found {
		return fmt.Errorf("%s is not among the %d workflows listed", id, len(all))
	}
	fmt.Printf("listed among the cluster's %d workflows\n", len(all))

	if keep {
		fmt.Printf("kept; see it with: curl -s http://%s/v1/workflows/%s\n", strings.Split(endpoints, ",")[0], id)
		return nil
	}
	if _, err := c.Delete(ctx, kv.WorkflowPrefix+id); err != nil {
		return fmt.Errorf("clean up: %w", err)
	}
	fmt.Println("cleaned up; done")
	return nil
}

func decode(v []byte) (pipeline, error) {
	var p pipeline
	if err := json.Unmarshal(v, &p); err != nil {
		return p, fmt.Errorf("workflow value %s: %w", v, err)
	}
	return p, nil
}

// runTag is a random tag for this run's workflow.
func runTag() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
