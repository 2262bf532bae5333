package endpointapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Handler is what the agent implements behind the socket.
type Handler interface {
	// Register records the endpoint and starts programming its policy. It
	// may return before the policy is enforced; Enforced reports when.
	Register(ctx context.Context, ep Endpoint) error
	// Unregister forgets the endpoint; an unknown ID is not an error.
	Unregister(ctx context.Context, id string) error
	// Enforced reports whether the endpoint's policy is in the dataplane.
	// An unknown ID returns ErrUnknownEndpoint.
	Enforced(ctx context.Context, id string) (bool, error)
	// Status returns nil when policy can be programmed, an error wrapping
	// ErrCannotProgram otherwise.
	Status(ctx context.Context) error
}

// Server answers the protocol on a listener, one goroutine per connection.
type Server struct {
	handler Handler
	log     *slog.Logger
	// ioTimeout bounds reading a request and writing its response.
	ioTimeout time.Duration
}

// NewServer returns a server for h. A nil logger discards.
func NewServer(h Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{handler: h, log: log, ioTimeout: 10 * time.Second}
}

// Serve accepts connections until ctx ends or the listener fails, then
// waits for the connections in flight. It returns nil after ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("endpointapi: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(s.ioTimeout))
	if err := json.NewEncoder(c).Encode(s.respond(ctx, c)); err != nil {
		s.log.Debug("endpointapi: write response", "err", err)
	}
}

// respond reads one request from r and answers it.
func (s *Server) respond(ctx context.Context, r io.Reader) response {
	var req request
	dec := json.NewDecoder(io.LimitReader(r, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return response{Code: codeInvalid, Message: err.Error()}
	}
	return s.handle(ctx, req)
}

func (s *Server) handle(ctx context.Context, req request) response {
	var err error
	var enforced bool
	switch req.Op {
	case OpRegister:
		if req.Endpoint == nil || req.Endpoint.ID == "" {
			return response{Code: codeInvalid, Message: "register needs an endpoint with an id"}
		}
		err = s.handler.Register(ctx, *req.Endpoint)
	case OpUnregister:
		if req.ID == "" {
			return response{Code: codeInvalid, Message: "unregister needs an id"}
		}
		err = s.handler.Unregister(ctx, req.ID)
	case OpEnforced:
		if req.ID == "" {
			return response{Code: codeInvalid, Message: "enforced needs an id"}
		}
		enforced, err = s.handler.Enforced(ctx, req.ID)
	case OpStatus:
		err = s.handler.Status(ctx)
	default:
		return response{Code: codeInvalid, Message: fmt.Sprintf("unknown op %q", req.Op)}
	}
	switch {
	case err == nil:
		return response{Enforced: enforced}
	case errors.Is(err, ErrCannotProgram):
		return response{Code: codeCannotProgram, Message: err.Error()}
	case errors.Is(err, ErrUnknownEndpoint):
		return response{Code: codeUnknown, Message: err.Error()}
	default:
		s.log.Warn("endpointapi: handler failed", "op", req.Op, "err", err)
		return response{Code: codeInternal, Message: err.Error()}
	}
}
