package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
)

// nodeCmd manages the application nodes the seed's REGISTER_NODE and
// DEREGISTER_NODE record in the state (node:<id>); cluster members are
// `member`.
func (c *cli) nodeCmd() *cobra.Command {
	return groupCmd("node", "register, deregister and list application nodes (node:<id>; cluster members are 'member')",
		c.nodeRegisterCmd(), c.nodeDeregisterCmd(), c.nodeListCmd())
}

func (c *cli) nodeRegisterCmd() *cobra.Command {
	var data string
	cmd := &cobra.Command{
		Use:   "register ID [--data JSON]",
		Short: "register application node ID with --data's metadata (again: replaces it)",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			var meta []byte
			if cmd.Flags().Changed("data") {
				var err error
				if meta, err = jsonArg(fmt.Sprintf("node register %q: --data", id), []byte(data), true); err != nil {
					return err
				}
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				rev, err := s.client.RegisterNode(ctx, id, meta)
				if err != nil {
					return fail(fmt.Sprintf("node register %q", id), err)
				}
				return s.printRevision(rev)
			})
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "the node's metadata, a JSON object")
	return cmd
}

func (c *cli) nodeDeregisterCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "deregister ID",
		Short: "deregister application node ID",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				rev, err := s.client.DeregisterNode(ctx, args[0])
				if err != nil {
					return fail(fmt.Sprintf("node deregister %q", args[0]), err)
				}
				return s.printRevision(rev)
			})
		},
	}
}

// nodesResult is the JSON answer of node list.
type nodesResult struct {
	Nodes    []kv.Node `json:"nodes"`
	Revision int64     `json:"revision"`
}

func (c *cli) nodeListCmd() *cobra.Command {
	return listCmd(c, "node list", "list the registered application nodes", []string{"ID", "REVISION", "VALUE"},
		func(n kv.Node) []string { return []string{n.ID, strconv.FormatInt(n.Revision, 10), string(n.Value)} },
		func(ctx context.Context, cl *client.Client, opt client.ReadOption) ([]kv.Node, int64, error) {
			return cl.Nodes(ctx, opt)
		},
		func(ns []kv.Node, rev int64) any { return nodesResult{Nodes: ns, Revision: rev} })
}
