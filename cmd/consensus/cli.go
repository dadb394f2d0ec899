package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/internal/certs"
	"github.com/unrdf/consensus/kv"
)

// The client commands' defaults and environment variables.
const (
	// defaultEndpoints is the cluster `consensus up` starts.
	defaultEndpoints = "127.0.0.1:9080,127.0.0.1:9081,127.0.0.1:9082"
	envEndpoints     = "CONSENSUS_ENDPOINTS"
	envToken         = "CONSENSUS_TOKEN"
	defaultTimeout   = 10 * time.Second
	// maxInputBytes bounds a value read from a file or stdin: a frame of
	// the /v1/ws protocol, which no larger value fits in.
	maxInputBytes = client.DefaultMaxFrameBytes
)

// cliEnv is what the client commands take from their surroundings beside
// stdout and stderr; tests supply their own.
type cliEnv struct {
	// stdin is read by `kv put KEY -` and `--file -`.
	stdin io.Reader
	// watchOpened, if set, is called once a watch's stream is open, with
	// the first revision it will deliver.
	watchOpened func(startRevision int64)
}

// cli holds the global flags of the client commands and builds their
// clients.
type cli struct {
	stdout, stderr io.Writer
	env            cliEnv

	root          *cobra.Command
	endpointsFlag string
	outputFlag    string
	tokenFlag     string
	tokenFile     string
	cacert        string
	certFile      string
	keyFile       string
	timeout       time.Duration
}

func newCLI(stdout, stderr io.Writer, env cliEnv) *cli {
	return &cli{stdout: stdout, stderr: stderr, env: env}
}

// addGlobalFlags declares the client commands' flags on root; they are
// persistent, so they go anywhere after the command name.
func (c *cli) addGlobalFlags(root *cobra.Command) {
	c.root = root
	f := root.PersistentFlags()
	f.StringVar(&c.endpointsFlag, "endpoints", defaultEndpoints, "comma-separated HTTP addresses of cluster members (env "+envEndpoints+")")
	f.StringVarP(&c.outputFlag, "output", "o", "table", "output format: table or json")
	f.StringVar(&c.tokenFlag, "token", "", "bearer token for servers started with --auth-token-file (env "+envToken+")")
	f.StringVar(&c.tokenFile, "token-file", "", "file whose first word is the bearer token")
	f.StringVar(&c.cacert, "cacert", "", "CA certificate (PEM) to verify https:// endpoints with")
	f.StringVar(&c.certFile, "cert", "", "client certificate (PEM) for servers started with --client-ca; with --key")
	f.StringVar(&c.keyFile, "key", "", "the client certificate's key (PEM)")
	f.DurationVar(&c.timeout, "timeout", defaultTimeout, "bound on the command (a watch: on opening it)")
	root.MarkFlagsMutuallyExclusive("token", "token-file")
	root.MarkFlagsRequiredTogether("cert", "key")
}

// settings are the checked global flags.
type settings struct {
	endpoints []string
	json      bool
	token     string
}

// settings checks the global flags and resolves the environment.
func (c *cli) settings() (settings, error) {
	var s settings
	switch c.outputFlag {
	case "table":
	case "json":
		s.json = true
	default:
		return s, usageErrorf("--output %q: want table or json", c.outputFlag)
	}
	if c.timeout <= 0 {
		return s, usageErrorf("--timeout %s: want a positive duration", c.timeout)
	}
	list := c.endpointsFlag
	if env := os.Getenv(envEndpoints); env != "" && !c.root.PersistentFlags().Changed("endpoints") {
		list = env
	}
	for _, e := range strings.Split(list, ",") {
		if e = strings.TrimSpace(e); e != "" {
			s.endpoints = append(s.endpoints, e)
		}
	}
	if len(s.endpoints) == 0 {
		return s, usageErrorf("--endpoints names no endpoint")
	}
	switch {
	case c.tokenFlag != "":
		s.token = c.tokenFlag
	case c.tokenFile != "":
		tok, err := readToken(c.tokenFile)
		if err != nil {
			return s, usageErrorf("--token-file: %v", err)
		}
		s.token = tok
	default:
		s.token = os.Getenv(envToken)
	}
	return s, nil
}

// readToken returns the first word of the first line of path that is not
// blank or a # comment: a file holding just the token, or a server's
// --auth-token-file ("<token> <rw|ro>" lines), work alike.
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return strings.Fields(line)[0], nil
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s holds no token", path)
}

