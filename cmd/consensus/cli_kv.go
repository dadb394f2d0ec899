package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
)

func (c *cli) kvCmd() *cobra.Command {
	return groupCmd("kv", "read, write and watch keys",
		c.kvPutCmd(), c.kvGetCmd(), c.kvDelCmd(), c.kvListCmd(), c.kvWatchCmd(), c.kvTxnCmd())
}

// revisionResult is the JSON answer of a write.
type revisionResult struct {
	Revision int64 `json:"revision"`
}

func (c *cli) kvPutCmd() *cobra.Command {
	var (
		file       string
		ifRevision int64
		ifAbsent   bool
		leaseFlag  string
		ttlFlag    string
	)
	cmd := &cobra.Command{
		Use:   "put KEY [VALUE|-]",
		Short: "write a JSON value to KEY (VALUE, - for stdin, or --file)",
		Long: `Write a JSON value to KEY. VALUE is any JSON value: a string needs quotes
('"hello"'). "-" reads the value from stdin, as does --file -; --file F reads it
from a file. --if-revision N writes only if KEY is at revision N, --if-absent
only if it does not exist (exit code 4 otherwise). --lease ID attaches KEY to
lease ID (lease grant): it is deleted when the lease expires or is revoked
(exit code 3 if there is no such lease). --ttl 30s gives KEY a time to live of
its own: it is deleted 30s later unless written again.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if file != "" {
				return exactArgs("KEY")(cmd, args)
			}
			return exactArgs("KEY", "VALUE")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			if err := checkKey(fmt.Sprintf("kv put %q", key), key); err != nil {
				return err
			}
			var raw []byte
			var err error
			switch {
			case file != "":
				raw, err = c.readInput(file)
			case args[1] == "-":
				raw, err = c.readInput("-")
			default:
				raw = []byte(args[1])
			}
			if err != nil {
				return err
			}
			value, err := jsonArg(fmt.Sprintf("kv put %q: VALUE", key), raw, false)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("if-revision") && ifRevision < 1 {
				return usageErrorf("kv put: --if-revision %d: want a revision of 1 or more (--if-absent for none)", ifRevision)
			}
			var opts client.PutOptions
			switch {
			case ifAbsent:
				opts.Cond = kv.IfAbsent()
			case cmd.Flags().Changed("if-revision"):
				opts.Cond = kv.IfRevision(ifRevision)
			}
			if cmd.Flags().Changed("lease") {
				if opts.Lease, err = parseLease("kv put: --lease", leaseFlag); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("ttl") {
				if opts.TTL, err = parseTTL("kv put: --ttl", ttlFlag); err != nil {
					return err
				}
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				rev, err := s.client.PutWith(ctx, key, value, opts)
				if err != nil {
					return fail(fmt.Sprintf("kv put %q", key), err)
				}
				return s.printRevision(rev)
			})
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "read the value from this file (- for stdin)")
	cmd.Flags().Int64Var(&ifRevision, "if-revision", 0, "write only if the key is at this revision")
	cmd.Flags().BoolVar(&ifAbsent, "if-absent", false, "write only if the key does not exist")
	cmd.Flags().StringVar(&leaseFlag, "lease", "", "attach the key to this lease (its id, as lease grant prints it)")
	cmd.Flags().StringVar(&ttlFlag, "ttl", "", "give the key a time to live of its own (10s, 1m, ...)")
	cmd.MarkFlagsMutuallyExclusive("if-revision", "if-absent")
	cmd.MarkFlagsMutuallyExclusive("lease", "ttl")
	return cmd
}

// readInput reads a value from a file, or stdin for "-".
func (c *cli) readInput(name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		if c.env.stdin == nil {
			return nil, usageErrorf("no stdin to read the value from")
		}
		r = c.env.stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, usageErrorf("--file: %v", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	if err != nil {
		return nil, &exitError{code: exitFailure, msg: fmt.Sprintf("reading %s: %v", name, err)}
	}
	if int64(len(b)) > maxInputBytes {
		return nil, usageErrorf("the value in %s is larger than %d bytes", name, maxInputBytes)
	}
	return b, nil
}

// printRevision prints a write's revision.
func (s *session) printRevision(rev int64) error {
	if s.json {
		return s.printJSON(revisionResult{Revision: rev})
	}
	_, err := fmt.Fprintf(s.stdout, "OK revision %d\n", rev)
	return err
}

func (c *cli) kvGetCmd() *cobra.Command {
	var (
		read      readOption
		valueOnly bool
	)
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "read KEY: value, revision, create revision, version",
		Args:  exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt, err := read.option()
			if err != nil {
				return err
			}
			if err := checkKey(fmt.Sprintf("kv get %q", args[0]), args[0]); err != nil {
				return err
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				item, err := s.client.Get(ctx, args[0], opt)
				if err != nil {
					return fail(fmt.Sprintf("kv get %q", args[0]), err)
				}
				switch {
				case valueOnly:
					_, err = fmt.Fprintf(s.stdout, "%s\n", item.Value)
					return err
				case s.json:
					return s.printJSON(item)
				}
				return s.table(itemHeader, [][]string{itemRow(item)})
			})
		},
	}
	read.add(cmd)
	cmd.Flags().BoolVar(&valueOnly, "value-only", false, "print only the value (JSON), whatever --output says")
	return cmd
}

var itemHeader = []string{"KEY", "REVISION", "CREATED", "VERSION", "VALUE"}

func itemRow(it kv.Item) []string {
	return []string{keyCell(it.Key), strconv.FormatInt(it.Revision, 10), strconv.FormatInt(it.CreateRevision, 10),
		strconv.FormatInt(it.Version, 10), valueCell(it.Value)}
}

// checkKey refuses a key (or prefix) with a control character before
// anything is sent: the server refuses such keys (invalid_key), and a
// table could not show one. what names the command in the error.
func checkKey(what, key string) error {
	for i, r := range key {
		if unicode.IsControl(r) {
			return usageErrorf("%s: the key holds the control character %U at byte %d; keys may not hold control characters", what, r, i)
		}
	}
	return nil
}

// printable reports whether s shows as itself on one line of a table:
// valid UTF-8 without control, format or separator characters (a tab
// would split the cell, a newline the row).
func printable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) {
			return false
		}
	}
	return true
}

// keyCell is a key as a table shows it: as it is, or Go-quoted ("a\nb")
// if it is not printable, such as a key written before the server refused
// control characters. -o json shows every key as it is.
func keyCell(key string) string {
	if printable(key) {
		return key
	}
	return strconv.Quote(key)
}

// maxValueCell bounds the bytes of a value a table shows; -o json (and
// kv get --value-only) show every value whole.
const maxValueCell = 200

// valueCell is a JSON value as a table shows it: compacted onto one line,
// quoted if something in it is still not printable, and cut after
// maxValueCell bytes, saying so and how large it is.
func valueCell(value []byte) string {
	text := string(value)
	var compact bytes.Buffer
	if json.Compact(&compact, value) == nil {
		text = compact.String()
	}
	if !printable(text) {
		text = strconv.Quote(text)
	}
	if len(text) <= maxValueCell {
		return text
	}
	cut := maxValueCell
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (truncated: %d bytes; -o json shows it all)", text[:cut], len(value))
}

func (c *cli) kvDelCmd() *cobra.Command {
	var ifRevision int64
	cmd := &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete"},
		Short:   "delete KEY (--if-revision N: only if it is at revision N)",
		Args:    exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			conditional := cmd.Flags().Changed("if-revision")
			if conditional && ifRevision < 1 {
				return usageErrorf("kv del: --if-revision %d: want a revision of 1 or more", ifRevision)
			}
			if err := checkKey(fmt.Sprintf("kv del %q", args[0]), args[0]); err != nil {
				return err
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				var rev int64
				var err error
				if conditional {
					rev, err = s.client.DeleteIf(ctx, args[0], kv.IfRevision(ifRevision))
				} else {
					rev, err = s.client.Delete(ctx, args[0])
				}
				if err != nil {
					return fail(fmt.Sprintf("kv del %q", args[0]), err)
				}
				return s.printRevision(rev)
			})
		},
	}
	cmd.Flags().Int64Var(&ifRevision, "if-revision", 0, "delete only if the key is at this revision")
	return cmd
}

func (c *cli) kvListCmd() *cobra.Command {
	var (
		read      readOption
		limit     int
		keysOnly  bool
		countOnly bool
	)
	cmd := &cobra.Command{
		Use:     "list [PREFIX]",
		Aliases: []string{"ls"},
		Short:   "list the keys under PREFIX (every key without one), with their values",
		Long: `List the keys under PREFIX (every key without one), with their values, in key
order. The list is read in pages at one revision (the first page's) and printed
as it comes, so a prefix of any size lists in constant memory; a table is
aligned page by page. --limit stops after that many keys (the JSON answer then
says "more" and the "next" key to go on from).`,
		Args: maxArgs("PREFIX"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt, err := read.option()
			if err != nil {
				return err
			}
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			what := fmt.Sprintf("kv list %q", prefix)
			if err := checkKey(what, prefix); err != nil {
				return err
			}
			switch {
			case limit < 0:
				return usageErrorf("%s: --limit must be 0 (no limit) or more, not %d", what, limit)
			case keysOnly && countOnly:
				return usageErrorf("%s: give --keys-only or --count, not both", what)
			}
			return c.withClient(cmd, true, func(ctx context.Context, s *session) error {
				if countOnly {
					n, rev, err := s.client.Count(ctx, prefix, opt)
					if err != nil {
						return fail(what, err)
					}
					if s.json {
						return s.printJSON(struct {
							Count    int64 `json:"count"`
							Revision int64 `json:"revision"`
						}{n, rev})
					}
					_, err = fmt.Fprintln(s.stdout, n)
					return err
				}
				lp := newListPrinter(s, keysOnly)
				opts := []client.ReadOption{opt}
				if limit > 0 {
					opts = append(opts, client.WithLimit(min(limit, kv.DefaultListLimit)))
				}
				if keysOnly {
					opts = append(opts, client.KeysOnly())
				}
				for p, err := range s.client.Pages(ctx, prefix, opts...) {
					if err != nil {
						return fail(what, err)
					}
					if limit > 0 && lp.printed+len(p.Items) >= limit {
						rest := limit - lp.printed
						if rest < len(p.Items) {
							p.More, p.Next = true, p.Items[rest].Key
						}
						p.Items = p.Items[:rest]
						if err := lp.page(p); err != nil {
							return err
						}
						return lp.end(p)
					}
					if err := lp.page(p); err != nil {
						return err
					}
					if !p.More {
						return lp.end(p)
					}
				}
				return nil
			})
		},
	}
	read.add(cmd)
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most this many keys (0: all)")
	cmd.Flags().BoolVar(&keysOnly, "keys-only", false, "list the keys without their values")
	cmd.Flags().BoolVar(&countOnly, "count", false, "print only how many keys there are")
	return cmd
}

// listPrinter prints kv list's pages as they come: a table aligned page by
// page, keys one a line, or the JSON object {"items":[...],"revision":n}
// (with "more" and "next" when --limit cut it short) written item by item.
type listPrinter struct {
	s        *session
	keysOnly bool
	printed  int
	buf      bytes.Buffer
	enc      *json.Encoder
}

// listKey is an item of kv list --keys-only -o json.
type listKey struct {
	Key            string     `json:"key"`
	Revision       int64      `json:"revision"`
	CreateRevision int64      `json:"createRevision"`
	Version        int64      `json:"version"`
	Lease          kv.LeaseID `json:"lease,omitempty"`
}

func newListPrinter(s *session, keysOnly bool) *listPrinter {
	lp := &listPrinter{s: s, keysOnly: keysOnly}
	lp.enc = json.NewEncoder(&lp.buf)
	lp.enc.SetEscapeHTML(false)
	lp.enc.SetIndent("    ", "  ")
	return lp
}

func (lp *listPrinter) page(p kv.ListPage) error {
	s := lp.s
	switch {
	case s.json:
		lp.buf.Reset()
		for i := range p.Items {
			if lp.printed == 0 {
				lp.buf.WriteString("{\n  \"items\": [\n    ")
			} else {
				lp.buf.WriteString(",\n    ")
			}
			var v any = p.Items[i]
			if lp.keysOnly {
				it := &p.Items[i]
				v = listKey{Key: it.Key, Revision: it.Revision, CreateRevision: it.CreateRevision, Version: it.Version, Lease: it.Lease}
			}
			if err := lp.enc.Encode(v); err != nil {
				return err
			}
			lp.buf.Truncate(lp.buf.Len() - 1) // the encoder's newline
			lp.printed++
		}
		_, err := s.stdout.Write(lp.buf.Bytes())
		return err
	case lp.keysOnly:
		lp.buf.Reset()
		for _, it := range p.Items {
			lp.buf.WriteString(keyCell(it.Key) + "\n")
		}
		lp.printed += len(p.Items)
		_, err := s.stdout.Write(lp.buf.Bytes())
		return err
	}
	rows := make([][]string, len(p.Items))
	for i, it := range p.Items {
		rows[i] = itemRow(it)
	}
	var err error
	if lp.printed == 0 {
		err = s.table(itemHeader, rows)
	} else {
		err = s.table(nil, rows)
	}
	lp.printed += len(p.Items)
	return err
}

// end finishes the output after the last page printed, p.
func (lp *listPrinter) end(p kv.ListPage) error {
	if !lp.s.json {
		return nil
	}
	lp.buf.Reset()
	if lp.printed == 0 {
		lp.buf.WriteString("{\n  \"items\": [],\n")
	} else {
		lp.buf.WriteString("\n  ],\n")
	}
	fmt.Fprintf(&lp.buf, "  \"revision\": %d", p.Revision)
	if p.More {
		next, _ := json.Marshal(p.Next)
		fmt.Fprintf(&lp.buf, ",\n  \"more\": true,\n  \"next\": %s", next)
	}
	lp.buf.WriteString("\n}\n")
	_, err := lp.s.stdout.Write(lp.buf.Bytes())
	return err
}

// watchEvent is one line of kv watch's JSON output.
type watchEvent struct {
	Type           string          `json:"type"`
	Key            string          `json:"key"`
	Value          json.RawMessage `json:"value,omitempty"`
	Revision       int64           `json:"revision"`
	CreateRevision int64           `json:"createRevision,omitempty"`
	Version        int64           `json:"version,omitempty"`
}

func (c *cli) kvWatchCmd() *cobra.Command {
	var fromRevision, count int64
	cmd := &cobra.Command{
		Use:   "watch [PREFIX]",
		Short: "print every change under PREFIX as it happens, until Ctrl-C or --count events",
		Long: `Print every change to the keys under PREFIX (every key without one) as it
happens, in revision order, each once, following the cluster across endpoint
failures. By default the watch starts after every write acknowledged before it;
--from-revision N starts at revision N. Table output is one line per event:
"REVISION put KEY VALUE" or "REVISION delete KEY"; JSON output is one object
per line. --count N exits after N events. Ctrl-C ends the watch with exit code 0.`,
		Args: maxArgs("PREFIX"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fromRevision < 0 || count < 0 {
				return usageErrorf("kv watch: --from-revision and --count must not be negative")
			}
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			if err := checkKey(fmt.Sprintf("kv watch %q", prefix), prefix); err != nil {
				return err
			}
			return c.withClient(cmd, false, func(ctx context.Context, s *session) error {
				ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
				return s.watch(ctx, prefix, fromRevision, count)
			})
		},
	}
	cmd.Flags().Int64Var(&fromRevision, "from-revision", 0, "first revision to deliver (0: after the writes acknowledged so far)")
	cmd.Flags().Int64Var(&count, "count", 0, "exit after this many events (0: run until Ctrl-C)")
	return cmd
}

func (s *session) watch(ctx context.Context, prefix string, fromRevision, count int64) error {
	what := fmt.Sprintf("kv watch %q", prefix)
	openCtx, cancelOpen := context.WithTimeout(ctx, s.timeout)
	defer cancelOpen()
	// The watch lives in ctx; only opening it is bounded by --timeout.
	watchCtx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	opened := make(chan struct{})
	go func() {
		select {
		case <-openCtx.Done():
			cancelWatch()
		case <-opened:
		}
	}()
	w, err := s.client.Watch(watchCtx, prefix, fromRevision)
	close(opened)
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C before the stream opened
		}
		if openCtx.Err() != nil {
			return &exitError{code: exitFailure, msg: fmt.Sprintf("%s: no stream opened within --timeout %s: %v", what, s.timeout, err)}
		}
		return fail(what, err)
	}
	defer w.Close()
	if s.env.watchOpened != nil {
		s.env.watchOpened(w.StartRevision())
	}
	var seen int64
	for resp := range w.C() {
		for _, ev := range resp.Events {
			if err := s.printEvent(ev); err != nil {
				return &exitError{code: exitFailure, msg: what + ": " + err.Error()}
			}
			if seen++; count > 0 && seen == count {
				return nil
			}
		}
	}
	if ctx.Err() != nil {
		return nil // Ctrl-C: a clean end
	}
	err = w.Err()
	if errors.Is(err, kv.ErrWatchClosed) {
		return nil
	}
	return fail(what, err)
}

func (s *session) printEvent(ev kv.Event) error {
	it := ev.Item
	if s.json {
		out := watchEvent{Type: ev.Type.String(), Key: it.Key, Revision: it.Revision}
		if ev.Type == kv.EventPut {
			out.Value, out.CreateRevision, out.Version = it.Value, it.CreateRevision, it.Version
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(s.stdout, "%s\n", b)
		return err
	}
	var err error
	if ev.Type == kv.EventPut {
		_, err = fmt.Fprintf(s.stdout, "%d put %s %s\n", it.Revision, keyCell(it.Key), valueCell(it.Value))
	} else {
		_, err = fmt.Fprintf(s.stdout, "%d %s %s\n", it.Revision, ev.Type, keyCell(it.Key))
	}
	return err
}
