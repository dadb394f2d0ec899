package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/cluster"
)

// endpointStatus is one row of consensus status.
type endpointStatus struct {
	Endpoint      string `json:"endpoint"`
	NodeID        string `json:"nodeId,omitempty"`
	Role          string `json:"role,omitempty"`
	IsLeader      bool   `json:"isLeader"`
	LeaderID      string `json:"leaderId,omitempty"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commitIndex"`
	AppliedIndex  uint64 `json:"appliedIndex"`
	SnapshotIndex uint64 `json:"snapshotIndex"`
	// Health is the node's health as the leader sees it (the first
	// reachable endpoint without a known leader), if it answered.
	Health string `json:"health,omitempty"`
	Error  string `json:"error,omitempty"`
}

// statusResult is the JSON answer of consensus status.
type statusResult struct {
	Endpoints []endpointStatus `json:"endpoints"`
}

func (c *cli) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "every endpoint's node: id, role, leader, term, commit and applied index, health",
		Long: `Ask every endpoint for its node's status: one row per endpoint with the node's
id, role (leader, follower, learner or removed), the leader it knows, its raft
term, commit and applied index, and its health as the leader's health checks
see it. An endpoint that does not answer gets a row with the error, and the exit
code is then 1.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				rows, failed := s.status(ctx)
				var err error
				if s.json {
					err = s.printJSON(statusResult{Endpoints: rows})
				} else {
					err = s.statusTable(rows)
				}
				if err != nil {
					return err
				}
				if failed > 0 {
					return &exitError{code: exitFailure, msg: fmt.Sprintf("status: %d of %d endpoints did not answer", failed, len(rows))}
				}
				return nil
			})
		},
	}
}

// status asks every endpoint at once, then the leader for health.
func (s *session) status(ctx context.Context) (rows []endpointStatus, failed int) {
	rows = make([]endpointStatus, len(s.endpoints))
	var wg sync.WaitGroup
	for i, ep := range s.endpoints {
		wg.Go(func() {
			rows[i] = endpointStatus{Endpoint: ep}
			st, err := s.client.EndpointStatus(ctx, ep)
			if err != nil {
				rows[i].Error = oneLine(describe(err))
				return
			}
			rows[i] = endpointStatus{Endpoint: ep, NodeID: st.NodeID, Role: role(st), IsLeader: st.IsLeader,
				LeaderID: st.LeaderID, Term: st.Term, CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex,
				SnapshotIndex: st.SnapshotIndex}
		})
	}
	wg.Wait()
	healthFrom := -1
	for i, r := range rows {
		if r.Error != "" {
			failed++
			continue
		}
		if healthFrom < 0 || r.IsLeader {
			healthFrom = i
		}
	}
	if healthFrom < 0 {
		return rows, failed
	}
	nodes, err := s.client.EndpointHealth(ctx, s.endpoints[healthFrom])
	if err != nil {
		return rows, failed // health is best effort: status still tells the rest
	}
	health := map[string]cluster.Health{}
	for _, n := range nodes {
		health[n.ID] = n.Health
	}
	for i := range rows {
		if h, ok := health[rows[i].NodeID]; ok {
			rows[i].Health = string(h)
		}
	}
	return rows, failed
}

// role names a node's part in the cluster.
func role(st consensus.Status) string {
	switch {
	case st.Removed:
		return "removed"
	case st.IsLeader:
		return "leader"
	}
	for _, m := range st.Members {
		if m.ID == st.NodeID && !m.Voter {
			return "learner"
		}
	}
	return "follower"
}

func (s *session) statusTable(rows []endpointStatus) error {
	header := []string{"ENDPOINT", "ID", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "HEALTH"}
	var out [][]string
	for _, r := range rows {
		if r.Error != "" {
			out = append(out, []string{r.Endpoint, "-", "-", "-", "-", "-", "-", "error: " + r.Error})
			continue
		}
		out = append(out, []string{r.Endpoint, r.NodeID, r.Role, dash(r.LeaderID),
			strconv.FormatUint(r.Term, 10), strconv.FormatUint(r.CommitIndex, 10),
			strconv.FormatUint(r.AppliedIndex, 10), dash(r.Health)})
	}
	return s.table(header, out)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *cli) memberCmd() *cobra.Command {
	return groupCmd("member", "list and change the cluster's members",
		c.memberListCmd(), c.memberAddCmd(), c.memberRemoveCmd(), c.memberPromoteCmd())
}

// membersResult is the JSON answer of member list and member add.
type membersResult struct {
	Member  *consensus.Member  `json:"member,omitempty"`
	Members []consensus.Member `json:"members"`
}

func (s *session) membersTable(members []consensus.Member) error {
	rows := make([][]string, len(members))
	for i, m := range members {
		r := "learner"
		if m.Voter {
			r = "voter"
		}
		rows[i] = []string{m.ID, r, m.PeerAddr, dash(m.HTTPAddr)}
	}
	return s.table([]string{"ID", "ROLE", "PEER-ADDR", "HTTP-ADDR"}, rows)
}

func (c *cli) memberListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "list the members: id, voter or learner, addresses",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				members, err := s.client.Members(ctx)
				if err != nil {
					return fail("member list", err)
				}
				if s.json {
					return s.printJSON(membersResult{Members: nonNil(members)})
				}
				return s.membersTable(members)
			})
		},
	}
}

func (c *cli) memberAddCmd() *cobra.Command {
	var peerAddr, httpAddr string
	cmd := &cobra.Command{
		Use:   "add ID --peer-addr HOST:PORT [--http-addr HOST:PORT]",
		Short: "add a member as a learner (promoted once it has caught up)",
		Long: `Add member ID as a learner: it receives the log but does not vote. The leader
