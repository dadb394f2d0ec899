package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/client"
)

// Environment variables the command run under a lock sees.
const (
	envLockName  = "CONSENSUS_LOCK_NAME"
	envLockToken = "CONSENSUS_LOCK_TOKEN"
	envLeaseID   = "CONSENSUS_LEASE_ID"
)

// killGrace is how long a command sent SIGTERM because its lock's session
// was lost has to exit before it is killed.
const killGrace = 10 * time.Second

// sessionFlags are the --ttl of the commands that hold a session.
type sessionFlags struct {
	ttl string
}

func (f *sessionFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().StringVar(&f.ttl, "ttl", "10s", "time to live of the session's lease: "+what+" ends this long after the process stops renewing it")
}

func (f *sessionFlags) parse(what string) (time.Duration, error) {
	return parseTTL(what+": --ttl", f.ttl)
}

// openSession grants the lease of a session (within --timeout).
func (s *session) openSession(ctx context.Context, what string, ttl time.Duration) (*client.Session, error) {
	grantCtx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	sess, err := client.NewSession(grantCtx, s.client, ttl)
	if err != nil {
		return nil, fail(what, err)
	}
	return sess, nil
}

// closeSession revokes the session's lease (within --timeout), which
// releases what it held.
func (s *session) closeSession(sess *client.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	_ = sess.Close(ctx)
}

// sessionLost is the error of a command whose session ended under it.
func sessionLost(what string, sess *client.Session) error {
	return failuref("%s: session lost: %s", what, describe(sess.Err()))
}

