package main

import (
	"encoding/json"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/unrdf/consensus/internal/testcluster"
)

// queueNumbers matches what a queue command prints that depends on the
// log (epochs, creation indexes), on chance (lease ids) or on the clock
// (ready times).
var queueNumbers = regexp.MustCompile(`"(epoch|revision|readyAtMs)": [0-9]+|"lease": "[^"]*"`)

func normQueue(s string) string {
	s = queueNumbers.ReplaceAllStringFunc(s, func(m string) string {
		name, _, _ := strings.Cut(m, ":")
		if name == `"lease"` {
			return `"lease": "L"`
		}
		return name + ": N"
	})
	return realign(s, func(cells []string) {
		switch {
		case len(cells) == 2: // push: ID REVISION
			cells[1] = "N"
		case len(cells) >= 4 && strings.Contains(cells[2], "/"): // get, list: ID STATE ATTEMPT EPOCH ...
			cells[3] = "N"
		}
	})
}

// queueReplacer is newTranscript's replacer plus names for the epochs
// the transcript passes on the command line, written with a plus sign
// (epochArg) so that no other argument or output contains them.
func queueReplacer(tc *testcluster.Cluster, epochs ...int64) *strings.Replacer {
	var pairs []string
	for i, id := range tc.IDs {
		pairs = append(pairs, tc.HTTPAddrs[i], "<"+id+"-http>", tc.PeerAddrs[i], "<"+id+"-peer>")
	}
	// Longest first: a Replacer tries its pairs in order at each position,
	// and "+10" must not take the start of "+1010".
	order := make([]int, len(epochs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return len(epochArg(epochs[order[a]])) > len(epochArg(epochs[order[b]])) })
	for _, i := range order {
		pairs = append(pairs, epochArg(epochs[i]), "<epoch"+strconv.Itoa(i+1)+">")
	}
	return strings.NewReplacer(pairs...)
}

// epochArg writes an epoch for the command line as "+N", which the
// command reads as N.
func epochArg(e int64) string { return "+" + strconv.FormatInt(e, 10) }

// TestCLIQueue pushes, claims, completes, fails, requeues, lists and
// counts tasks through the queue commands, with the refusals (a stale
// epoch exits 4, an unknown task 3, nothing ready 3, bad input 2),
// against testdata/queue.golden. Epochs, creation indexes, lease ids and
// ready times are normalised.
func TestCLIQueue(t *testing.T) {
	tc := startTestCluster(t)
	tr := newTranscript(t, tc)
	step := func(code int, args ...string) cliResult {
		t.Helper()
		tr.norm = normQueue
		return tr.step(code, "", args...)
	}
	claimEpoch := func(r cliResult) int64 {
		t.Helper()
		var c struct{ Epoch int64 }
		if err := json.Unmarshal([]byte(r.stdout), &c); err != nil || c.Epoch < 1 {
			t.Fatalf("claim printed %q", r.stdout)
		}
		return c.Epoch
	}
	step(exitOK, "queue", "push", "mail", `{"to":"ann"}`, "--id", "a", "--workflow", "wf")
	step(exitOK, "queue", "push", "mail", `{"to":"other"}`, "--id", "a", "-o", "json")
	step(exitOK, "queue", "push", "mail", `"later"`, "--id", "b", "--delay", "1h")
	step(exitUsage, "queue", "push", "mail", "not-json")
	step(exitUsage, "queue", "push", "mail", "1", "--run-at", "tomorrow")
	step(exitUsage, "queue", "push", "mail", "1", "--max-attempts", "5000")
	step(exitUsage, "queue", "claim", "mail")
	step(exitUsage, "queue", "claim", "mail", "--worker", "w1", "--ttl", "0s")

	e1 := claimEpoch(step(exitOK, "queue", "claim", "mail", "--worker", "w1", "-o", "json"))
	step(exitNotFound, "queue", "claim", "mail", "--worker", "w2", "--wait", "50ms")
	tr.repl = queueReplacer(tc, e1, e1+1000)
	step(exitPrecondition, "queue", "complete", "mail", "a", epochArg(e1+1000))
	step(exitOK, "queue", "complete", "mail", "a", epochArg(e1), "--result", `"sent"`)
	step(exitPrecondition, "queue", "complete", "mail", "a", epochArg(e1))
	step(exitPrecondition, "queue", "fail", "mail", "a", epochArg(e1), "--error", "late")
	step(exitNotFound, "queue", "complete", "mail", "nope", "5")
	step(exitUsage, "queue", "complete", "mail", "a", "zero")
	step(exitOK, "queue", "get", "mail", "a")
	step(exitOK, "queue", "get", "mail", "a", "-o", "json")
	step(exitNotFound, "queue", "get", "mail", "nope")

	step(exitOK, "queue", "push", "mail", `"once"`, "--id", "c", "--max-attempts", "1")
	e2 := claimEpoch(step(exitOK, "queue", "claim", "mail", "--worker", "w2", "--ttl", "10s", "-o", "json"))
	tr.repl = queueReplacer(tc, e1, e1+1000, e2)
	step(exitOK, "queue", "fail", "mail", "c", epochArg(e2), "--error", "boom")
	step(exitOK, "queue", "list", "mail", "--state", "dead")
	step(exitOK, "queue", "requeue", "mail", "c")
	step(exitPrecondition, "queue", "requeue", "mail", "c")
	step(exitUsage, "queue", "list", "mail", "--state", "odd")
	step(exitOK, "queue", "list", "mail")
	step(exitOK, "queue", "list", "mail", "--limit", "1", "-o", "json")
	step(exitOK, "queue", "stats", "mail")
	step(exitOK, "queue", "stats", "mail", "-o", "json")
	tr.check("queue")
}

