package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/server/dashboard"
)

// access is who a request comes from, as decided once at the door and
// carried in the request context (to /v1/ws requests too).
type access struct {
	role Role
	// client keys the rate limiter: a digest of the bearer token when auth
	// is on, else the remote IP.
	client string
	// authorization is the request's Authorization header, which a
	// request forwarded to the leader on the caller's behalf carries (a
	// /v1/ws connection's lease keepalives). Never logged.
	authorization string
}

type accessKey struct{}

func accessFrom(ctx context.Context) access {
	a, _ := ctx.Value(accessKey{}).(access)
	return a
}

// clientLimiter is a token bucket per client. It holds at most
// maxClients buckets; when full it drops the whole set, which at worst
// gives every client a fresh burst, and keeps memory bounded against a
// flood of distinct clients.
type clientLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

const maxClients = 1 << 16

func newClientLimiter(perSecond float64, burst int) *clientLimiter {
	if perSecond <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &clientLimiter{limit: rate.Limit(perSecond), burst: burst, buckets: make(map[string]*rate.Limiter)}
}

// allow takes one token for client; when none is left it returns false
// and how long until one will be.
func (l *clientLimiter) allow(client string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	b := l.buckets[client]
	if b == nil {
		if len(l.buckets) >= maxClients {
			clear(l.buckets)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[client] = b
	}
	l.mu.Unlock()
	now := time.Now()
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// retryAfter formats d as whole seconds, at least one.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// clientOf names the client for rate limiting.
func clientOf(r *http.Request, token string) string {
	if token != "" {
		d := sha256.Sum256([]byte(token))
		return "t:" + hex.EncodeToString(d[:8])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "ip:" + host
}

// admit decides whether r may proceed: authentication, role, rate limit
// and the in-flight bound. It returns the request with its access in the
// context and a release func, or writes the refusal and returns ok false.
// Health probes are never refused; the dashboard's page and assets need
// no token.
func (h *apiHandler) admit(w http.ResponseWriter, r *http.Request) (*http.Request, func(), bool) {
	path := r.URL.EscapedPath()
	if path == "/healthz" || path == "/readyz" {
		return r, func() {}, true
	}
	a := access{role: RoleReadWrite}
	token := ""
	switch {
	case h.opts.Tokens != nil && dashboard.Serves(path):
		// The dashboard's page and assets hold no data; the page asks
		// for a token when the API it calls answers 401. Still rate
		// limited and bounded below, by IP.
		a.role = RoleNone
	case h.opts.Tokens != nil:
		token = bearerToken(r)
		a.role = h.opts.Tokens.Lookup(token)
		if a.role == RoleNone {
			w.Header().Set("WWW-Authenticate", `Bearer realm="consensus"`)
			msg := "a bearer token is required (Authorization: Bearer <token>)"
			if token != "" {
				msg = "the bearer token is not valid"
			}
			writeError(w, apiError{status: http.StatusUnauthorized, code: api.CodeUnauthorized, message: msg})
			return nil, nil, false
		}
		if isWrite(r.Method) && a.role != RoleReadWrite {
			writeError(w, apiError{status: http.StatusForbidden, code: api.CodeForbidden, message: "the token is read-only"})
			return nil, nil, false
		}
	}
	a.client = clientOf(r, token)
	a.authorization = r.Header.Get("Authorization")
	if ok, wait := h.limiter.allow(a.client); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(w, apiError{status: http.StatusTooManyRequests, code: api.CodeRateLimited,
			message: "request rate limit exceeded; retry after Retry-After seconds"})
		return nil, nil, false
	}
	release := func() {}
	// A /v1/ws connection bounds its own requests; watches have their own
	// limits and would hold a slot for their whole life.
	if path != wsPath && path != watchPath {
		select {
		case h.inflight <- struct{}{}:
			release = func() { <-h.inflight }
		default:
			writeError(w, apiError{status: http.StatusServiceUnavailable, code: api.CodeOverloaded,
				message: "too many requests in flight; retry shortly"})
			return nil, nil, false
		}
	}
	return r.WithContext(context.WithValue(r.Context(), accessKey{}, a)), release, true
}

func isWrite(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

// wsAdmit applies the role and rate limit to one /v1/ws request.
func (h *apiHandler) wsAdmit(ctx context.Context, op api.Op) *apiError {
	a := accessFrom(ctx)
	if op.NeedsWriteAccess() && a.role != RoleReadWrite {
		return &apiError{status: http.StatusForbidden, code: api.CodeForbidden, message: "the token is read-only"}
	}
	if ok, _ := h.limiter.allow(a.client); !ok {
		return &apiError{status: http.StatusTooManyRequests, code: api.CodeRateLimited, message: "request rate limit exceeded"}
	}
	return nil
}
