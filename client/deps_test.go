package client

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies checks that the client pulls in none of the server's
// machinery: it imports api for the contract, not the node, kv or
// cluster, so neither raft, protobuf, OpenTelemetry nor a B-tree.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool:", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{"raft", "protobuf", "opentelemetry", "btree", "pebble",
		"github.com/unrdf/consensus/kv", "github.com/unrdf/consensus/cluster", "github.com/unrdf/consensus/server"}
	for pkg := range strings.FieldsSeq(string(out)) {
		if pkg == "github.com/unrdf/consensus" {
			t.Errorf("the client depends on the node package")
		}
		for _, f := range forbidden {
			if strings.Contains(pkg, f) {
				t.Errorf("the client depends on %s", pkg)
			}
		}
	}
}