// historyTimes matches the times a workflow history event carries.
var historyTimes = regexp.MustCompile(`[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z`)

// TestCLIWorkflowHistory runs a workflow's step through a queue and reads
// its history with workflow history, against
// testdata/workflow_history.golden: the table, JSON, a page from a
// revision, an unknown workflow (exit 3), bad flags (exit 2). Times and
// epochs are normalised.
func TestCLIWorkflowHistory(t *testing.T) {
	tc := startTestCluster(t)
	tr := newTranscript(t, tc)
	norm := func(s string) string {
		s = historyTimes.ReplaceAllString(s, "<time>")
		s = queueNumbers.ReplaceAllStringFunc(s, func(m string) string {
			if name, _, _ := strings.Cut(m, ":"); name == `"epoch"` {
				return name + ": N"
			}
			return m
		})
		return realign(s, func(cells []string) {
			if len(cells) == 8 && cells[5] != "-" && cells[5] != "EPOCH" { // history: REVISION TYPE TIME TASK ATTEMPT EPOCH ...
				cells[5] = "N"
			}
		})
	}
	step := func(code int, args ...string) cliResult {
		t.Helper()
		tr.norm = norm
		return tr.step(code, "", args...)
	}
	step(exitOK, "workflow", "start", "etl", "--data", `{"name":"nightly"}`)
	tr.norm = normQueue
	tr.step(exitOK, "", "queue", "push", "jobs", `{"step":1}`, "--id", "extract", "--workflow", "etl", "--max-attempts", "2")
	var claim struct{ Epoch int64 }
	tr.norm = normQueue
	r := tr.step(exitOK, "", "queue", "claim", "jobs", "--worker", "w1", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &claim); err != nil {
		t.Fatal(err)
	}
	tr.repl = queueReplacer(tc, claim.Epoch)
	step(exitOK, "queue", "fail", "jobs", "extract", epochArg(claim.Epoch), "--error", "disk full", "--retry-after", "0s")
	tr.norm = normQueue
	r = tr.step(exitOK, "", "queue", "claim", "jobs", "--worker", "w2", "-o", "json")
	var claim2 struct{ Epoch int64 }
	if err := json.Unmarshal([]byte(r.stdout), &claim2); err != nil {
		t.Fatal(err)
	}
	tr.repl = queueReplacer(tc, claim.Epoch, claim2.Epoch)
	step(exitOK, "queue", "complete", "jobs", "extract", epochArg(claim2.Epoch))
	step(exitOK, "workflow", "update", "etl", "--data", `{"progress":100}`)
	step(exitOK, "workflow", "stop", "etl")
	step(exitOK, "workflow", "history", "etl")
	step(exitOK, "workflow", "history", "etl", "--from-revision", "4", "--limit", "2", "-o", "json")
	step(exitOK, "workflow", "history", "etl", "--from-revision", "4", "--limit", "2")
	step(exitNotFound, "workflow", "history", "nope")
	step(exitUsage, "workflow", "history", "etl", "--limit", "0")
	step(exitUsage, "workflow", "history", "etl", "--from-revision", "-1")
	tr.check("workflow_history")
}
