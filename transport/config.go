package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Config configures a WebSocket transport. Zero values take the defaults
// of DefaultConfig, so a Config needs only ID and an address.
type Config struct {
	// ID is this node's raft id. It must not be zero (raft reserves it).
	ID uint64

	// Name is this node's name, sent in the handshake and used in logs.
	Name string

	// ListenAddr is the host:port that peers dial, e.g. "127.0.0.1:8080".
	// Ignored when Listener is set.
	ListenAddr string

	// Listener, if set, is served instead of listening on ListenAddr. Once
	// New succeeds the transport owns it and Close closes it. Tests use it
	// to pre-allocate 127.0.0.1:0.
	Listener net.Listener

	// SendQueueSize bounds, in messages, what may wait for one peer's
	// writer. It is the only buffer between raft and a slow or dead peer:
	// once full, Send drops and reports the peer unreachable rather than
	// block the raft loop or grow without limit. Default 4096.
	SendQueueSize int

	// MaxFrameBytes is the largest frame read from a peer, and the largest a
	// writer sends (a larger single message, such as an oversized snapshot,
	// is dropped and reported). Both ends should agree. Default 64 MiB.
	MaxFrameBytes int64

	// DialTimeout bounds connecting to a peer, handshake included. Default 1s.
	DialTimeout time.Duration

	// BackoffMin and BackoffMax bound the jittered exponential wait between
	// attempts to reconnect to a peer. Defaults 20ms and 1s.
	BackoffMin time.Duration
	BackoffMax time.Duration

	// WriteTimeout bounds writing one frame. A peer that cannot take a frame
	// in this time (a stalled process, a network partition) is treated as
	// down and redialed. Default 5s.
	WriteTimeout time.Duration

	// ClusterID identifies the cluster this node belongs to. Every stream
	// handshake carries it and both ends refuse a stream from another
	// cluster, so nodes of two clusters never exchange raft messages even
	// when pointed at each other by mistake. Zero disables the check.
	ClusterID uint64

	// ServerTLS, if set, serves peer streams over TLS with it. For mutual
	// authentication it should require and verify client certificates
	// (tls.RequireAndVerifyClientCert with ClientCAs).
	ServerTLS *tls.Config

	// ClientTLS, if set, dials peers over TLS (wss) with it: RootCAs to
	// verify peers, Certificates to present to them.
	ClientTLS *tls.Config

	// Logger receives the transport's logs; nil discards them.
	Logger *slog.Logger
}

// Defaults for Config fields left zero.
const (
	// DefaultSendQueueSize is the default Config.SendQueueSize, in messages.
	DefaultSendQueueSize = 4096
	// DefaultMaxFrameBytes is the default Config.MaxFrameBytes (64 MiB).
	DefaultMaxFrameBytes int64 = 64 << 20
	// DefaultDialTimeout is the default Config.DialTimeout.
	DefaultDialTimeout = time.Second
	// DefaultBackoffMin is the default Config.BackoffMin.
	DefaultBackoffMin = 20 * time.Millisecond
	// DefaultBackoffMax is the default Config.BackoffMax.
	DefaultBackoffMax = time.Second
	// DefaultWriteTimeout is the default Config.WriteTimeout.
	DefaultWriteTimeout = 5 * time.Second
)

// minFrameBytes keeps MaxFrameBytes above what any small raft message plus
// the envelope needs, so a typo cannot make every frame too large.
const minFrameBytes = 4 << 10

// maxSendQueueSize stops a configuration mistake from preallocating
// gigabytes of queue per peer.
const maxSendQueueSize = 1 << 20

// DefaultConfig returns a Config with every default filled in. ID and an
// address still have to be set.
func DefaultConfig() Config {
	return Config{
		SendQueueSize: DefaultSendQueueSize,
		MaxFrameBytes: DefaultMaxFrameBytes,
		DialTimeout:   DefaultDialTimeout,
		BackoffMin:    DefaultBackoffMin,
		BackoffMax:    DefaultBackoffMax,
		WriteTimeout:  DefaultWriteTimeout,
	}
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.SendQueueSize == 0 {
		c.SendQueueSize = d.SendQueueSize
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = d.MaxFrameBytes
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = d.BackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = max(d.BackoffMax, c.BackoffMin)
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports whether c, with defaults applied to zero fields, is
// usable: an id, an address, positive bounds, BackoffMin <= BackoffMax.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.ID == 0 {
		errs = append(errs, errors.New("ID must not be zero"))
	}
	if c.Listener == nil && c.ListenAddr == "" {
		errs = append(errs, errors.New("one of ListenAddr or Listener is required"))
	}
	if c.SendQueueSize < 0 || c.SendQueueSize > maxSendQueueSize {
		errs = append(errs, fmt.Errorf("SendQueueSize %d is outside [1, %d]", c.SendQueueSize, maxSendQueueSize))
	}
	if c.MaxFrameBytes < minFrameBytes {
		errs = append(errs, fmt.Errorf("MaxFrameBytes %d is below %d", c.MaxFrameBytes, minFrameBytes))
	}
	if c.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("DialTimeout %v is negative", c.DialTimeout))
	}
	if c.WriteTimeout < 0 {
		errs = append(errs, fmt.Errorf("WriteTimeout %v is negative", c.WriteTimeout))
	}
	if c.BackoffMin < 0 || c.BackoffMax < c.BackoffMin {
		errs = append(errs, fmt.Errorf("backoff [%v, %v] is not a range of non-negative durations", c.BackoffMin, c.BackoffMax))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("transport: invalid config: %w", err)
	}
	return nil
}
