package server

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/cluster"
	"github.com/unrdf/consensus/internal/certs"
	"github.com/unrdf/consensus/internal/testwait"
)

// allHealthy waits until every running node of c judges every member
// healthy by a probe of its API (the applied index comes with a passed
// probe; a judgement by the peer streams alone leaves it 0).
func allHealthy(t *testing.T, c *testCluster) {
	t.Helper()
	// The last reason a member was not healthy is logged each time it
	// changes: on a timeout the log says what was still missing.
	var last string
	testwait.For(t, 20*time.Second, "every member healthy on every node", func() bool {
		for id, s := range c.servers {
			for _, n := range s.Cluster().Nodes() {
				if n.Health != cluster.HealthHealthy || n.AppliedIndex == 0 {
					if why := id + " sees " + n.ID + " " + string(n.Health) + ": " + n.Reason; why != last {
						last = why
						t.Logf("not all healthy yet: %s", why)
					}
					return false
				}
			}
		}
		return true
	})
}

// With tokens on, members probe each other's /v1/status with the token
// they are given; without it every other member looked unhealthy (401).
func TestHealthChecksWithTokens(t *testing.T) {
	c := newTestClusterOf(t, 3, func(cfg *Config) {
		cfg.HTTP.Tokens = testTokens(t)
		cfg.Members.Token = "s3cret-rw"
		cfg.Cluster = cluster.Config{HealthCheckInterval: 100 * time.Millisecond}
	})
	c.waitLeader()
	allHealthy(t, c)
}

// A cluster whose API is HTTPS with client certificates and tokens: a
// node joins it with --join, members probe each other over HTTPS, and a
// transfer asked of a follower is forwarded to the leader over HTTPS.
func TestJoinTransferAndHealthOverTLSWithTokens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := certs.WriteDev(dir, []string{"n1", "n2", "n3", "n4", "client"}); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	tlsFor := func(id string) (*tls.Config, *tls.Config) {
		cert, key := filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem")
		srv, err := certs.ServerConfig(cert, key, ca)
		if err != nil {
			t.Fatal(err)
		}
		cli, err := certs.ClientConfig(cert, key, ca)
		if err != nil {
			t.Fatal(err)
		}
		return srv, cli
	}
	c := newTestClusterOf(t, 3, func(cfg *Config) {
		cfg.HTTPTLS, cfg.Members.TLS = tlsFor(cfg.Node.ID)
		cfg.HTTP.Tokens = testTokens(t)
		cfg.Members.Token = "s3cret-rw"
		cfg.Cluster = cluster.Config{HealthCheckInterval: 100 * time.Millisecond}
	})
	leader := c.waitLeader()
	allHealthy(t, c)

	c.startJoining("n4", "https://"+c.https[leader])
	testwait.For(t, 20*time.Second, "n4 a voter on "+leader, func() bool {
		for _, m := range c.servers[leader].Node().Status().Members {
			if m.ID == "n4" && m.Voter {
				return true
			}
		}
		return false
	})
	allHealthy(t, c)

	// The caller's token travels with the forwarded transfer.
	_, clientTLS := tlsFor("client")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS}}
	var follower, target string
	for _, id := range c.ids {
		switch {
		case id == leader:
		case follower == "":
			follower = id
		case target == "":
			target = id
		}
	}
	body, _ := json.Marshal(TransferRequest{Target: target})
	req, _ := http.NewRequest(http.MethodPost, "https://"+c.https[follower]+"/v1/leader/transfer", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer s3cret-rw")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var tr TransferResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(answer, &tr) != nil || tr.LeaderID != target {
		t.Fatalf("transfer to %s asked of %s (leader %s): %d %s", target, follower, leader, resp.StatusCode, answer)
	}

	// A read-only token is refused the forwarded transfer.
	req, _ = http.NewRequest(http.MethodPost, "https://"+c.https[follower]+"/v1/leader/transfer", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer r3ad-only")
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("transfer with a read-only token: %d", resp.StatusCode)
	}
}

// A node whose token the cluster refuses stops trying at once, and says
// why.
func TestJoinWithoutTheTokenFailsAtOnce(t *testing.T) {
	c := newTestClusterOf(t, 3, func(cfg *Config) {
		cfg.HTTP.Tokens = testTokens(t)
		cfg.Members.Token = "s3cret-rw"
	})
	leader := c.waitLeader()
	start := time.Now()
	_, err := Start(Config{
		Node:         consensus.DefaultConfig("n9"),
		PeerListener: listenAgain(t, "127.0.0.1:0"),
		HTTPListener: listenAgain(t, "127.0.0.1:0"),
		DataDir:      filepath.Join(t.TempDir(), "n9"),
		Join:         []string{c.https[leader]},
		JoinTimeout:  20 * time.Second,
		Members:      MemberAPI{Token: "r3ad-only"},
	})
	if err == nil {
		t.Fatal("joined with a read-only token")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("gave up after %v, not at once", took)
	}
	t.Logf("refused as expected: %v", err)
}
