//go:build stagetrace

package stages

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDump checks the file Dump writes: one "<ns> <node> <index> <stage>"
// line per mark, in the order marked, and nothing kept afterwards.
func TestDump(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CONSENSUS_STAGES_DIR", dir)
	Mark("client_call", 0)
	Mark("ready", 7)
	Dump("client")
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("client-%d.txt", os.Getpid())))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := []string{"client 0 client_call", "client 7 ready"}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), b)
	}
	for i, l := range lines {
		at, rest, _ := strings.Cut(l, " ")
		if at == "" || strings.Trim(at, "0123456789") != "" || rest != want[i] {
			t.Errorf("line %d: %q, want <ns> %s", i, l, want[i])
		}
	}
	Dump("client")
	b, err = os.ReadFile(filepath.Join(dir, fmt.Sprintf("client-%d.txt", os.Getpid())))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 0 {
		t.Errorf("a second Dump wrote %q, want nothing", b)
	}
}
