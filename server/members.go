package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/cluster"
	"go.etcd.io/raft/v3"
)

// Membership is what the membership routes serve; consensus.Node
// implements it. Errors are matched with errors.Is against consensus's
// sentinel errors (ErrUnknownMember 404, ErrMemberConflict 409,
// ErrInvalidMember 400, ErrRemoved/ErrNoLeader/ErrTimeout 503).
type Membership interface {
	// Members returns the members, sorted by id.
	Members() []consensus.Member
	// AddMember adds a learner (promoted to voter once caught up).
	AddMember(ctx context.Context, m consensus.Member) (consensus.Member, error)
	// PromoteMember makes a learner a voter.
	PromoteMember(ctx context.Context, id string) error
	// RemoveMember removes a member for good.
	RemoveMember(ctx context.Context, id string) error
	// TransferLeadershipTo moves leadership to id ("" lets the node
	// choose) and returns the new leader.
	TransferLeadershipTo(ctx context.Context, id string) (string, error)
	// ClusterID identifies the cluster; a joining node needs it.
	ClusterID() uint64
	// Leader names the current leader, "" if none is known.
	Leader() string
}

const (
	membersPath        = "/v1/members"
	membersPrefix      = "/v1/members/"
	leaderTransferPath = "/v1/leader/transfer"
	clusterNodesPath   = "/v1/cluster/nodes"
	clusterStatsPath   = "/v1/cluster/stats"
)

// ClusterHealth is what the /v1/cluster routes serve; cluster.Manager
// implements it.
type ClusterHealth interface {
	Nodes() []cluster.NodeInfo
	HealthyNodes() []cluster.NodeInfo
	NodeHealth(id string) (cluster.NodeInfo, error)
	Stats() cluster.Stats
}

// NodesResponse is the body of GET /v1/cluster/nodes.
type NodesResponse struct {
	Nodes []cluster.NodeInfo `json:"nodes"`
}

// serveCluster serves the health routes (the seed's getNodes,
// getHealthyNodes, getNodeHealth, getStats):
//
//	GET /v1/cluster/nodes               every member with its health
//	GET /v1/cluster/nodes?healthy=true  the healthy ones
//	GET /v1/cluster/nodes/{id}          one member's health
//	GET /v1/cluster/stats               counts by role and health
func (h *apiHandler) serveCluster(w http.ResponseWriter, r *http.Request, path string) {
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	switch {
	case path == clusterStatsPath:
		h.writeJSON(w, http.StatusOK, h.opts.Cluster.Stats())
	case path == clusterNodesPath:
		healthy, ok := singleParam(w, query, "healthy")
		if !ok {
			return
		}
		var nodes []cluster.NodeInfo
		switch healthy {
		case "", "false":
			nodes = h.opts.Cluster.Nodes()
		case "true":
			nodes = h.opts.Cluster.HealthyNodes()
		default:
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: `healthy must be "true" or "false"`})
			return
		}
		if nodes == nil {
			nodes = []cluster.NodeInfo{}
		}
		h.writeJSON(w, http.StatusOK, NodesResponse{Nodes: nodes})
	default:
		id, err := url.PathUnescape(strings.TrimPrefix(path, clusterNodesPath+"/"))
		if err != nil || id == "" || strings.Contains(id, "/") {
			writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "no such route"})
			return
		}
		info, err := h.opts.Cluster.NodeHealth(id)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		h.writeJSON(w, http.StatusOK, info)
	}
}

// MembersResponse is the body of GET /v1/members, and of the membership
// changes (which return the membership after the change).
type MembersResponse struct {
	// ClusterID is the cluster's id in hexadecimal (a joining node's
	// transport presents it).
	ClusterID string `json:"clusterId"`
	// Member is the member the request was about, if any.
	Member *consensus.Member `json:"member,omitempty"`
	// Members lists every member, sorted by id.
	Members []consensus.Member `json:"members"`
}

// AddMemberRequest is the body of POST /v1/members.
type AddMemberRequest struct {
	ID       string `json:"id"`
	PeerAddr string `json:"peerAddr"`
	HTTPAddr string `json:"httpAddr"`
}

// TransferRequest is the optional body of POST /v1/leader/transfer.
type TransferRequest struct {
	// Target is the voter to hand leadership to; "" lets the cluster
	// choose (the most caught-up voter, when asked of the leader).
	Target string `json:"target"`
}

// TransferResponse is the body of a successful POST /v1/leader/transfer.
type TransferResponse struct {
	LeaderID string `json:"leaderId"`
}

