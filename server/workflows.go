package server

// The registries: workflows and application nodes, JSON objects under
// workflow:<id> and node:<id>.
//
//	GET    /v1/workflows            {"workflows":[...],"revision":n}
//	POST   /v1/workflows            {"id":"...", ...fields}: START_WORKFLOW
//	GET    /v1/workflows/{id}       the workflow (getWorkflowState)
//	PATCH  /v1/workflows/{id}       {...fields}: UPDATE_STATE
//	POST   /v1/workflows/{id}/stop  {...fields} or no body: STOP_WORKFLOW
//	GET    /v1/workflows/{id}/history  its history (workflow_history.go)
//	GET    /v1/nodes                {"nodes":[...],"revision":n}
//	POST   /v1/nodes                {"id":"...", ...metadata}: REGISTER_NODE
//	DELETE /v1/nodes/{id}           DEREGISTER_NODE

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// idResponse is the body of a successful workflow or node write.
type idResponse struct {
	ID       string `json:"id"`
	Revision int64  `json:"revision"`
}

// pathID percent-decodes one path segment naming a workflow or node,
// answering 400 itself when it is not one.
func (h *apiHandler) pathID(w http.ResponseWriter, escaped string) (string, bool) {
	id, err := url.PathUnescape(escaped)
	if err != nil || id == "" || !utf8.ValidString(id) || len(id) > h.opts.MaxKeyBytes {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey,
			message: fmt.Sprintf("id must be a percent-encoded UTF-8 path segment of 1 to %d bytes", h.opts.MaxKeyBytes)})
		return "", false
	}
	if msg := h.checkKey(id); msg != "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: "id: " + msg})
		return "", false
	}
	return id, true
}

// bodyID reads the "id" string field of a registration body; the id is
// held to the rules of a key (no control characters).
func (h *apiHandler) bodyID(w http.ResponseWriter, obj map[string]json.RawMessage) (string, bool) {
	var id string
	if raw, ok := obj["id"]; !ok || json.Unmarshal(raw, &id) != nil || id == "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: `request body needs a non-empty string "id"`})
		return "", false
	}
	if msg := h.checkKey(id); msg != "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: "id: " + msg})
		return "", false
	}
	return id, true
}

// registry is the table of one registry's routes, which serveRegistry
// serves: the collection (GET and HEAD list it, POST creates the entry
// named by the body's "id") and the routes under /{id}.
type registry struct {
	// list is how GET reads the collection (registry_list.go).
	list registryList
	// create makes entry id from the POSTed object, answering
	// createStatus; leased registries take ?lease= and ?ttl= (o).
	create       func(h *apiHandler, ctx context.Context, id string, body []byte, o kv.PutOptions) (int64, error)
	createStatus int
	leased       bool
	// entry maps what follows /{id} in the path ("" for the entry itself)
	// to its route; any other path is 404.
	entry map[string]entryRoute
}

// entryRoute is one route under /{id}: a handler for each method it
// answers, and the Allow header of the 405 that any other method gets.
type entryRoute struct {
	allow   string
	methods map[string]entryHandler
}

// entryHandler answers a request about the entry id, whose path and query
// are already checked.
type entryHandler func(h *apiHandler, w http.ResponseWriter, r *http.Request, query url.Values, id string)

// workflowRoute is /v1/workflows/{id}.
var workflowRoute = entryRoute{
	allow: "GET, HEAD, PATCH",
	methods: map[string]entryHandler{
		http.MethodGet:   (*apiHandler).getWorkflow,
		http.MethodHead:  (*apiHandler).getWorkflow,
		http.MethodPatch: (*apiHandler).updateWorkflow,
	},
}

// workflowRegistry is the table of /v1/workflows.
var workflowRegistry = registry{
	list: workflowList,
	create: func(h *apiHandler, ctx context.Context, id string, body []byte, _ kv.PutOptions) (int64, error) {
		return h.backend.StartWorkflow(ctx, id, body)
	},
	createStatus: http.StatusCreated,
	entry: map[string]entryRoute{
		"":  workflowRoute,
		"/": workflowRoute, // a trailing slash names the workflow too
		"/stop": {allow: http.MethodPost, methods: map[string]entryHandler{
			http.MethodPost: (*apiHandler).stopWorkflow,
		}},
		"/history": {allow: http.MethodGet, methods: map[string]entryHandler{
			http.MethodGet: (*apiHandler).getWorkflowHistory,
		}},
	},
}

