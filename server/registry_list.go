package server

// GET /v1/workflows and GET /v1/nodes: the registries' collections,
// streamed from a frozen view or read in pages, as GET /v1/kv lists.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// registryList is how a registry's collection is read: the items under
// prefix, each answered as fromItem's value in the array field.
type registryList struct {
	prefix   string
	field    string
	fromItem func(kv.Item) any
}

var (
	workflowList = registryList{prefix: kv.WorkflowPrefix, field: "workflows",
		fromItem: func(it kv.Item) any { return kv.WorkflowFromItem(it) }}
	nodeList = registryList{prefix: kv.NodePrefix, field: "nodes",
		fromItem: func(it kv.Item) any { return kv.NodeFromItem(it) }}
)

// parseRegistryPaging reads ?limit=, ?next= (an id) and ?revision=; paged
// is set when any is given. It answers 400 itself.
func (h *apiHandler) parseRegistryPaging(w http.ResponseWriter, query url.Values, prefix string) (o kv.ListOptions, paged, ok bool) {
	bad := func(code, msg string) (kv.ListOptions, bool, bool) {
		writeError(w, apiError{status: http.StatusBadRequest, code: code, message: msg})
		return o, false, false
	}
	for _, name := range []string{"limit", "next", "revision"} {
		v, ok := singleParam(w, query, name)
		if !ok {
			return o, false, false
		}
		if _, given := query[name]; !given {
			continue
		}
		paged = true
		switch name {
		case "limit":
			n, msg := parseLimit(v)
			if msg != "" {
				return bad(api.CodeBadRequest, msg)
			}
			o.Limit = n
		case "next":
			if msg := h.checkKey(prefix + v); msg != "" || v == "" {
				if msg == "" {
					msg = "empty"
				}
				return bad(api.CodeInvalidKey, "next: "+msg)
			}
			o.Start = prefix + v
		case "revision":
			n, msg := parsePageRevision(v)
			if msg != "" {
				return bad(api.CodeBadRequest, msg)
			}
			o.Revision = n
		}
	}
	return o, paged, true
}

// serveRegistryList answers GET (and HEAD) of a registry's collection:
// {"<field>":[...],"revision":n}, streamed from a frozen view, so that a
// registry of any size takes the same memory; with limit, next or
// revision one page, {"<field>":[...],"revision":n,"more":b,"next":id},
// later pages read at the first one's revision (410 compacted once that
// cannot be read).
func (h *apiHandler) serveRegistryList(w http.ResponseWriter, r *http.Request, query url.Values, rl registryList) {
	c, ok := parseConsistency(w, query)
	if !ok {
		return
	}
	o, paged, ok := h.parseRegistryPaging(w, query, rl.prefix)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	var (
		page *kv.ListPage
		view *kv.ReadView
	)
	if paged {
		p, err := h.listPage(ctx, rl.prefix, c, o)
		if err != nil {
			h.failList(w, r, err)
			return
		}
		page = &p
	} else {
		v, err := h.readView(ctx, rl.prefix, c)
		if err != nil {
			h.failList(w, r, err)
			return
		}
		view = v
	}
	cancel()
	w.Header().Set(ConsistencyHeader, c.String())
	lw := newListWriter(w, h.opts.Watch.WriteTimeout, false)
	lw.start("application/json")
	lw.raw([]byte(`{"` + rl.field + `":[`))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	n := 0
	entry := func(it kv.Item) bool {
		buf.Reset()
		if err := enc.Encode(rl.fromItem(it)); err != nil {
			// The values are stored valid JSON; a stored value that does
			// not encode cuts the answer short, which the client sees
			// as invalid JSON rather than a wrong list.
			h.log.Error("http encoding a registry entry", "key", it.Key, "err", err)
			lw.err = err
			return false
		}
		if n > 0 {
			lw.raw([]byte{','})
		}
		n++
		lw.raw(bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}))
		return lw.err == nil
	}
	if page != nil {
		for i := range page.Items {
			if !entry(page.Items[i]) {
				break
			}
		}
		lw.raw([]byte(`],"revision":` + strconv.FormatInt(page.Revision, 10) + `,"more":` + strconv.FormatBool(page.More)))
		if page.More {
			lw.raw(api.AppendKeyJSON([]byte(`,"next":`), page.Next[len(rl.prefix):]))
		}
		lw.raw([]byte("}\n"))
	} else {
		view.Range(rl.prefix, "", entry)
		lw.raw([]byte(`],"revision":` + strconv.FormatInt(view.Revision, 10) + "}\n"))
	}
	lw.flush()
}
