package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/unrdf/consensus/kv"
)

// TestBenchServeArgs: the nodes bench starts get a --max-keys with room
// for the keys a fill or a scale run writes, and none below the default.
func TestBenchServeArgs(t *testing.T) {
	for _, tc := range []struct {
		cfg  benchConfig
		want []string
	}{
		{benchConfig{}, nil},
		{benchConfig{fillKeys: kv.DefaultMaxKeys / 2}, nil},
		{benchConfig{fillKeys: 1_000_000}, []string{"--max-keys", "1100000"}},
		{benchConfig{scaleKeys: 100_000}, []string{"--max-keys", "110000"}},
	} {
		if got := benchServeArgs(tc.cfg); !slices.Equal(got, tc.want) {
			t.Errorf("fill %d, scale %d: %q, want %q", tc.cfg.fillKeys, tc.cfg.scaleKeys, got, tc.want)
		}
	}
}

// TestBenchScale runs a small --scale-keys: every figure is measured, the
// table names each, and the new member is a fourth node.
func TestBenchScale(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "bench", "--json", "--scale-keys", "300", "--value-size", "50")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	var report benchReport
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	s := report.Scale
	if s == nil || s.System != "consensus" || s.Keys != 300 || s.ValueSize != 50 || len(s.Memory) != 3 ||
		s.Fill <= 0 || s.MaxRSS() <= 0 || s.MaxData() <= 0 || s.SnapshotBytes <= 300*50 || s.Snapshot <= 0 ||
		s.RestartNode <= 0 || s.RestartCluster <= 0 || s.CatchUp <= 0 || s.CatchUpRSS <= 0 || s.LoadStart == "" || s.LoadEnd == "" {
		t.Fatalf("scale report: %+v", s)
	}

	stdout.Reset()
	cmd = exec.Command(bin, "bench", "--scale-keys", "100")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"100 keys of 100 B, 3 members", "restart the whole stopped cluster", "new member catches up"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("no %q in:\n%s", want, stdout.String())
		}
	}
}
