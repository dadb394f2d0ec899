// Package bench drives a key-value service with a fixed set of workloads
// and measures it: throughput and latency percentiles per cell (one
// workload at one concurrency). It is the load loop of `consensus bench`
// and of the etcd driver in bench/etcd, so that both systems are driven by
// the same code and measured the same way; it knows no client, a Driver
// adapts one.
//
// A cell runs Concurrency goroutines, each issuing one operation at a time
// (a closed loop) on keys drawn from a fixed key space, for a warm-up that
// is not counted and then for Duration. Every loop is bounded in time and
// in count (Options.MaxOps); every operation is bounded by Options.Timeout.
// Latencies are kept exactly (one sample per successful operation) and
// percentiles use the nearest-rank method; failed operations are counted
// apart and never enter the latencies.
package bench
