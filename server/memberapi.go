package server

import (
	"crypto/tls"
	"net/http"
	"strings"
	"time"
)

// MemberAPI is how a node calls the other members' HTTP APIs: to join a
// cluster (Config.Join), to forward a leadership transfer to the leader,
// and to probe the members' health. The members' APIs are served alike,
// so one setting covers all three.
type MemberAPI struct {
	// TLS, if set, reaches members over HTTPS with this client
	// configuration: RootCAs verifies their certificates, and
	// Certificates is presented where their APIs require a client
	// certificate (--client-ca). Nil: plain HTTP.
	TLS *tls.Config
	// Token, if set, is sent as "Authorization: Bearer <token>" on every
	// call a member makes on its own (a forwarded request carries its
	// caller's instead). Members started with --auth-token-file need one;
	// joining needs a read-write one.
	Token string
}

// scheme is the URL scheme of members' addresses given as host:port.
func (m MemberAPI) scheme() string {
	if m.TLS != nil {
		return "https"
	}
	return "http"
}

// url returns the URL of path on the member at addr ("host:port", or a
// URL whose scheme is kept).
func (m MemberAPI) url(addr, path string) string {
	base := addr
	if !strings.Contains(base, "://") {
		base = m.scheme() + "://" + base
	}
	return strings.TrimSuffix(base, "/") + path
}

// client returns an HTTP client for members' APIs whose calls are bounded
// by timeout (0: none).
func (m MemberAPI) client(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if m.TLS != nil {
		tr.TLSClientConfig = m.TLS.Clone()
	}
	var rt http.RoundTripper = tr
	if m.Token != "" {
		rt = bearer{token: m.Token, next: tr}
	}
	return &http.Client{Transport: rt, Timeout: timeout}
}

// bearer adds a bearer token to requests that carry no Authorization.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return b.next.RoundTrip(r)
}
