package kv

import (
	"strings"
	"testing"
)

func TestDescribeCommand(t *testing.T) {
	zero := int64(0)
	long := strings.Repeat("é", 40) // 80 bytes
	cases := []struct {
		c    command
		want string
	}{
		{command{Op: opPut, Key: "k/x", Value: []byte(`1`)}, "put k/x"},
		{command{Op: opDelete, Key: "k/y", If: &zero}, "delete k/y"},
		{command{Op: opPut, Key: "a b"}, `put "a b"`},
		{command{Op: opPut, Key: long}, "put " + strings.Repeat("é", 32) + "..."},
		{command{Op: opTxn, Ops: []txnOp{{Op: opPut, Key: "a"}, {Op: opDelete, Key: "b"}}}, "batch of 2: put a, delete b"},
		{command{Op: opTxn, Ops: []txnOp{{Op: opPut, Key: "a"}, {Op: opPut, Key: "b"}, {Op: opPut, Key: "c"}, {Op: opPut, Key: "d"}}}, "batch of 4: put a, put b, put c, ..."},
		{command{Op: opLeaseGrant, Lease: 7, TTL: 1000}, "grant lease 7"},
		{command{Op: opLeaseExpire, Leases: []int64{1, 2}}, "expire 2 leases"},
		{command{Op: opTaskEnqueue, Key: "jobs", Task: "t1"}, "enqueue task jobs/t1"},
		{command{Op: opWorkflowStart, Key: "wf1", Value: []byte(`{}`)}, "start workflow wf1"},
	}
	for _, tc := range cases {
		b, err := encodeCommand(tc.c)
		if err != nil {
			t.Fatal(err)
		}
		if got := DescribeCommand(b); got != tc.want {
			t.Errorf("DescribeCommand(%+v) = %q, want %q", tc.c, got, tc.want)
		}
	}
	if got := DescribeCommand([]byte{0xc1, 2, 3}); got != "undecodable command (3 bytes)" {
		t.Errorf("garbage: %q", got)
	}
}