// nodeRegistry is the table of /v1/nodes.
var nodeRegistry = registry{
	list: nodeList,
	create: func(h *apiHandler, ctx context.Context, id string, body []byte, o kv.PutOptions) (int64, error) {
		if o.Lease != 0 || o.TTL != 0 {
			nb, ok := h.backend.(NodeLeaseBackend)
			if !ok {
				return 0, fmt.Errorf("server: this server does not serve leases: %w", kv.ErrInvalidTTL)
			}
			return nb.RegisterNodeWith(ctx, id, body, o)
		}
		return h.backend.RegisterNode(ctx, id, body)
	},
	createStatus: http.StatusOK,
	leased:       true,
	entry: map[string]entryRoute{
		"": {allow: http.MethodDelete, methods: map[string]entryHandler{
			http.MethodDelete: (*apiHandler).deregisterNode,
		}},
	},
}

// serveRegistry serves the routes of reg; rest is the escaped path after
// the registry's own ("/v1/workflows"), empty or starting with "/". A bad
// query string is refused first, then an unknown path (404), then a bad
// id (400), then a method the route does not answer (405).
func (h *apiHandler) serveRegistry(w http.ResponseWriter, r *http.Request, rest string, reg *registry) {
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	if rest == "" {
		h.serveCollection(w, r, query, reg)
		return
	}
	seg, ok := strings.CutPrefix(rest, "/")
	var suffix string
	if i := strings.IndexByte(seg, '/'); i >= 0 {
		seg, suffix = seg[:i], seg[i:]
	}
	route, known := reg.entry[suffix]
	if !ok || !known {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "no such route"})
		return
	}
	id, ok := h.pathID(w, seg)
	if !ok {
		return
	}
	handle, ok := route.methods[r.Method]
	if !ok {
		methodNotAllowed(w, route.allow)
		return
	}
	handle(h, w, r, query, id)
}

// serveCollection serves a registry's collection route: GET (and HEAD)
// answers reg.list's response, read with the request's consistency; POST
// creates the entry named by the body's "id" with reg.create.
func (h *apiHandler) serveCollection(w http.ResponseWriter, r *http.Request, query url.Values, reg *registry) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.serveRegistryList(w, r, query, reg.list)
	case http.MethodPost:
		obj, body, ok := h.readObject(w, r, false)
		if !ok {
			return
		}
		id, ok := h.bodyID(w, obj)
		if !ok {
			return
		}
		var lo kv.PutOptions
		if reg.leased {
			if lo, ok = leaseOptions(w, query); !ok {
				return
			}
		}
		h.workflowWrite(w, r, id, reg.createStatus, func(ctx context.Context) (int64, error) {
			return reg.create(h, ctx, id, body, lo)
		})
	default:
		methodNotAllowed(w, "GET, HEAD, POST")
	}
}

// getWorkflow answers GET and HEAD /v1/workflows/{id}.
func (h *apiHandler) getWorkflow(w http.ResponseWriter, r *http.Request, query url.Values, id string) {
	c, ok := parseConsistency(w, query)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	wf, err := h.backend.WorkflowState(ctx, id, c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set(ConsistencyHeader, c.String())
	w.Header().Set("ETag", etag(wf.Revision))
	h.writeJSON(w, http.StatusOK, wf)
}

// updateWorkflow answers PATCH /v1/workflows/{id}.
func (h *apiHandler) updateWorkflow(w http.ResponseWriter, r *http.Request, _ url.Values, id string) {
	_, body, ok := h.readObject(w, r, false)
	if !ok {
		return
	}
	h.workflowWrite(w, r, id, http.StatusOK, func(ctx context.Context) (int64, error) {
		return h.backend.UpdateWorkflowState(ctx, id, body)
	})
}

// stopWorkflow answers POST /v1/workflows/{id}/stop; the body is optional.
func (h *apiHandler) stopWorkflow(w http.ResponseWriter, r *http.Request, _ url.Values, id string) {
	_, body, ok := h.readObject(w, r, true)
	if !ok {
		return
	}
	h.workflowWrite(w, r, id, http.StatusOK, func(ctx context.Context) (int64, error) {
		return h.backend.StopWorkflow(ctx, id, body)
	})
}

// deregisterNode answers DELETE /v1/nodes/{id}.
func (h *apiHandler) deregisterNode(w http.ResponseWriter, r *http.Request, _ url.Values, id string) {
	h.workflowWrite(w, r, id, http.StatusOK, func(ctx context.Context) (int64, error) {
		return h.backend.DeregisterNode(ctx, id)
	})
}

// workflowWrite runs a workflow or node write and answers {"id","revision"}.
func (h *apiHandler) workflowWrite(w http.ResponseWriter, r *http.Request, id string, status int, do func(context.Context) (int64, error)) {
	ctx, cancel, ok := h.writeContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	rev, err := do(ctx)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, status, idResponse{ID: id, Revision: rev})
}

// NodeLeaseBackend is implemented by a Backend whose application nodes
// can be registered under a lease (kv.Store): POST /v1/nodes?lease=ID or
// ?ttl=DURATION.
type NodeLeaseBackend interface {
	RegisterNodeWith(ctx context.Context, id string, metadata []byte, o kv.PutOptions) (int64, error)
}
