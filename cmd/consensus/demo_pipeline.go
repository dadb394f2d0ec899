package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
)

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
