package main

import (
	"testing"
	"time"

	"github.com/unrdf/consensus/cluster"
	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/server"
)

// startTestCluster starts a 3-node cluster in this process, stopped when
// the test ends. Members check each other's health every 100ms, so a
// status shows health soon after the start.
func startTestCluster(t *testing.T, configure ...func(*server.Config)) *testcluster.Cluster {
	t.Helper()
	opts := []testcluster.Option{testcluster.Configure(func(c *server.Config) {
		c.Cluster = cluster.Config{HealthCheckInterval: 100 * time.Millisecond}
	})}
	for _, fn := range configure {
		opts = append(opts, testcluster.Configure(fn))
	}
	return testcluster.Start(t, 3, opts...)
}

// inProcessCluster starts a 3-node cluster in this process and returns
// its HTTP addresses.
func inProcessCluster(t *testing.T) []string {
	return startTestCluster(t).HTTPAddrs
}
