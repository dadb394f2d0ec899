package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server"
)

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
			ops, err := server.ParseTxn(raw)
			if err != nil {
				return usageErrorf("kv txn: %v", err)
			}
			for i, op := range ops {
				if err := checkKey(fmt.Sprintf("kv txn: op %d (%q)", i, op.Key), op.Key); err != nil {
					return err
				}
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				rev, err := s.client.Batch(ctx, ops)
				if errors.Is(err, kv.ErrKeyNotFound) {
					// Name the key: a batch may delete several.
					if key, ok := missingKey(err, ops); ok {
						return fail(fmt.Sprintf("kv txn: delete %q", key), err)
					}
				}
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

// missingKey returns the key of the delete in ops that err, a batch
// refused with kv.ErrKeyNotFound, names (the server's message quotes it),
// or the only delete if there is one.
func missingKey(err error, ops []kv.Op) (string, bool) {
	var deletes []string
	for _, op := range ops {
		if op.Type == kv.OpDelete {
			deletes = append(deletes, op.Key)
		}
	}
	var se *client.ServerError
	if errors.As(err, &se) {
		for _, key := range deletes {
			if strings.Contains(se.Message, strconv.Quote(key)) {
				return key, true
			}
		}
	}
	if len(deletes) == 1 {
		return deletes[0], true
	}
	return "", false
}
