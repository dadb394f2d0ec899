package client

import (
	"context"
	"fmt"
	"net/http"

	"github.com/unrdf/consensus/api"
)

// Calls for operators that ask one given endpoint, never another: what a
// particular node says about itself and the cluster. They go over the
// HTTP JSON API with the Client's token and TLS settings, and are not
// retried.

// EndpointStatus returns the status of the node at endpoint (GET
// /v1/status). endpoint takes any form Config.Endpoints does and need not
// be one of them. Unlike Status, it never moves to another endpoint, so
// the answer is that node's own view.
func (c *Client) EndpointStatus(ctx context.Context, endpoint string) (api.Status, error) {
	var st api.Status
	err := c.endpointGet(ctx, endpoint, "/v1/status", &st)
	return st, err
}

// EndpointHealth returns every member with its health as the node at
// endpoint sees it (GET /v1/cluster/nodes), sorted by id.
func (c *Client) EndpointHealth(ctx context.Context, endpoint string) ([]api.NodeInfo, error) {
	var a struct {
		Nodes []api.NodeInfo `json:"nodes"`
	}
	err := c.endpointGet(ctx, endpoint, "/v1/cluster/nodes", &a)
	return a.Nodes, err
}

func (c *Client) endpointGet(ctx context.Context, endpoint, path string, out any) error {
	if c.closed.Load() {
		return fmt.Errorf("client: GET %s: %w", path, ErrClosed)
	}
	u, err := endpointURL(endpoint)
	if err != nil {
		return err
	}
	_, err = c.httpOnce(ctx, http.MethodGet, httpBase(u)+path, nil, out)
	return err
}
