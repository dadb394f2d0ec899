package main

import (
	"context"

	"github.com/spf13/cobra"

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
