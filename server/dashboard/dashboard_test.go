package dashboard

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for k, vs := range header {
		r.Header[k] = vs
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestServesPageAndAssets(t *testing.T) {
	h := New()
	tests := []struct {
		path, contentType string
	}{
		{"/", "text/html; charset=utf-8"},
		{"/ui/app.js", "text/javascript; charset=utf-8"},
		{"/ui/style.css", "text/css; charset=utf-8"},
		{"/ui/favicon.svg", "image/svg+xml"},
	}
	for _, tt := range tests {
		if !Serves(tt.path) || !h.Has(tt.path) {
			t.Errorf("%s: Serves %v, Has %v", tt.path, Serves(tt.path), h.Has(tt.path))
		}
		w := get(h, http.MethodGet, tt.path, nil)
		if w.Code != http.StatusOK || w.Body.Len() == 0 {
			t.Fatalf("GET %s: %d, %d bytes", tt.path, w.Code, w.Body.Len())
		}
		hdr := w.Header()
		if hdr.Get("Content-Type") != tt.contentType {
			t.Errorf("GET %s: Content-Type %q", tt.path, hdr.Get("Content-Type"))
		}
		if hdr.Get("Content-Security-Policy") != ContentSecurityPolicy || hdr.Get("X-Content-Type-Options") != "nosniff" ||
			hdr.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: security headers %v", tt.path, hdr)
		}
		etag := hdr.Get("ETag")
		if etag == "" {
			t.Fatalf("GET %s: no ETag", tt.path)
		}
		// Revalidation answers 304, so an unchanged page is not sent again.
		if w := get(h, http.MethodGet, tt.path, http.Header{"If-None-Match": {etag}}); w.Code != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d", tt.path, w.Code)
		}
		if w := get(h, http.MethodHead, tt.path, nil); w.Code != http.StatusOK || w.Body.Len() != 0 {
			t.Errorf("HEAD %s: %d, %d bytes", tt.path, w.Code, w.Body.Len())
		}
	}
}

func TestUnknownAssetsAndMethods(t *testing.T) {
	h := New()
	for _, p := range []string{"/ui/", "/ui/nope.js", "/ui/../go.mod", "/ui/index.html", "/ui/app.js/", "/index.html"} {
		if h.Has(p) {
			t.Errorf("Has(%q)", p)
		}
		if w := get(h, http.MethodGet, p, nil); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, w.Code)
		}
	}
	for _, p := range []string{"/v1/status", "/healthz", "/uix", "//"} {
		if Serves(p) {
			t.Errorf("Serves(%q)", p)
		}
	}
	w := get(h, http.MethodPost, "/", nil)
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

// TestPageIsSelfContained checks what the policy relies on: no inline
// script or style, nothing loaded from elsewhere, and no script path that
// would parse data as markup.
func TestPageIsSelfContained(t *testing.T) {
	h := New()
	page := get(h, http.MethodGet, "/", nil).Body.String()
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(tag, `src="/ui/`) {
			t.Errorf("inline or foreign script: %s", tag)
		}
	}
	if strings.Contains(page, "<style") || regexp.MustCompile(`\sstyle=`).MatchString(page) ||
		regexp.MustCompile(`\son[a-z]+=`).MatchString(page) {
		t.Error("the page has inline style or event handlers, which the policy blocks")
	}
	for _, p := range []string{"/", "/ui/app.js", "/ui/style.css"} {
		body := get(h, http.MethodGet, p, nil).Body.String()
		if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/`).FindString(body); m != "" {
			t.Errorf("%s refers to another origin: %s", p, m)
		}
		if strings.Contains(body, "@import") || strings.Contains(body, "@font-face") {
			t.Errorf("%s imports a style sheet or font", p)
		}
	}
	script := get(h, http.MethodGet, "/ui/app.js", nil).Body.String()
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(script, sink) {
			t.Errorf("app.js uses %s; data must go in with textContent", sink)
		}
	}
}
