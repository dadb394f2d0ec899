package main

import (
	"context"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// TestGCPercent checks which collector target serve sets: --gc-percent
// when given, else GOGC's when the variable is set, else the default.
func TestGCPercent(t *testing.T) {
	cases := []struct {
		flag    int
		given   bool
		gogc    string
		percent int
		set     bool
	}{
		{defaultGCPercent, false, "", defaultGCPercent, true},
		{defaultGCPercent, false, " ", defaultGCPercent, true},
		{defaultGCPercent, false, "200", 0, false},
		{defaultGCPercent, false, "off", 0, false},
		{30, true, "200", 30, true},
		{30, true, "", 30, true},
	}
	for _, c := range cases {
		p, set := gcPercent(c.flag, c.given, c.gogc)
		if p != c.percent || set != c.set {
			t.Errorf("gcPercent(%d, %v, %q) = %d, %v; want %d, %v", c.flag, c.given, c.gogc, p, set, c.percent, c.set)
		}
	}
	if defaultGCPercent >= 100 {
		t.Errorf("defaultGCPercent = %d: serve would hold as much heap as Go's default", defaultGCPercent)
	}
}

// TestApplyGCPercent checks that applyGCPercent sets the runtime's target
// and that its restore puts the previous one back.
func TestApplyGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	restore, inForce := applyGCPercent(37, true, "")
	if got := debug.SetGCPercent(37); got != 37 || inForce != "37" {
		t.Errorf("after applyGCPercent(37): runtime %d, reported %q", got, inForce)
	}
	restore()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("after restore: runtime %d, want 100", got)
	}
	restore, inForce = applyGCPercent(defaultGCPercent, false, "80")
	if got := debug.SetGCPercent(100); got != 100 || inForce != "GOGC=80" {
		t.Errorf("with GOGC set and no flag: runtime %d, reported %q; want untouched", got, inForce)
	}
	restore()
}

// TestServeSetsGCPercent runs serve in this process and checks that the
// runtime's GOGC is --gc-percent while it serves and is put back when it
// stops.
func TestServeSetsGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	peer, httpAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan cliResult, 1)
	go func() {
		done <- runCLI(ctx, "", "serve", "--id", "n1", "--listen", peer, "--http", httpAddr,
			"--data", filepath.Join(t.TempDir(), "n1"), "--log-level", "warn", "--gc-percent", "37")
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case r := <-done:
			t.Fatalf("serve exited early: %d, %s", r.code, r.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve not ready in 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := gogc(); got != 37 {
		t.Errorf("while serving with --gc-percent 37: GOGC %d", got)
	}
	cancel()
	select {
	case r := <-done:
		if r.code != 0 {
			t.Errorf("serve: exit %d, %s", r.code, r.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop in 20s")
	}
	if got := gogc(); got != 100 {
		t.Errorf("after serve stopped: GOGC %d, want 100 back", got)
	}
}

// gogc reads the runtime's GOGC without changing it.
func gogc() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}