// routeMembers serves the membership routes and reports whether path was
// one of them:
//
//	GET    /v1/members               the members
//	POST   /v1/members               add a learner: AddMemberRequest
//	DELETE /v1/members/{id}          remove a member
//	POST   /v1/members/{id}/promote  make a learner a voter
//	POST   /v1/leader/transfer       hand leadership over: TransferRequest
func (h *apiHandler) routeMembers(w http.ResponseWriter, r *http.Request, path string) bool {
	switch {
	case path == membersPath:
		if !methodIn(r.Method, http.MethodGet, http.MethodHead, http.MethodPost) {
			methodNotAllowed(w, "GET, HEAD, POST")
			return true
		}
		if h.membersOrFail(w) {
			if r.Method == http.MethodPost {
				h.serveAddMember(w, r)
			} else {
				h.writeJSON(w, http.StatusOK, h.membersResponse(nil))
			}
		}
		return true
	case path == leaderTransferPath:
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return true
		}
		if h.membersOrFail(w) {
			h.serveTransfer(w, r)
		}
		return true
	case path == clusterNodesPath || path == clusterStatsPath || strings.HasPrefix(path, clusterNodesPath+"/"):
		if !methodIn(r.Method, http.MethodGet, http.MethodHead) {
			methodNotAllowed(w, allowRead)
			return true
		}
		if h.opts.Cluster == nil {
			writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "cluster health is not served here"})
			return true
		}
		h.serveCluster(w, r, path)
		return true
	case strings.HasPrefix(path, membersPrefix):
		rest := strings.TrimPrefix(path, membersPrefix)
		escapedID, action, _ := strings.Cut(rest, "/")
		id, err := url.PathUnescape(escapedID)
		if err != nil || id == "" {
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidMember, message: "member id is empty or does not percent-decode"})
			return true
		}
		switch action {
		case "":
			if r.Method != http.MethodDelete {
				methodNotAllowed(w, "DELETE")
				return true
			}
		case "promote":
			if r.Method != http.MethodPost {
				methodNotAllowed(w, "POST")
				return true
			}
		default:
			writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "no such route"})
			return true
		}
		if !h.membersOrFail(w) {
			return true
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
		defer cancel()
		if action == "promote" {
			err = h.opts.Membership.PromoteMember(ctx, id)
		} else {
			err = h.opts.Membership.RemoveMember(ctx, id)
		}
		if err != nil {
			h.fail(w, r, err)
			return true
		}
		var m *consensus.Member
		if action == "promote" {
			m = h.findMember(id)
		}
		h.writeJSON(w, http.StatusOK, h.membersResponse(m))
		return true
	}
	return false
}

// membersOrFail answers 404 when the handler has no Membership.
func (h *apiHandler) membersOrFail(w http.ResponseWriter) bool {
	if h.opts.Membership == nil {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "membership is not served here"})
		return false
	}
	return true
}

func (h *apiHandler) membersResponse(m *consensus.Member) MembersResponse {
	members := h.opts.Membership.Members()
	if members == nil {
		members = []consensus.Member{}
	}
	return MembersResponse{ClusterID: strconv.FormatUint(h.opts.Membership.ClusterID(), 16), Member: m, Members: members}
}

func (h *apiHandler) findMember(id string) *consensus.Member {
	for _, m := range h.opts.Membership.Members() {
		if m.ID == id {
			return &m
		}
	}
	return nil
}

// decodeBody reads the request body as one JSON object into v, refusing
// unknown fields; an empty body leaves v alone when emptyOK. It answers
// the request itself and returns false on failure.
func (h *apiHandler) decodeBody(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) bool {
	if emptyOK && r.ContentLength == 0 {
		return true
	}
	body, ok := h.readValue(w, r)
	if !ok {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidJSON, message: "request body: " + err.Error()})
		return false
	}
	return true
}

func (h *apiHandler) serveAddMember(w http.ResponseWriter, r *http.Request) {
	var req AddMemberRequest
	if !h.decodeBody(w, r, &req, false) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	m, err := h.opts.Membership.AddMember(ctx, consensus.Member{ID: req.ID, PeerAddr: req.PeerAddr, HTTPAddr: req.HTTPAddr})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, h.membersResponse(&m))
}

func (h *apiHandler) serveTransfer(w http.ResponseWriter, r *http.Request) {
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	target, ok := singleParam(w, query, "target")
	if !ok {
		return
	}
	var req TransferRequest
	if !h.decodeBody(w, r, &req, true) {
		return
	}
	if req.Target != "" {
		if target != "" && target != req.Target {
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: "target given twice, differently"})
			return
		}
		target = req.Target
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	leader, err := h.opts.Membership.TransferLeadershipTo(ctx, target)
	if errors.Is(err, consensus.ErrNotLeader) && r.Header.Get(forwardedHeader) == "" {
		h.forwardTransfer(ctx, w, r, target)
		return
	}
	if err != nil {
		if errors.Is(err, consensus.ErrNotLeader) {
			err = fmt.Errorf("%w (leadership moved while the request was forwarded): %w", consensus.ErrNoLeader, err)
		}
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, TransferResponse{LeaderID: leader})
}

// forwardedHeader marks a request one node forwarded to another, so it is
// never forwarded twice.
const forwardedHeader = "X-Consensus-Forwarded"

// forwardTransfer asks the leader, at its replicated HTTP address, to
// transfer leadership to target (only the leader or the target itself may
// start a transfer), and relays its answer.
func (h *apiHandler) forwardTransfer(ctx context.Context, w http.ResponseWriter, r *http.Request, target string) {
	body, _ := json.Marshal(TransferRequest{Target: target})
	h.forwardToLeader(ctx, w, r, http.MethodPost, leaderTransferPath, body, "a transfer to another node")
}

