package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
)

type registryPage struct {
	Workflows []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"workflows"`
	Nodes []struct {
		ID string `json:"id"`
	} `json:"nodes"`
	Revision int64  `json:"revision"`
	More     *bool  `json:"more"`
	Next     string `json:"next"`
}

func getRegistryPage(t *testing.T, h http.Handler, target string) registryPage {
	t.Helper()
	rec := request(h, "GET", target, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", target, rec.Code, rec.Body)
	}
	var p registryPage
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("GET %s: %v in %s", target, err, rec.Body)
	}
	return p
}

// TestRegistryListPages: the workflow and node collections page at one
// revision: every entry exactly once across pages, as it was at the first
// page's revision, while workflows are started and stopped between pages;
// the unpaged answer streams the same entries.
func TestRegistryListPages(t *testing.T) {
	h := NewHandler(newLocalStore(), HTTPOptions{})
	var want []string
	for i := range 25 {
		id := fmt.Sprintf("w%02d", i)
		want = append(want, id)
		if rec := request(h, "POST", "/v1/workflows", `{"id":"`+id+`"}`); rec.Code != http.StatusCreated {
			t.Fatalf("start %s: %d %s", id, rec.Code, rec.Body)
		}
	}
	for i := range 3 {
		if rec := request(h, "POST", "/v1/nodes", fmt.Sprintf(`{"id":"n%d"}`, i)); rec.Code != http.StatusOK {
			t.Fatalf("register: %d %s", rec.Code, rec.Body)
		}
	}
	whole := getRegistryPage(t, h, "/v1/workflows")
	var wholeIDs []string
	for _, w := range whole.Workflows {
		wholeIDs = append(wholeIDs, w.ID)
	}
	if !slices.Equal(wholeIDs, want) || whole.More != nil {
		t.Fatalf("unpaged list %v (more %v), want %v and no more", wholeIDs, whole.More, want)
	}

	var got []string
	target := "/v1/workflows?limit=10"
	var rev int64
	for pages := 0; ; pages++ {
		p := getRegistryPage(t, h, target)
		if rev == 0 {
			rev = p.Revision
			// Writes between pages: a new workflow inside the range
			// already read and one beyond it, and a stop.
			for _, body := range []string{`{"id":"w05a"}`, `{"id":"w99"}`} {
				if rec := request(h, "POST", "/v1/workflows", body); rec.Code != http.StatusCreated {
					t.Fatalf("start: %d %s", rec.Code, rec.Body)
				}
			}
			if rec := request(h, "POST", "/v1/workflows/w20/stop", ""); rec.Code != http.StatusOK {
				t.Fatalf("stop: %d %s", rec.Code, rec.Body)
			}
		}
		if p.Revision != rev || p.More == nil {
			t.Fatalf("page %d: revision %d (want %d), more %v", pages, p.Revision, rev, p.More)
		}
		for _, w := range p.Workflows {
			got = append(got, w.ID)
			if w.ID == "w20" && w.Status != "running" {
				t.Fatalf("w20 is %q on a page read at revision %d, before it was stopped", w.Status, rev)
			}
		}
		if !*p.More {
			break
		}
		if pages > 5 {
			t.Fatal("more than 5 pages of 10 for 25 workflows")
		}
		target = "/v1/workflows?limit=10&revision=" + fmt.Sprint(rev) + "&next=" + url.QueryEscape(p.Next)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pages gave %v, want %v", got, want)
	}

	nodes := getRegistryPage(t, h, "/v1/nodes?limit=2")
	if len(nodes.Nodes) != 2 || nodes.More == nil || !*nodes.More || nodes.Next != "n2" {
		t.Fatalf("first node page %+v, want n0, n1 and next n2", nodes)
	}
	rest := getRegistryPage(t, h, "/v1/nodes?limit=2&next=n2&revision="+fmt.Sprint(nodes.Revision))
	if len(rest.Nodes) != 1 || rest.Nodes[0].ID != "n2" || *rest.More {
		t.Fatalf("second node page %+v, want n2 and no more", rest)
	}

	for _, q := range []string{"limit=0", "limit=x", "next=", "revision=0", "limit=1&limit=2", "next=a%00"} {
		if rec := request(h, "GET", "/v1/workflows?"+q, ""); rec.Code != http.StatusBadRequest {
			t.Errorf("GET /v1/workflows?%s: %d %s, want 400", q, rec.Code, rec.Body)
		}
	}
}
