package client

import (
	"testing"
	"time"

	"github.com/unrdf/consensus/internal/loopback"
	"github.com/unrdf/consensus/internal/testcluster"
)

// leaderTimeout bounds every wait for a leader in these tests.
const leaderTimeout = 10 * time.Second

// newTestCluster starts n servers in this process over real WebSockets on
// loopback (internal/testcluster) and waits for their leader; they stop
// when the test ends.
func newTestCluster(t testing.TB, n int) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, n, testcluster.LeaderWithin(leaderTimeout))
}

// freeAddr returns a loopback address nothing listens on (see
// internal/loopback): a dead endpoint.
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