// tlsConfig is the TLS configuration --cacert, --cert and --key ask for;
// nil when none of them is given.
func (c *cli) tlsConfig() (*tls.Config, error) {
	if c.cacert == "" && c.certFile == "" && c.keyFile == "" {
		return nil, nil
	}
	cfg, err := certs.ClientConfig(c.certFile, c.keyFile, c.cacert)
	if err != nil {
		return nil, usageErrorf("--cacert, --cert, --key: %v", strings.TrimPrefix(err.Error(), "certs: "))
	}
	return cfg, nil
}

// session is one client command's connection to the cluster.
type session struct {
	*cli
	settings
	client *client.Client
	// transport is ours when --cacert or --cert is given; closed with the
	// client.
	transport *http.Transport
}

// withClient checks the global flags, connects a client and runs fn with
// a context bounded by --timeout (none when timed is false).
func (c *cli) withClient(cmd *cobra.Command, timed bool, fn func(ctx context.Context, s *session) error) error {
	st, err := c.settings()
	if err != nil {
		return prefixUsage(commandPath(cmd), err)
	}
	s := &session{cli: c, settings: st}
	cfg := client.Config{Endpoints: st.endpoints, Token: st.token, RequestTimeout: c.timeout}
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return prefixUsage(commandPath(cmd), err)
	}
	if tlsCfg != nil {
		s.transport = &http.Transport{
			Proxy:           http.ProxyFromEnvironment,
			DialContext:     (&net.Dialer{Timeout: client.DefaultDialTimeout}).DialContext,
			TLSClientConfig: tlsCfg,
		}
		cfg.HTTPClient = &http.Client{Transport: s.transport}
	}
	s.client, err = client.New(cfg)
	if err != nil {
		return usageErrorf("%s: %v", commandPath(cmd), strings.TrimPrefix(err.Error(), "client: "))
	}
	defer func() {
		_ = s.client.Close()
		if s.transport != nil {
			s.transport.CloseIdleConnections()
		}
	}()
	ctx := cmd.Context()
	if timed {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	return fn(ctx, s)
}

// fail turns the error of an operation described by what (`kv get "a"`)
// into the command's exit code and one line.
func fail(what string, err error) error {
	code := exitFailure
	var msg string
	var se *client.ServerError
	hasSE := errors.As(err, &se)
	switch {
	case errors.Is(err, kv.ErrKeyNotFound), errors.Is(err, kv.ErrWorkflowNotFound),
		errors.Is(err, kv.ErrNodeNotFound), errors.Is(err, consensus.ErrUnknownMember):
		code, msg = exitNotFound, "not found"
	case errors.Is(err, kv.ErrLeaseNotFound):
		code, msg = exitNotFound, "lease not found (expired, revoked, or never granted)"
	case errors.Is(err, kv.ErrLeaseExists):
		code, msg = exitPrecondition, "lease exists: the id is in use"
	case errors.Is(err, kv.ErrLocked):
		code, msg = exitPrecondition, "locked: held by another lease for the whole wait"
	case errors.Is(err, kv.ErrNotHolder):
		code, msg = exitPrecondition, "not the holder: the token does not hold the lock (any more)"
	case errors.Is(err, kv.ErrFenced):
		code, msg = exitPrecondition, "fenced: the lock is not held with that token"
	case errors.Is(err, kv.ErrLockNotFound):
		code, msg = exitNotFound, "lock not found: nobody holds or waits for it"
	case errors.Is(err, kv.ErrConflict):
		code, msg = exitPrecondition, "precondition failed"
		if hasSE {
			msg += ": " + detail(se, kv.ErrConflict)
		}
	case errors.Is(err, kv.ErrInvalidTransition):
		code, msg = exitPrecondition, "invalid transition"
		if hasSE {
			msg += ": " + detail(se, kv.ErrInvalidTransition)
		}
	case hasSE && inputCodes[se.Code]:
		// The server refused what the command line asked for: a key it
		// does not take, a value that is too large, a txn naming a key
		// twice. Nothing was applied.
		code, msg = exitUsage, se.Code+": "+se.Message
	case !hasSE && (errors.Is(err, kv.ErrInvalidKey) || errors.Is(err, kv.ErrValueTooLarge) ||
		errors.Is(err, kv.ErrInvalidTTL) || errors.Is(err, api.ErrInvalidLeaseID)):
		// Refused by the client before sending: too large for a frame, a
		// time to live or lease id out of range.
		code, msg = exitUsage, describe(err)
	case hasSE:
		msg = se.Code + ": " + se.Message
		if errors.Is(err, client.ErrOutcomeUnknown) {
			msg += " (the write may or may not be applied)"
		}
	case errors.Is(err, context.DeadlineExceeded):
		msg = "timed out (--timeout): " + describe(err)
	default:
		msg = describe(err)
	}
	return &exitError{code: code, msg: what + ": " + msg}
}

