package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

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
	var sf sessionFlags
	cmd := &cobra.Command{
		Use:   "register ID [--data JSON] [--ttl 10s]",
		Short: "register application node ID with --data's metadata (again: replaces it); --ttl: while this runs",
		Long: `Register application node ID (node:<ID>) with --data's metadata, a JSON object;
registering again replaces it. With --ttl, the registration lives as long as
this command: it is made under a session (a lease of time to live --ttl, kept
alive meanwhile), the revision is printed, and the command runs until Ctrl-C or
SIGTERM, then revokes the lease, which deregisters the node (exit code 0). If
the session is lost (the lease could not be kept alive; the node is
deregistered when it expires) the command exits with code 1 and one line on
stderr.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			var meta []byte
			if cmd.Flags().Changed("data") {
				var err error
				if meta, err = jsonArg(fmt.Sprintf("node register %q: --data", id), []byte(data), true); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("ttl") {
				what := fmt.Sprintf("node register %q", id)
				ttl, err := sf.parse(what)
				if err != nil {
					return err
				}
				return c.withClient(cmd, false, func(ctx context.Context, s *session) error {
					ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
					defer stop()
					return s.registerWhileRunning(ctx, what, id, meta, ttl)
				})
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
	sf.add(cmd, "the registration")
	return cmd
}

// registerWhileRunning registers node id under a new session's lease and
// keeps it alive until ctx ends or the session is lost.
func (s *session) registerWhileRunning(ctx context.Context, what, id string, meta []byte, ttl time.Duration) error {
	sess, err := s.openSession(ctx, what, ttl)
	if err != nil {
		return err
	}
	defer s.closeSession(sess)
	regCtx, cancel := context.WithTimeout(ctx, s.timeout)
	rev, err := s.client.RegisterNodeWith(regCtx, id, meta, client.PutOptions{Lease: sess.Lease()})
	cancel()
	if err != nil {
		return fail(what, err)
	}
	if err := s.printRevision(rev); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case <-sess.Done():
		return sessionLost(what, sess)
	}
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
