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
