package endpointapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// Client calls the agent. The zero value is not usable; use NewClient.
type Client struct {
	socket string
	// poll is the interval between Enforced queries in WaitEnforced.
	poll time.Duration
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	return &Client{socket: socket, poll: 2 * time.Millisecond}
}

// Register tells the agent about a new endpoint.
func (c *Client) Register(ctx context.Context, ep Endpoint) error {
	_, err := c.call(ctx, request{Op: OpRegister, Endpoint: &ep})
	return err
}

// Unregister tells the agent an endpoint is gone.
func (c *Client) Unregister(ctx context.Context, id string) error {
	_, err := c.call(ctx, request{Op: OpUnregister, ID: id})
	return err
}

// Enforced asks whether the endpoint's policy is in the dataplane.
func (c *Client) Enforced(ctx context.Context, id string) (bool, error) {
	r, err := c.call(ctx, request{Op: OpEnforced, ID: id})
	return r.Enforced, err
}

// Status returns nil when the agent is reachable and can program policy.
func (c *Client) Status(ctx context.Context) error {
	_, err := c.call(ctx, request{Op: OpStatus})
	return err
}

// WaitEnforced polls Enforced until it reports true or ctx ends; then the
// error wraps ErrNotEnforced (and the context's error).
func (c *Client) WaitEnforced(ctx context.Context, id string) error {
	delay := c.poll
	for {
		ok, err := c.Enforced(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%w: %w", ErrNotEnforced, ctx.Err())
			}
			// A dial or read cut short by the context's deadline can
			// return before ctx reports it: time ran out, the agent was
			// there.
			if _, ok := ctx.Deadline(); ok && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)) {
				return fmt.Errorf("%w: %w", ErrNotEnforced, context.DeadlineExceeded)
			}
			return err
		}
		if ok {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", ErrNotEnforced, ctx.Err())
		case <-t.C:
		}
		// A query costs a unix-socket round trip (~0.1 ms): poll often, so
		// the plugin returns within a few ms of enforcement.
		delay = min(delay*2, 5*time.Millisecond)
	}
}

func (c *Client) call(ctx context.Context, req request) (response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return response{}, fmt.Errorf("%w: %s: %w", ErrUnavailable, c.socket, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return response{}, fmt.Errorf("%w: %s: send: %w", ErrUnavailable, c.socket, err)
	}
	var resp response
	if err := json.NewDecoder(io.LimitReader(conn, 1<<20)).Decode(&resp); err != nil {
		if ctx.Err() != nil {
			return response{}, fmt.Errorf("endpointapi: %s: %w", req.Op, ctx.Err())
		}
		return response{}, fmt.Errorf("%w: %s: read: %w", ErrUnavailable, c.socket, err)
	}
	switch resp.Code {
	case codeOK:
		return resp, nil
	case codeCannotProgram:
		return resp, wrapRemote(ErrCannotProgram, resp.Message)
	case codeUnknown:
		return resp, wrapRemote(ErrUnknownEndpoint, resp.Message)
	case codeInvalid:
		return resp, wrapRemote(ErrProtocol, resp.Message)
	}
	return resp, errors.New("endpointapi: agent: " + resp.Message)
}

// wrapRemote wraps the agent's message in the sentinel it stands for,
// without repeating the sentinel's text when the agent already wrote it.
func wrapRemote(sentinel error, msg string) error {
	msg = strings.TrimPrefix(msg, sentinel.Error()+": ")
	return fmt.Errorf("%w: %s", sentinel, msg)
}
