// Package etcdapi serves etcd's v3 gRPC API (the KV, Watch, Lease,
// Cluster and Maintenance services of go.etcd.io/etcd/api/v3, with their
// official protobuf definitions) on the same replicated state as the HTTP
// and /v1/ws APIs: one revision space, one set of leases. etcdctl and
// clientv3 (including its concurrency package) work against it.
//
// Every write of the KV service (Put, DeleteRange, Txn) is one replicated
// kv.EtcdTxn; reads are linearizable (raft ReadIndex) unless the request
// is serializable, which reads this node's applied state. Values are
// etcd bytes mapped onto the state's JSON values (kv.EtcdStoredValue).
// Errors are etcd's (go.etcd.io/etcd/api/v3/v3rpc/rpctypes), so clients
// retry and fail as they do against etcd. What cannot be served answers
// codes.Unimplemented with a message; docs/ETCD.md has the table.
package etcdapi
