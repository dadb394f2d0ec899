// Command consensus runs and operates consensus nodes.
//
//	consensus serve --id n1 --listen 127.0.0.1:8080 --http 127.0.0.1:9080 --peers n1=127.0.0.1:8080,...
//	consensus up    # a local 3-node cluster
//	consensus kv put greeting '"hello"'   # talk to it
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes scripts can rely on (documented in usage and the README).
const (
	// exitOK: the command did what it was asked.
	exitOK = 0
	// exitFailure: the cluster, the network or the server failed.
	exitFailure = 1
	// exitUsage: the command line was wrong, or the server refused its
	// input (a key, a value, a txn); nothing was applied.
	exitUsage = 2
	// exitNotFound: the key, workflow or member does not exist.
	exitNotFound = 3
	// exitPrecondition: the cluster refused a change because of the
	// current state: a conditional write's revision did not match, or a
	// workflow transition that is not allowed.
	exitPrecondition = 4
)

const usage = `consensus: a Raft coordination service.

Usage:
  consensus serve [flags]   run one node (see: consensus serve --help)
  consensus up [flags]      run a local cluster of nodes (see: consensus up --help)
  consensus bench [flags]   measure a cluster: throughput, latency, failover (see: consensus bench --help)
  consensus demo 2node|3node|failover|workflow   run a narrated demo on a local cluster
  consensus certs [flags]   write a development CA and node certificates
  consensus snapshot save|status|restore   back up a cluster, check a backup, restore one (see: consensus snapshot --help)
  consensus recover --data DIR --id ID [--yes]   after a lost quorum: make a stopped survivor a one-member cluster (see: consensus recover --help)
  consensus version         print the version

Client commands (talk to a running cluster; see: consensus COMMAND --help):
  consensus status                          every endpoint's id, role, leader, term, indexes, health
  consensus kv put KEY VALUE|-              write a JSON value (--file F, --if-revision N, --if-absent, --lease ID, --ttl D)
  consensus kv get KEY                      read a key
  consensus kv del KEY                      delete a key (--if-revision N)
  consensus kv list [PREFIX]                keys and values under a prefix
  consensus kv watch [PREFIX]               print changes as they happen (--from-revision N, --count N)
  consensus kv txn [--file F]               puts and deletes all or nothing ({"ops":[...]} as POST /v1/txn)
  consensus member list|add|remove|promote  the cluster's members
  consensus leader transfer [TARGET]        hand leadership to TARGET (or the most caught-up voter)
  consensus workflow start|stop|update|get|list
  consensus node register|deregister|list   application nodes (REGISTER_NODE; not cluster members); register --ttl D: while it runs
  consensus lease grant TTL                 grant a lease and print its id; also keepalive ID [--once], revoke ID, ttl ID, list
  consensus lock NAME -- COMMAND [ARG...]   run COMMAND holding lock NAME (--ttl D, --wait D); its token in CONSENSUS_LOCK_TOKEN
  consensus elect NAME VALUE                campaign; print the token once leader, lead until Ctrl-C, then resign (--ttl D)
  consensus queue push|claim|complete|fail  task queues: claims carry an epoch; also requeue, get, list, stats

Global flags of the client commands:
  --endpoints LIST   comma-separated HTTP addresses of members (env CONSENSUS_ENDPOINTS;
                     default 127.0.0.1:9080,127.0.0.1:9081,127.0.0.1:9082, as started by consensus up)
  --output FORMAT    table or json (default table)
  --token T          bearer token (env CONSENSUS_TOKEN); --token-file F reads it from a file
  --cacert FILE      CA certificate for https:// endpoints
  --cert F --key F   client certificate and key, for servers started with --client-ca
  --timeout D        bound on each command (default 10s)
  snapshot save takes --endpoints, --token, --token-file, --cacert, --cert and --key;
  bench (with its own --endpoints) the last five; commands that talk to no cluster
  refuse them.

Exit codes:
  0  success
  1  failure: the cluster, the network or the server
  2  usage error: the command line was wrong, or the server refused its input
     (invalid_key, too_large, bad_request, invalid_lease); nothing was applied
  3  not found: the key, workflow, member, lease or lock does not exist
  4  precondition failed: a conditional write's revision did not match,
     or a workflow transition that is not allowed (start a running one, stop a stopped one),
     or lease grant --id named an id in use, or a lock was held for the whole --wait
  lock exits with its COMMAND's code.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code (see
// the exit* constants).
func run(args []string, stdout, stderr io.Writer) int {
	return execute(context.Background(), args, stdout, stderr, cliEnv{stdin: os.Stdin})
}

// execute runs args with the given context (cancelled like Ctrl-C) and
// environment; run is its production form.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer, env cliEnv) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	root := newRootCmd(stdout, stderr, env)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var exit *exitError
	if errors.As(err, &exit) {
		if exit.msg != "" {
			fmt.Fprintln(stderr, "consensus: "+oneLine(exit.msg))
		}
		return exit.code
	}
	// Anything else comes from cobra before a command ran: an unknown
	// command or flag, a wrong number of arguments, flags that go
	// together given apart.
	if cmd != nil && cmd != root {
		fmt.Fprintf(stderr, "consensus: %s: %s (see '%s --help')\n", commandPath(cmd), oneLine(err.Error()), cmd.CommandPath())
	} else {
		fmt.Fprintf(stderr, "consensus: %s (see 'consensus help')\n", oneLine(err.Error()))
	}
	return exitUsage
}

// exitError ends a command with an exit code and, unless msg is empty, one
// line on stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageErrorf is an exitUsage error.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

// failuref is an exitFailure error.
func failuref(format string, args ...any) error {
	return &exitError{code: exitFailure, msg: fmt.Sprintf(format, args...)}
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func newRootCmd(stdout, stderr io.Writer, env cliEnv) *cobra.Command {
	root := &cobra.Command{
		Use:           "consensus",
		Short:         "a Raft coordination service",
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       version,
		// No completion command: the CLI's surface is what usage lists.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("consensus {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErrorf("%s: %v (see '%s --help')", commandPath(c), err, c.CommandPath())
	})
	// The root's help is the hand-written usage; subcommands keep cobra's.
	defaultHelp := root.HelpFunc()
	root.SetHelpFunc(func(c *cobra.Command, args []string) {
		if c == root {
			fmt.Fprint(stdout, usage)
			return
		}
		defaultHelp(c, args)
	})

	root.AddCommand(newServeCmd(stdout, stderr), newUpCmd(stdout, stderr))
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			fmt.Fprintln(stdout, "consensus", version)
		},
	})

	c := newCLI(stdout, stderr, env)
	c.addGlobalFlags(root)
	root.AddCommand(c.statusCmd(), c.kvCmd(), c.memberCmd(), c.leaderCmd(), c.workflowCmd(), c.nodeCmd(), c.leaseCmd(),
		c.lockCmd(), c.electCmd(), c.queueCmd(), c.scheduleCmd())
	root.AddCommand(c.benchCmd(), certsCmd(stdout), demoCmd(stdout), demoWorkerCmd(stdout), c.snapshotCmd(), recoverCmd(stdout))
	// A command that declares which global flags it takes (withGlobalFlags)
	// refuses the others rather than ignore them.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		return checkGlobalFlags(cmd)
	}
	return root
}

// globalFlagsKey is the annotation of a command that takes only some of
// the client commands' global flags: their names, comma-separated.
const globalFlagsKey = "consensus/global-flags"

// withGlobalFlags declares that cmd takes only the named global flags
// (none if names is empty): checkGlobalFlags refuses the others, and its
// help lists only these.
func withGlobalFlags(cmd *cobra.Command, names ...string) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[globalFlagsKey] = strings.Join(names, ",")
	cmd.SetUsageFunc(writeUsage)
	return cmd
}

// allowedGlobal reports whether cmd takes the global flag name.
func allowedGlobal(cmd *cobra.Command, name string) bool {
	list, restricted := cmd.Annotations[globalFlagsKey]
	return !restricted || slices.Contains(strings.Split(list, ","), name)
}

// checkGlobalFlags refuses a global flag given to a command that does not
// take it: `consensus certs --endpoints X` is a mistake, not a no-op.
func checkGlobalFlags(cmd *cobra.Command) error {
	var refused []string
	cmd.InheritedFlags().VisitAll(func(f *pflag.Flag) {
		if f.Changed && !allowedGlobal(cmd, f.Name) {
			refused = append(refused, "--"+f.Name)
		}
	})
	if len(refused) > 0 {
		return usageErrorf("%s: %s: not a flag of this command (see '%s --help')",
			commandPath(cmd), strings.Join(refused, ", "), cmd.CommandPath())
	}
	return nil
}

// writeUsage is the usage of a command with withGlobalFlags: cobra's
// layout, with only the global flags the command takes.
func writeUsage(cmd *cobra.Command) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage:\n  %s\n", cmd.UseLine())
	if cmd.HasAvailableSubCommands() {
		b.WriteString("\nCommands:\n")
		for _, s := range cmd.Commands() {
			if s.IsAvailableCommand() {
				fmt.Fprintf(&b, "  %-*s %s\n", s.NamePadding(), s.Name(), s.Short)
			}
		}
	}
	if local := cmd.LocalFlags(); local.HasAvailableFlags() {
		b.WriteString("\nFlags:\n" + local.FlagUsages())
	}
	global := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	cmd.InheritedFlags().VisitAll(func(f *pflag.Flag) {
		if allowedGlobal(cmd, f.Name) {
			global.AddFlag(f)
		}
	})
	if global.HasAvailableFlags() {
		b.WriteString("\nGlobal Flags:\n" + global.FlagUsages())
	}
	if cmd.HasAvailableSubCommands() {
		fmt.Fprintf(&b, "\nUse \"%s [command] --help\" for more information about a command.\n", cmd.CommandPath())
	}
	_, err := io.WriteString(cmd.OutOrStderr(), b.String())
	return err
}

// groupCmd is a command that only holds subcommands: run alone or with an
// unknown subcommand it is a usage error, not a help page on stdout.
func groupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 1 && args[0] == "help" {
				return c.Help()
			}
			var names []string
			for _, s := range c.Commands() {
				names = append(names, s.Name())
			}
			if len(args) == 0 {
				return usageErrorf("%s: missing subcommand (%s; see '%s --help')", commandPath(c), strings.Join(names, ", "), c.CommandPath())
			}
			return usageErrorf("%s: unknown subcommand %q (%s; see '%s --help')", commandPath(c), args[0], strings.Join(names, ", "), c.CommandPath())
		},
	}
	cmd.AddCommand(subs...)
	return cmd
}

// commandPath is the command's path without the program name.
func commandPath(c *cobra.Command) string {
	return strings.TrimPrefix(c.CommandPath(), "consensus ")
}