// JoinResult is what a node joining a running cluster learns from it.
type JoinResult struct {
	ClusterID uint64
	Members   []consensus.Member
}

// Join asks the members at addrs (HTTP addresses, host:port or URLs), in
// turn, to add self as a learner, until one accepts or ctx ends. The calls
// go as api says (TLS, token); each is bounded by 10 seconds. A 409 (the
// id was removed, or exists elsewhere), 400, 401 or 403 ends the attempts
// at once.
func Join(ctx context.Context, api MemberAPI, addrs []string, self consensus.Member) (JoinResult, error) {
	client := api.client(10 * time.Second)
	if len(addrs) == 0 {
		return JoinResult{}, errors.New("join: no member address given")
	}
	body, err := json.Marshal(AddMemberRequest{ID: self.ID, PeerAddr: self.PeerAddr, HTTPAddr: self.HTTPAddr})
	if err != nil {
		return JoinResult{}, fmt.Errorf("join: %w", err)
	}
	var last error
	for attempt := 0; ; attempt++ {
		addr := addrs[attempt%len(addrs)]
		res, permanent, err := joinOnce(ctx, client, api.url(addr, membersPath), addr, body)
		if err == nil {
			return res, nil
		}
		if permanent {
			return JoinResult{}, err
		}
		last = err
		if attempt%len(addrs) == len(addrs)-1 {
			pause := time.NewTimer(joinRetryPause)
			select {
			case <-ctx.Done():
				pause.Stop()
				return JoinResult{}, fmt.Errorf("join: no member accepted within the deadline; last error: %w", last)
			case <-pause.C:
			}
		} else if ctx.Err() != nil {
			return JoinResult{}, fmt.Errorf("join: no member accepted within the deadline; last error: %w", last)
		}
	}
}

// joinRetryPause is the wait after every address has failed once.
const joinRetryPause = 200 * time.Millisecond

func joinOnce(ctx context.Context, client *http.Client, url, addr string, body []byte) (JoinResult, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return JoinResult{}, true, fmt.Errorf("join via %s: %w", addr, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return JoinResult{}, false, fmt.Errorf("join via %s: %w", addr, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		_ = dec.Decode(&eb)
		err := fmt.Errorf("join via %s: %s: %s: %s", addr, resp.Status, eb.Error.Code, eb.Error.Message)
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			err = fmt.Errorf("%w (give the node the cluster's token file: it joins with the first rw token in --auth-token-file)", err)
		}
		permanent := resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusBadRequest ||
			resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden
		return JoinResult{}, permanent, err
	}
	var mr MembersResponse
	if err := dec.Decode(&mr); err != nil {
		return JoinResult{}, false, fmt.Errorf("join via %s: decoding answer: %w", addr, err)
	}
	id, err := strconv.ParseUint(mr.ClusterID, 16, 64)
	if err != nil {
		return JoinResult{}, false, fmt.Errorf("join via %s: bad cluster id %q", addr, mr.ClusterID)
	}
	return JoinResult{ClusterID: id, Members: mr.Members}, false, nil
}

// join makes a node with empty storage join the cluster at cfg.Join (see
// Config.Join), turning cfg.Node into a joining node's configuration.
func (s *Server) join(cfg *Config, peerAddr, httpAddr string) error {
	if len(cfg.Join) == 0 {
		return nil
	}
	empty, err := storageEmpty(s.storage)
	if err != nil {
		return err
	}
	if !empty {
		s.log.Info("node has state; ignoring --join")
		return nil
	}
	timeout := cfg.JoinTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s.log.Info("joining cluster", "via", strings.Join(cfg.Join, ","))
	res, err := Join(ctx, cfg.Members, cfg.Join,
		consensus.Member{ID: cfg.Node.ID, PeerAddr: peerAddr, HTTPAddr: httpAddr})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	peers := map[string]string{cfg.Node.ID: peerAddr}
	for _, m := range res.Members {
		if m.ID != cfg.Node.ID && m.PeerAddr != "" {
			peers[m.ID] = m.PeerAddr
		}
	}
	cfg.Node.Join, cfg.Node.ClusterID, cfg.Node.Peers = true, res.ClusterID, peers
	s.log.Info("added to cluster as a learner", "cluster", strconv.FormatUint(res.ClusterID, 16), "members", len(res.Members))
	return nil
}

// storageEmpty reports whether st holds no raft state at all.
func storageEmpty(st consensus.LogStorage) (bool, error) {
	hs, _, err := st.InitialState()
	if err != nil {
		return false, fmt.Errorf("server: read storage: %w", err)
	}
	last, err := st.LastIndex()
	if err != nil {
		return false, fmt.Errorf("server: read storage: %w", err)
	}
	snap, err := st.Snapshot()
	if err != nil {
		return false, fmt.Errorf("server: read storage: %w", err)
	}
	return raft.IsEmptyHardState(hs) && last == 0 && raft.IsEmptySnap(snap), nil
}
