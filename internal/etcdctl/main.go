// Command etcdctl is the real etcdctl (go.etcd.io/etcd/etcdctl/v3), built
// by etcdapi's tests to run golden transcripts against consensus. It is a
// module of its own so that etcdctl's dependencies stay out of the main
// module, and because etcdctl's replace directives block `go install`.
package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() { ctlv3.MustStart() }
