package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/unrdf/consensus/api"
)

// Membership calls go over the HTTP JSON API (/v1/members,
// /v1/leader/transfer), not /v1/ws: they are rare, and the server answers
// them from the node's replicated membership. The client tries its
// endpoints in turn while a request could not be sent or was answered
// no_leader or removed (nothing was done); any other answer is final.

// Membership error codes, beside those of the key-value API (api's).
const (
	CodeMemberNotFound = api.CodeMemberNotFound
	CodeMemberConflict = api.CodeMemberConflict
	CodeInvalidMember  = api.CodeInvalidMember
	CodeRemoved        = api.CodeRemoved
)

// membersAnswer is the body of the membership routes.
type membersAnswer struct {
	ClusterID string       `json:"clusterId"`
	Member    *api.Member  `json:"member"`
	Members   []api.Member `json:"members"`
}

// Members returns the cluster's members, sorted by id.
func (c *Client) Members(ctx context.Context) ([]api.Member, error) {
	var a membersAnswer
	if err := c.httpCall(ctx, http.MethodGet, "/v1/members", nil, &a); err != nil {
		return nil, err
	}
	return a.Members, nil
}

// AddMember adds m (ID and PeerAddr required, HTTPAddr optional) as a
// learner; the leader promotes it once it has caught up. It returns the
// members after the change. Errors match api.ErrMemberConflict (the
// id was removed before, or exists at another address) and
// api.ErrInvalidMember.
func (c *Client) AddMember(ctx context.Context, m api.Member) ([]api.Member, error) {
	body := map[string]string{"id": m.ID, "peerAddr": m.PeerAddr, "httpAddr": m.HTTPAddr}
	var a membersAnswer
	if err := c.httpCall(ctx, http.MethodPost, "/v1/members", body, &a); err != nil {
		return nil, err
	}
	return a.Members, nil
}

// RemoveMember removes id from the cluster for good.
func (c *Client) RemoveMember(ctx context.Context, id string) error {
	return c.httpCall(ctx, http.MethodDelete, "/v1/members/"+url.PathEscape(id), nil, nil)
}

// PromoteMember makes the learner id a voter.
func (c *Client) PromoteMember(ctx context.Context, id string) error {
	return c.httpCall(ctx, http.MethodPost, "/v1/members/"+url.PathEscape(id)+"/promote", nil, nil)
}

// TransferLeadership hands leadership to target ("" lets the leader pick
// its most caught-up voter) and returns the new leader.
func (c *Client) TransferLeadership(ctx context.Context, target string) (string, error) {
	var a struct {
		LeaderID string `json:"leaderId"`
	}
	if err := c.httpCall(ctx, http.MethodPost, "/v1/leader/transfer", map[string]string{"target": target}, &a); err != nil {
		return "", err
	}
	return a.LeaderID, nil
}

// httpBase returns the HTTP base URL of an endpoint's /v1/ws URL.
func httpBase(wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil {
		return wsURL
	}
	if u.Scheme == "wss" {
		u.Scheme = "https"
	} else {
		u.Scheme = "http"
	}
	u.Path = strings.TrimSuffix(u.Path, "/v1/ws")
	return strings.TrimSuffix(u.String(), "/")
}

// httpCall sends one JSON request, moving to the next endpoint while the
// request could not be sent or nothing was done (no_leader, removed), at
// most Config.MaxAttempts times. out, if not nil, receives the answer.
func (c *Client) httpCall(ctx context.Context, method, path string, body, out any) error {
	if c.closed.Load() {
		return ErrClosed
	}
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("client: %s %s: %w", method, path, err)
		}
	}
	var last error
	for attempt := 0; attempt < max(c.cfg.MaxAttempts, len(c.endpoints)); attempt++ {
		i := int(c.preferred.Load()) % len(c.endpoints)
		base := httpBase(c.endpoints[i].url)
		retry, err := c.httpOnce(ctx, method, base+path, payload, out)
		if err == nil || !retry {
			return err
		}
		last = err
		c.preferred.CompareAndSwap(int64(i), int64(i+1))
		t := time.NewTimer(c.cfg.RetryBackoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("client: %s %s: %w (last error: %w)", method, path, ctx.Err(), last)
		}
	}
	return fmt.Errorf("client: %s %s: %w: %w", method, path, ErrUnavailable, last)
}

// httpOnce sends the request once; retry says whether another endpoint
// may be tried (nothing was done).
func (c *Client) httpOnce(ctx context.Context, method, target string, payload []byte, out any) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(payload))
	if err != nil {
		return false, fmt.Errorf("client: %w", err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("client: %s: %w", target, ctx.Err())
		}
		// A membership change is idempotent (re-adding at the same
		// address, re-promoting and re-removing succeed), so retrying it
		// on another endpoint is safe even if this one acted on it.
		return true, fmt.Errorf("client: %s: %w: %w", target, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return true, fmt.Errorf("client: %s: reading answer: %w: %w", target, ErrUnavailable, err)
	}
	if resp.StatusCode == http.StatusOK {
		if out == nil {
			return false, nil
		}
		if err := json.Unmarshal(answer, out); err != nil {
			return false, fmt.Errorf("client: %s: decoding answer: %w", target, err)
		}
		return false, nil
	}
	if IsHTTPSAnswer(resp.StatusCode, answer) {
		return false, fmt.Errorf("client: %s: %w", target, ErrHTTPSEndpoint)
	}
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(answer, &eb)
	se := &ServerError{Code: eb.Error.Code, Message: eb.Error.Message, Endpoint: target}
	if se.Code == "" {
		se.Code, se.Message = CodeUnavailable, resp.Status
	}
	if sentinel := api.MemberSentinel(se.Code); sentinel != nil {
		err = fmt.Errorf("%w: %w", sentinel, se)
	} else {
		err = se
	}
	retry = se.Code == CodeNoLeader || se.Code == CodeRemoved || se.Code == CodeUnavailable && method == http.MethodGet
	return retry, err
}
