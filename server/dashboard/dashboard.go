// Package dashboard is the web dashboard every node serves at "/" on its
// HTTP port: one page and its script and style sheet, embedded in the
// binary (no CDN, no build step). The page reads the node's JSON API
// (/v1/status, /v1/cluster/nodes, /v1/stats, /v1/events, /v1/overview)
// once a second with fetch, sending the bearer token the user typed when
// the API asks for one, and shows the members with their health (suspect
// the moment a peer stream goes down; when each was last checked; a lag
// only when current), leader, term, indexes, keys of maxKeys, revision,
// workflows by status, registered nodes, read, write and error rates with
// p50/p99 latency, leader changes, a write-rate chart with units, and
// recent events with their date.
//
// When the node stops answering (each fetch is bounded at 4 s, so a
// stopped process counts too), the page greys out everything it shows,
// says since when there has been no answer, and links to the other
// members' dashboards from the last membership it read.
//
// The page and assets carry no data and need no token. Every response
// carries a strict Content-Security-Policy (everything from the same
// origin, no inline script or style, no framing), and the script inserts
// data with textContent only.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// AssetPrefix is the path under which the page's script and style sheet
// are served.
const AssetPrefix = "/ui/"

// ContentSecurityPolicy is sent with the page and every asset: scripts,
// styles and API requests from the same origin only, nothing inline,
// no plugins, no framing.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Serves reports whether path (as sent, not cleaned) is the dashboard's:
// the page "/" or anything under AssetPrefix. Whether an asset of that
// name exists is Handler's business.
func Serves(path string) bool {
	return path == "/" || strings.HasPrefix(path, AssetPrefix)
}

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the dashboard. Build it with New.
type Handler struct {
	files map[string]asset // by request path
}

// contentTypes maps the extensions the dashboard ships to their types.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// New returns a handler for the embedded page and assets.
func New() *Handler {
	h := &Handler{files: map[string]asset{}}
	entries, err := assets.ReadDir("assets")
	if err != nil {
		// The directory is embedded at build time; only a broken build
		// gets here.
		panic("dashboard: embedded assets missing: " + err.Error())
	}
	for _, e := range entries {
		name := e.Name()
		body, err := assets.ReadFile("assets/" + name)
		if err != nil {
			panic("dashboard: embedded asset unreadable: " + err.Error())
		}
		ct, ok := contentTypes[path.Ext(name)]
		if !ok {
			continue
		}
		sum := sha256.Sum256(body)
		a := asset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		if name == "index.html" {
			h.files["/"] = a
		} else {
			h.files[AssetPrefix+name] = a
		}
	}
	return h
}

// Has reports whether path names the page or one of its assets.
func (h *Handler) Has(path string) bool {
	_, ok := h.files[path]
	return ok
}

// ServeHTTP serves GET and HEAD of the page and its assets, revalidated
// by ETag. An unknown path is answered 404 and another method 405, both
// in plain text; the API server answers those itself, in its JSON form,
// before calling here.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	setSecurityHeaders(hdr)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	a, ok := h.files[r.URL.EscapedPath()]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("ETag", a.etag)
	// Revalidate every time: after an upgrade the page and script must
	// change together.
	hdr.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// setSecurityHeaders sets the headers every dashboard response carries.
func setSecurityHeaders(hdr http.Header) {
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "no-referrer")
}
