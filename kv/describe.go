package kv

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxDescribedKey bounds how much of a key DescribeCommand quotes, so a
// report of many entries stays readable.
const maxDescribedKey = 64

// DescribeCommand returns a short description of a command of this state
// machine as a raft log entry carries it ("put k/x", "delete k/y",
// "batch of 3: put a, put b, delete c", "grant lease 7"), for an
// operator reading what a log holds (consensus recover reports the
// entries it drops with it). A command that does not decode is described
// as such, never an error.
func DescribeCommand(b []byte) string {
	c, err := decodeCommand(b)
	if err != nil {
		return fmt.Sprintf("undecodable command (%d bytes)", len(b))
	}
	switch c.Op {
	case opTxn:
		parts := make([]string, 0, len(c.Ops))
		for i, o := range c.Ops {
			if i == 3 {
				parts = append(parts, "...")
				break
			}
			parts = append(parts, o.Op.String()+" "+describedKey(o.Key))
		}
		return fmt.Sprintf("batch of %d: %s", len(c.Ops), strings.Join(parts, ", "))
	case opEtcdTxn:
		return "etcd transaction"
	case opHashCheck:
		return "state hash check"
	case opLeaseGrant, opLeaseRevoke:
		return c.Op.String() + " " + strconv.FormatInt(c.Lease, 10)
	case opLeaseExpire:
		return fmt.Sprintf("expire %d leases", len(c.Leases))
	case opTaskEnqueue, opTaskClaim, opTaskComplete, opTaskFail, opTaskRequeue:
		return c.Op.String() + " " + describedKey(c.Key) + "/" + describedKey(c.Task)
	}
	return c.Op.String() + " " + describedKey(c.Key)
}

// describedKey quotes key if it holds a space or a control character and
// shortens it past maxDescribedKey bytes.
func describedKey(key string) string {
	short := key
	if len(short) > maxDescribedKey {
		cut := maxDescribedKey
		for cut > 0 && !utf8.RuneStart(short[cut]) {
			cut--
		}
		short = short[:cut] + "..."
	}
	if strings.ContainsFunc(short, func(r rune) bool { return r <= ' ' || r == 0x7f }) || short == "" {
		return strconv.Quote(short)
	}
	return short
}