// httpsHint is the error of a plain-HTTP request to an HTTPS endpoint.
const httpsHint = "this endpoint speaks HTTPS: use https:// and --cacert"

// inputCodes are the server's answers that refuse the request's input
// (exit 2): what the command line asked for can never succeed as it is.
var inputCodes = map[string]bool{
	client.CodeInvalidKey:   true,
	client.CodeInvalidJSON:  true,
	client.CodeTooLarge:     true,
	client.CodeBadRequest:   true,
	client.CodeInvalidLease: true,
}

// describe says what went wrong with a request that got no answer from a
// server: for a connection that failed, the network's own words
// ("unavailable: dial tcp 127.0.0.1:9080: connect: connection refused")
// rather than every layer's prefix.
func describe(err error) string {
	if errors.Is(err, client.ErrHTTPSEndpoint) {
		return httpsHint
	}
	var op *net.OpError
	if errors.Is(err, client.ErrUnavailable) && errors.As(err, &op) {
		return "unavailable: " + op.Error()
	}
	return strings.TrimPrefix(err.Error(), "client: ")
}

// detail is the part of a server's message that says more than the
// sentinel it stands for: `kv: put "a": key is at revision 3, want 1:
// precondition failed` becomes `key is at revision 3, want 1`.
func detail(se *client.ServerError, sentinel error) string {
	msg := strings.TrimSuffix(se.Message, ": "+sentinel.Error())
	if strings.HasPrefix(msg, "kv: ") {
		if i := strings.Index(msg, `": `); i >= 0 {
			msg = msg[i+3:]
		}
	}
	return msg
}

// readOption is the --consistency flag of a read command.
type readOption struct{ consistency string }

func (r *readOption) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.consistency, "consistency", "linearizable", "linearizable (every acknowledged write) or local (this node's state: fast, possibly stale)")
}

func (r *readOption) option() (client.ReadOption, error) {
	switch r.consistency {
	case "linearizable":
		return client.WithConsistency(kv.Linearizable), nil
	case "local":
		return client.WithConsistency(kv.Local), nil
	}
	return nil, usageErrorf("--consistency %q: want linearizable or local", r.consistency)
}

// listCmd is the `list` command of one kind of object (workflows, nodes):
// what names it in errors, list reads every object, row makes one table
// row of header, and result the JSON document.
func listCmd[T any](c *cli, what, short string, header []string, row func(T) []string,
	list func(context.Context, *client.Client, client.ReadOption) ([]T, int64, error),
	result func(objects []T, revision int64) any) *cobra.Command {
	var read readOption
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   short,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opt, err := read.option()
			if err != nil {
				return err
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				objects, rev, err := list(ctx, s.client, opt)
				if err != nil {
					return fail(what, err)
				}
				if s.json {
					return s.printJSON(result(nonNil(objects), rev))
				}
				rows := make([][]string, len(objects))
				for i, o := range objects {
					rows[i] = row(o)
				}
				return s.table(header, rows)
			})
		},
	}
	read.add(cmd)
	return cmd
}

// printJSON writes v as one indented JSON document.
func (s *session) printJSON(v any) error {
	enc := json.NewEncoder(s.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes rows under a header (none when nil), in aligned columns.
func (s *session) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
	if header != nil {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// exactArgs accepts exactly the named arguments, as a usage error.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageErrorf("%s: want %d argument(s) (%s), got %d (see '%s --help')",
				commandPath(cmd), len(names), strings.Join(names, " "), len(args), cmd.CommandPath())
		}
		return nil
	}
}

// maxArgs accepts at most the named (optional) arguments.
func maxArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > len(names) {
			return usageErrorf("%s: want at most %d argument(s) ([%s]), got %d (see '%s --help')",
				commandPath(cmd), len(names), strings.Join(names, " "), len(args), cmd.CommandPath())
		}
		return nil
	}
}

// jsonArg checks that text is one JSON value (an object if object is
// set) and returns it compacted; what names it in the error.
func jsonArg(what string, text []byte, object bool) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, text); err != nil {
		return nil, usageErrorf("%s is not JSON (%v); a string needs quotes: '\"text\"'", what, err)
	}
	if object && buf.Bytes()[0] != '{' {
		return nil, usageErrorf("%s must be a JSON object", what)
	}
	return buf.Bytes(), nil
}
