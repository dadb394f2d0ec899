package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
)

// leaseCmd serves leases: times to live that keys can be attached to
// (docs/API.md "Leases").
func (c *cli) leaseCmd() *cobra.Command {
	return groupCmd("lease", "grant, keep alive, revoke and inspect leases (keys attached to one go when it does)",
		c.leaseGrantCmd(), c.leaseKeepAliveCmd(), c.leaseRevokeCmd(), c.leaseTTLCmd(), c.leaseListCmd())
}

// parseTTL reads a time to live: a Go duration ("10s", "1m30s") or a
// whole number of seconds, 1 ms to 30 days.
func parseTTL(what, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseInt(s, 10, 64)
		if nerr != nil || n > api.MaxLeaseTTLMs/1000 {
			return 0, usageErrorf("%s %q: want a duration such as 10s or 1m30s (or whole seconds)", what, s)
		}
		d = time.Duration(n) * time.Second
	}
	if d < time.Millisecond || d > api.MaxLeaseTTLMs*time.Millisecond {
		return 0, usageErrorf("%s %s: want 1ms to 720h (30 days)", what, s)
	}
	return d, nil
}

// parseLease reads a lease id argument (hexadecimal, as grant prints it).
func parseLease(what, s string) (api.LeaseID, error) {
	id, err := api.ParseLeaseID(s)
	if err != nil {
		return 0, usageErrorf("%s: %v", what, err)
	}
	return id, nil
}

// ttlText shows a number of milliseconds as a duration ("10s", "1.5s").
func ttlText(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

func (c *cli) leaseGrantCmd() *cobra.Command {
	var idFlag string
	cmd := &cobra.Command{
		Use:   "grant TTL",
		Short: "grant a lease with time to live TTL (10s, 1m, or whole seconds) and print its id",
		Long: `Grant a lease with time to live TTL (a duration such as 10s or 1m30s, or whole
seconds; 1ms to 720h) and print its id (hexadecimal), for kv put --lease and the
other lease commands. Unless kept alive (lease keepalive), it expires TTL after
the grant, and the keys attached to it are deleted. --id asks for that id
(exit code 4 if it is in use).`,
		Args: exactArgs("TTL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ttl, err := parseTTL("lease grant: TTL", args[0])
			if err != nil {
				return err
			}
			var opts []client.GrantOption
			if cmd.Flags().Changed("id") {
				id, err := parseLease("lease grant: --id", idFlag)
				if err != nil {
					return err
				}
				opts = append(opts, client.WithLeaseID(id))
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				l, err := s.client.Grant(ctx, ttl, opts...)
				if err != nil {
					return fail("lease grant", err)
				}
				if s.json {
					return s.printJSON(l)
				}
				_, err = fmt.Fprintln(s.stdout, l.ID)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&idFlag, "id", "", "grant under this id (hexadecimal) instead of a random one")
	return cmd
}

func (c *cli) leaseKeepAliveCmd() *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "keepalive ID",
		Short: "keep lease ID alive until Ctrl-C (--once: one keepalive)",
		Long: `Keep lease ID alive: renew it now and every third of its time to live, printing
a line for each renewal ("lease ID kept alive, ttl 10s"; JSON output is one
object per line), until Ctrl-C (exit code 0). --once renews it once and exits.
A lease that has expired or was revoked ends it with exit code 3; a keepalive
that fails (with the client's retries, within --timeout) with exit code 1.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseLease("lease keepalive: ID", args[0])
			if err != nil {
				return err
			}
			return c.withClient(cmd, false, func(ctx context.Context, s *session) error {
				ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
				return s.keepAlive(ctx, id, once)
			})
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "renew the lease once and exit")
	return cmd
}

// keepAlive renews lease id every third of its time to live until ctx
// ends (a clean end), or once.
func (s *session) keepAlive(ctx context.Context, id api.LeaseID, once bool) error {
	what := "lease keepalive " + id.String()
	for {
		callCtx, cancel := context.WithTimeout(ctx, s.timeout)
		l, err := s.client.KeepAlive(callCtx, id)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C
			}
			return fail(what, err)
		}
		if err := s.printKeepAlive(l); err != nil {
			return &exitError{code: exitFailure, msg: what + ": " + err.Error()}
		}
		if once {
			return nil
		}
		t := time.NewTimer(time.Duration(l.TTLMs) * time.Millisecond / 3)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (s *session) printKeepAlive(l api.Lease) error {
	if s.json {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(s.stdout, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintf(s.stdout, "lease %s kept alive, ttl %s\n", l.ID, ttlText(l.TTLMs))
	return err
}

func (c *cli) leaseRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "revoke lease ID: it and the keys attached to it are deleted",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseLease("lease revoke: ID", args[0])
			if err != nil {
				return err
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				rev, err := s.client.Revoke(ctx, id)
				if err != nil {
					return fail("lease revoke "+id.String(), err)
				}
				return s.printRevision(rev)
			})
		},
	}
}

func (c *cli) leaseTTLCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ttl ID",
		Short: "show lease ID: its time to live, the time it has left and its keys",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseLease("lease ttl: ID", args[0])
			if err != nil {
				return err
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				l, err := s.client.TimeToLive(ctx, id)
				if err != nil {
					return fail("lease ttl "+id.String(), err)
				}
				if s.json {
					r := leaseTTLResult{ID: l.ID, TTLMs: l.TTLMs, RemainingMs: l.RemainingMs, Keys: make([]api.JSONKey, len(l.Keys))}
					for i, k := range l.Keys {
						r.Keys[i] = api.JSONKey(k)
					}
					return s.printJSON(r)
				}
				remaining := "unknown"
				if l.RemainingMs != nil {
					remaining = ttlText(*l.RemainingMs)
				}
				keys := make([]string, len(l.Keys))
				for i, k := range l.Keys {
					keys[i] = keyCell(k)
				}
				return s.table([]string{"ID", "TTL", "REMAINING", "KEYS"},
					[][]string{{l.ID.String(), ttlText(l.TTLMs), remaining, strings.Join(keys, ",")}})
			})
		},
	}
}

// leaseTTLResult is the JSON answer of lease ttl: the lease with its
// keys always present ([] for none), each key as api.AppendKeyJSON
// writes it.
type leaseTTLResult struct {
	ID          api.LeaseID   `json:"id"`
	TTLMs       int64         `json:"ttlMs"`
	RemainingMs *int64        `json:"remainingMs,omitempty"`
	Keys        []api.JSONKey `json:"keys"`
}

// leasesResult is the JSON answer of lease list.
type leasesResult struct {
	Leases []api.Lease `json:"leases"`
}

func (c *cli) leaseListCmd() *cobra.Command {
	var read readOption
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "list the leases with their time to live",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opt, err := read.option()
			if err != nil {
				return err
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				ls, err := s.client.Leases(ctx, opt)
				if err != nil {
					return fail("lease list", err)
				}
				if s.json {
					return s.printJSON(leasesResult{Leases: nonNil(ls)})
				}
				rows := make([][]string, len(ls))
				for i, l := range ls {
					rows[i] = []string{l.ID.String(), ttlText(l.TTLMs)}
				}
				return s.table([]string{"ID", "TTL"}, rows)
			})
		},
	}
	read.add(cmd)
	return cmd
}
