package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unrdf/consensus/internal/certs"
)

// TestProcessJoinSecureCluster runs serve as a user would for a cluster
// with HTTPS, client certificates, peer mutual TLS and tokens: three
// founders, then a fourth node that joins with --join over HTTPS. The
// flags alone must make members reach each other's APIs (--api-ca and the
// token file's first rw token): the newcomer becomes a voter, and every
// member is seen healthy by the leader's HTTPS health checks.
func TestProcessJoinSecureCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	root := t.TempDir()
	certDir := filepath.Join(root, "certs")
	ids := []string{"n1", "n2", "n3", "n4"}
	if err := certs.WriteDev(certDir, ids); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(root, "tokens")
	if err := os.WriteFile(tokens, []byte("# the cluster's tokens\nreader ro\nadmin-token rw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(certDir, "ca.pem")
	peer, http := map[string]string{}, map[string]string{}
	var founders []string
	for _, id := range ids {
		peer[id], http[id] = freeAddr(t), freeAddr(t)
		if id != "n4" {
			founders = append(founders, id+"="+peer[id])
		}
	}
	logs := map[string]*bytes.Buffer{}
	start := func(id string, extra ...string) {
		cert, key := filepath.Join(certDir, id+".pem"), filepath.Join(certDir, id+"-key.pem")
		args := append([]string{"serve", "--id", id, "--listen", peer[id], "--http", http[id],
			"--data", filepath.Join(root, id), "--auth-token-file", tokens,
			"--cert", cert, "--key", key, "--client-ca", ca, "--api-ca", ca,
			"--peer-cert", cert, "--peer-key", key, "--peer-ca", ca,
			"--health-check-interval", "200ms", "--health-check-timeout", "150ms"}, extra...)
		cmd := exec.Command(bin, args...)
		logs[id] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = logs[id], logs[id]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("---- log of %s ----\n%s", id, logs[id])
			}
		})
	}
	for _, id := range ids[:3] {
		start(id, "--peers", strings.Join(founders, ","))
	}
	start("n4", "--join", "https://"+http["n2"]+",https://"+http["n1"])

	// The CLI as an operator runs it: the CA, a client certificate (the
	// API asks for one; n1's will do, the CA is the same) and a read-only
	// token.
	var endpoints []string
	for _, id := range ids {
		endpoints = append(endpoints, "https://"+http[id])
	}
	cli := func(args ...string) cliResult {
		return runCLI(context.Background(), "", append([]string{"--cacert", ca, "--token", "reader",
			"--cert", filepath.Join(certDir, "n1.pem"), "--key", filepath.Join(certDir, "n1-key.pem"),
			"--endpoints", strings.Join(endpoints, ","), "-o", "json"}, args...)...)
	}
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for {
		r := cli("status")
		var res statusResult
		healthy := 0
		if r.code == exitOK && json.Unmarshal([]byte(r.stdout), &res) == nil {
			for _, e := range res.Endpoints {
				if e.Health == "healthy" && e.Role != "learner" {
					healthy++
				}
			}
		}
		if healthy == len(ids) {
			break
		}
		last = r.stdout + r.stderr
		if time.Now().After(deadline) {
			t.Fatalf("not every member a healthy voter within 60s; last status:\n%s", last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
