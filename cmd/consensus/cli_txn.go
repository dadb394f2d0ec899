package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/kv"
)

// txnRequest is what kv txn reads: the body of POST /v1/txn.
type txnRequest struct {
	Ops []struct {
		Op         string          `json:"op"`
		Key        string          `json:"key"`
		Value      json.RawMessage `json:"value"`
		IfRevision *int64          `json:"ifRevision"`
	} `json:"ops"`
}

func (c *cli) kvTxnCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "txn [--file F]",
		Short: "apply puts and deletes all or nothing, at one revision (POST /v1/txn's body)",
		Long: `Apply a batch of puts and deletes atomically: all of them at one revision, or,
if any ifRevision does not hold, none (exit code 4). The batch is the body of
POST /v1/txn, read from stdin (or --file F):

  {"ops":[{"op":"put","key":"a","value":1},
          {"op":"delete","key":"b","ifRevision":7}]}

ifRevision 0 means the key must not exist.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				file = "-"
			}
			raw, err := c.readInput(file)
			if err != nil {
				return err
			}
			ops, err := parseTxn(raw)
			if err != nil {
				return err
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				rev, err := s.client.Batch(ctx, ops)
				if err != nil {
					return fail("kv txn", err)
				}
				return s.printRevision(rev)
			})
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "read the batch from this file (default and -: stdin)")
	return cmd
}

// parseTxn reads a batch as POST /v1/txn takes it; any problem is a usage
// error naming the operation.
func parseTxn(raw []byte) ([]kv.Op, error) {
	var req txnRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, usageErrorf("kv txn: the batch is not {\"ops\":[...]}: %v", err)
	}
	if dec.More() {
		return nil, usageErrorf("kv txn: more than one JSON value in the batch")
	}
	if len(req.Ops) == 0 {
		return nil, usageErrorf("kv txn: the batch has no operations")
	}
	ops := make([]kv.Op, 0, len(req.Ops))
	for i, o := range req.Ops {
		what := "kv txn: op " + strconv.Itoa(i+1)
		if o.Key == "" {
			return nil, usageErrorf("%s: no key", what)
		}
		op := kv.Op{Key: o.Key}
		switch o.Op {
		case "put":
			if len(o.Value) == 0 {
				return nil, usageErrorf("%s: a put needs a value", what)
			}
			value, err := jsonArg(fmt.Sprintf("%s: value", what), o.Value, false)
			if err != nil {
				return nil, err
			}
			op.Type, op.Value = kv.OpPut, value
		case "delete":
			if len(o.Value) != 0 {
				return nil, usageErrorf("%s: a delete takes no value", what)
			}
			op.Type = kv.OpDelete
		default:
			return nil, usageErrorf("%s: op %q, want put or delete", what, o.Op)
		}
		if o.IfRevision != nil {
			if *o.IfRevision < 0 {
				return nil, usageErrorf("%s: ifRevision %d is negative", what, *o.IfRevision)
			}
			op.Cond = kv.IfRevision(*o.IfRevision)
		}
		ops = append(ops, op)
	}
	return ops, nil
}
