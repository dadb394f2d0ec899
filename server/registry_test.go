package server

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// timestamps matches the times a write stamps on a workflow or node, which
// the golden file holds as <time>.
var timestamps = regexp.MustCompile(`("\w+At"):\d+`)

// TestRegistryRoutesGolden pins every answer of the workflow and node
// registry routes, status, headers and body, to
// testdata/registry_routes.golden: each route (collection, item, action),
// each method they allow and one they do not, and each way a path or a
// query can be refused. Run with -update after a deliberate change.
func TestRegistryRoutesGolden(t *testing.T) {
	h := NewHandler(newLocalStore(), HTTPOptions{})
	steps := []struct{ method, target, body string }{
		// Workflows: the collection.
		{"GET", "/v1/workflows", ""},
		{"POST", "/v1/workflows", `{"id":"w","name":"Data Processing","progress":0}`},
		{"POST", "/v1/workflows", `{"id":"w"}`},
		{"POST", "/v1/workflows", `{"name":"no id"}`},
		{"POST", "/v1/workflows", `{"id":"w\u0001"}`},
		{"POST", "/v1/workflows", `[1]`},
		{"GET", "/v1/workflows", ""},
		{"HEAD", "/v1/workflows", ""},
		{"GET", "/v1/workflows?consistency=local", ""},
		{"GET", "/v1/workflows?consistency=sometimes", ""},
		{"GET", "/v1/workflows?consistency=local&consistency=local", ""},
		{"GET", "/v1/workflows?%zz", ""},
		{"PUT", "/v1/workflows", `{}`},
		{"DELETE", "/v1/workflows", ""},
		// Workflows: one workflow.
		{"GET", "/v1/workflows/w", ""},
		{"HEAD", "/v1/workflows/w", ""},
		{"GET", "/v1/workflows/w/", ""},
		{"GET", "/v1/workflows/w?consistency=local", ""},
		{"GET", "/v1/workflows/w?consistency=sometimes", ""},
		{"GET", "/v1/workflows/missing", ""},
		{"PATCH", "/v1/workflows/w", `{"progress":0.5}`},
		{"PATCH", "/v1/workflows/w", `7`},
		{"PATCH", "/v1/workflows/missing", `{"progress":0.5}`},
		{"DELETE", "/v1/workflows/w", ""},
		{"PUT", "/v1/workflows/w", `{}`},
		{"POST", "/v1/workflows/w", `{}`},
		// Workflows: the stop action.
		{"GET", "/v1/workflows/w/stop", ""},
		{"PATCH", "/v1/workflows/w/stop", `{}`},
		{"POST", "/v1/workflows/w/stop", `{"reason":"done"}`},
		{"POST", "/v1/workflows/w/stop", ""},
		{"POST", "/v1/workflows/missing/stop", ""},
		{"POST", "/v1/workflows/w/stop", `7`},
		// Workflows: paths and queries refused.
		{"POST", "/v1/workflows/w/stop/", ""},
		{"POST", "/v1/workflows/w/pause", ""},
		{"GET", "/v1/workflows/a/b/c", ""},
		{"GET", "/v1/workflows/", ""},
		{"POST", "/v1/workflows//stop", ""},
		{"GET", "/v1/workflows/a%2Fb", ""},
		{"GET", "/v1/workflows/w%09", ""},
		{"GET", "/v1/workflows/" + strings.Repeat("x", 2000), ""},
		{"GET", "/v1/workflows/w/pause?%zz", ""},
		{"GET", "/v1/workflowsx", ""},
		// Nodes: the collection.
		{"GET", "/v1/nodes", ""},
		{"POST", "/v1/nodes", `{"id":"app-1","zone":"eu"}`},
		{"POST", "/v1/nodes", `{"id":"app-1","zone":"us"}`},
		{"POST", "/v1/nodes", `{"id":1}`},
		{"POST", "/v1/nodes", `{"id":"n\u007f"}`},
		{"POST", "/v1/nodes", `"x"`},
		{"GET", "/v1/nodes", ""},
		{"HEAD", "/v1/nodes", ""},
		{"GET", "/v1/nodes?consistency=local", ""},
		{"GET", "/v1/nodes?consistency=sometimes", ""},
		{"GET", "/v1/nodes?%zz", ""},
		{"PUT", "/v1/nodes", `{}`},
		{"DELETE", "/v1/nodes", ""},
		// Nodes: one node.
		{"GET", "/v1/nodes/app-1", ""},
		{"PATCH", "/v1/nodes/app-1", `{}`},
		{"DELETE", "/v1/nodes/app-1", ""},
		{"DELETE", "/v1/nodes/app-1", ""},
		{"DELETE", "/v1/nodes/missing?consistency=sometimes", ""},
		// Nodes: paths and queries refused.
		{"DELETE", "/v1/nodes/app-1/", ""},
		{"DELETE", "/v1/nodes/a/b", ""},
		{"DELETE", "/v1/nodes/", ""},
		{"DELETE", "/v1/nodes/%00", ""},
		{"DELETE", "/v1/nodes/app-1?%zz", ""},
		{"GET", "/v1/nodesx", ""},
	}
	var out strings.Builder
	for _, s := range steps {
		rec := request(h, s.method, s.target, s.body)
		target := s.target
		if len(target) > 80 {
			target = fmt.Sprintf("%s... (%d bytes)", target[:40], len(target))
		}
		fmt.Fprintf(&out, "%s %s %s\n%d\n", s.method, target, s.body, rec.Code)
		names := make([]string, 0, len(rec.Header()))
		for name := range rec.Header() {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			fmt.Fprintf(&out, "%s: %s\n", name, strings.Join(rec.Header()[name], ", "))
		}
		body := timestamps.ReplaceAllString(rec.Body.String(), "$1:<time>")
		fmt.Fprintf(&out, "%s\n\n", strings.TrimSuffix(body, "\n"))
	}
	golden := filepath.Join("testdata", "registry_routes.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := out.String(); got != string(want) {
		t.Errorf("answers differ from %s (run with -update after a deliberate change):\n%s", golden, firstDiff(got, string(want)))
	}
}

// firstDiff names the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got: %q\nwant: %q", i+1, gl, wl)
		}
	}
	return "(no line differs)"
}