func (c *cli) lockCmd() *cobra.Command {
	var sf sessionFlags
	var waitFlag string
	cmd := &cobra.Command{
		Use:   "lock NAME [--ttl 10s] [--wait 30s] -- COMMAND [ARG...]",
		Short: "run COMMAND holding lock NAME (a session's lease holds it)",
		Long: `Run COMMAND holding lock NAME. A session (a lease of time to live --ttl, kept
alive meanwhile) takes the lock, waiting up to --wait for its holders (0: try
once); COMMAND runs with CONSENSUS_LOCK_NAME, CONSENSUS_LOCK_TOKEN (the fencing
token: send it as X-Fence: NAME:TOKEN with the writes it guards) and
CONSENSUS_LEASE_ID in its environment. When COMMAND exits the lock is released
and lock exits with COMMAND's exit code (128+N for a signal N).

If the session is lost while COMMAND runs (the lease could not be kept alive),
COMMAND is sent SIGTERM (SIGKILL 10s later) and lock exits with code 1 and one
line on stderr: another process may hold the lock by then. SIGINT or SIGTERM
to lock sends COMMAND SIGTERM. The lock held for the whole --wait is exit
code 4; COMMAND that cannot be started, 127.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || cmd.ArgsLenAtDash() != 1 {
				return usageErrorf("lock: want NAME -- COMMAND [ARG...] (see 'consensus lock --help')")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name, argv := args[0], args[1:]
			what := fmt.Sprintf("lock %q", name)
			ttl, err := sf.parse(what)
			if err != nil {
				return err
			}
			wait, err := time.ParseDuration(waitFlag)
			if err != nil || wait < 0 || wait > client.MaxLockWait {
				return usageErrorf("%s: --wait %q: want a duration from 0 (try once) to 10m", what, waitFlag)
			}
			return c.withClient(cmd, false, func(ctx context.Context, s *session) error {
				ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
				return s.runLocked(ctx, what, name, ttl, wait, argv)
			})
		},
	}
	sf.add(cmd, "the lock")
	cmd.Flags().StringVar(&waitFlag, "wait", "30s", "how long to wait for the lock (0: try once)")
	return cmd
}

// runLocked takes lock name under a new session and runs argv holding it.
func (s *session) runLocked(ctx context.Context, what, name string, ttl, wait time.Duration, argv []string) error {
	sess, err := s.openSession(ctx, what, ttl)
	if err != nil {
		return err
	}
	defer s.closeSession(sess)
	l, err := sess.Lock(ctx, name, wait)
	if err != nil {
		if ctx.Err() != nil {
			return failuref("%s: interrupted while waiting for the lock", what)
		}
		return fail(what, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		_ = s.client.Unlock(ctx, name, l.Token)
	}()

	child := exec.Command(argv[0], argv[1:]...)
	child.Stdin, child.Stdout, child.Stderr = s.env.stdin, s.stdout, s.stderr
	child.Env = append(os.Environ(), envLockName+"="+name, envLockToken+"="+strconv.FormatInt(l.Token, 10),
		envLeaseID+"="+sess.Lease().String())
	if err := child.Start(); err != nil {
		return &exitError{code: 127, msg: fmt.Sprintf("%s: cannot run %s: %v", what, argv[0], err)}
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	lost := false
	interrupted := ctx.Done()
	var waitErr error
wait:
	for {
		select {
		case waitErr = <-exited:
			break wait
		case <-interrupted:
			interrupted = nil
			_ = child.Process.Signal(syscall.SIGTERM)
		case <-sess.Done():
			if lost {
				continue
			}
			lost = true
			_ = child.Process.Signal(syscall.SIGTERM)
			select {
			case waitErr = <-exited:
			case <-time.After(killGrace):
				_ = child.Process.Kill()
				waitErr = <-exited
			}
			break wait
		}
	}
	if lost && !errors.Is(sess.Err(), client.ErrSessionClosed) {
		return sessionLost(what+": "+argv[0]+" was terminated", sess)
	}
	if waitErr == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		return failuref("%s: %s: %v", what, argv[0], waitErr)
	}
	code := ee.ExitCode()
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	return &exitError{code: code}
}

func (c *cli) electCmd() *cobra.Command {
	var sf sessionFlags
	cmd := &cobra.Command{
		Use:   "elect NAME VALUE [--ttl 10s]",
		Short: "campaign in election NAME with VALUE (JSON); print the token once leader, lead until Ctrl-C",
		Long: `Campaign in election NAME with VALUE (a JSON value: '"10.0.0.7:80"' or an
object) under a session (a lease of time to live --ttl, kept alive meanwhile),
waiting behind the leader and the candidates ahead. Once leader, print the
leadership's fencing token (JSON output: the leader object) and stay leader
until Ctrl-C or SIGTERM, then resign (exit code 0). A session lost while
leading or waiting is exit code 1 with one line on stderr.`,
		Args: exactArgs("NAME", "VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			what := fmt.Sprintf("elect %q", name)
			value, err := jsonArg(what+": VALUE", []byte(args[1]), false)
			if err != nil {
				return err
			}
			ttl, err := sf.parse(what)
			if err != nil {
				return err
			}
			return c.withClient(cmd, false, func(ctx context.Context, s *session) error {
				ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
				return s.elect(ctx, what, name, value, ttl)
			})
		},
	}
	sf.add(cmd, "the leadership")
	return cmd
}

// elect campaigns until leader, then leads until ctx ends.
func (s *session) elect(ctx context.Context, what, name string, value []byte, ttl time.Duration) error {
	sess, err := s.openSession(ctx, what, ttl)
	if err != nil {
		return err
	}
	defer s.closeSession(sess)
	// A campaign ends with the session: so does the wait.
	campaignCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-campaignCtx.Done():
		}
	}()
	var won api.Lock
	for {
		won, err = sess.Campaign(campaignCtx, name, value, client.MaxLockWait)
		if err == nil {
			break
		}
		switch {
		case ctx.Err() != nil:
			return nil // Ctrl-C before winning
		case sess.Err() != nil:
			return sessionLost(what, sess)
		case errors.Is(err, api.ErrLocked):
			continue // the wait ran out: queue again
		}
		return fail(what, err)
	}
	if s.json {
		err = s.printJSON(won)
	} else {
		_, err = fmt.Fprintln(s.stdout, won.Token)
	}
	if err != nil {
		return failuref("%s: %v", what, err)
	}
	select {
	case <-ctx.Done():
		resignCtx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		if err := s.client.Resign(resignCtx, name, won.Token); err != nil {
			return fail(what+": resign", err)
		}
		return nil
	case <-sess.Done():
		return sessionLost(what+": leadership ended", sess)
	}
}