promotes it to a voter once it has caught up; member promote does it at once.
Start the node with consensus serve --join. Prints the members after the change.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if peerAddr == "" {
				return usageErrorf("member add: --peer-addr is required")
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				members, err := s.client.AddMember(ctx, consensus.Member{ID: args[0], PeerAddr: peerAddr, HTTPAddr: httpAddr})
				if err != nil {
					return fail(fmt.Sprintf("member add %q", args[0]), err)
				}
				var added *consensus.Member
				for i := range members {
					if members[i].ID == args[0] {
						added = &members[i]
					}
				}
				if s.json {
					return s.printJSON(membersResult{Member: added, Members: nonNil(members)})
				}
				fmt.Fprintf(s.stdout, "added %s as a learner\n", args[0])
				return s.membersTable(members)
			})
		},
	}
	cmd.Flags().StringVar(&peerAddr, "peer-addr", "", "host:port of the new member's peer traffic (its serve --listen)")
	cmd.Flags().StringVar(&httpAddr, "http-addr", "", "host:port of the new member's HTTP API (its serve --http); it advertises it itself once it runs")
	return cmd
}

// changeResult is the JSON answer of member remove and member promote.
type changeResult struct {
	Removed  string `json:"removed,omitempty"`
	Promoted string `json:"promoted,omitempty"`
}

func (c *cli) memberRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "remove ID",
		Aliases: []string{"rm"},
		Short:   "remove a member for good (a leader hands over first)",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				if err := s.client.RemoveMember(ctx, args[0]); err != nil {
					return fail(fmt.Sprintf("member remove %q", args[0]), err)
				}
				if s.json {
					return s.printJSON(changeResult{Removed: args[0]})
				}
				_, err := fmt.Fprintf(s.stdout, "removed %s\n", args[0])
				return err
			})
		},
	}
}

func (c *cli) memberPromoteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "promote ID",
		Short: "make the learner ID a voter now",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				if err := s.client.PromoteMember(ctx, args[0]); err != nil {
					return fail(fmt.Sprintf("member promote %q", args[0]), err)
				}
				if s.json {
					return s.printJSON(changeResult{Promoted: args[0]})
				}
				_, err := fmt.Fprintf(s.stdout, "promoted %s to a voter\n", args[0])
				return err
			})
		},
	}
}

func (c *cli) leaderCmd() *cobra.Command {
	transfer := &cobra.Command{
		Use:   "transfer [TARGET]",
		Short: "hand leadership to TARGET (without one: the most caught-up voter)",
		Args:  maxArgs("TARGET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			target := ""
			if len(args) == 1 {
				target = args[0]
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				leader, err := s.client.TransferLeadership(ctx, target)
				if err != nil {
					what := "leader transfer"
					if target != "" {
						what = fmt.Sprintf("leader transfer %q", target)
					}
					return fail(what, err)
				}
				if s.json {
					return s.printJSON(struct {
						LeaderID string `json:"leaderId"`
					}{leader})
				}
				_, err = fmt.Fprintf(s.stdout, "leader is now %s\n", leader)
				return err
			})
		},
	}
	return groupCmd("leader", "leadership", transfer)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
