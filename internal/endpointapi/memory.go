package endpointapi

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Memory is a Handler that keeps endpoints in memory and reports each
// enforced as soon as Program (by default: immediately) says so. Tests use
// it as a stand-in agent; an agent may wrap it, doing the real work in
// Program.
type Memory struct {
	// Program, when set, is called by Register to enforce the endpoint's
	// policy; the endpoint is enforced once it returns nil.
	Program func(ctx context.Context, ep Endpoint) error
	// Unprogram, when set, is called by Unregister for a known endpoint.
	Unprogram func(ctx context.Context, ep Endpoint) error
	// Broken, when set, is returned by Status (wrapped in
	// ErrCannotProgram) and by Register.
	Broken func() error

	mu        sync.Mutex
	endpoints map[string]Endpoint
	enforced  map[string]bool
}

// Register implements Handler. It returns at once; Program runs in the
// background and Enforced reports true once it succeeded.
func (m *Memory) Register(ctx context.Context, ep Endpoint) error {
	if err := m.broken(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.endpoints == nil {
		m.endpoints, m.enforced = map[string]Endpoint{}, map[string]bool{}
	}
	m.endpoints[ep.ID] = ep
	m.enforced[ep.ID] = m.Program == nil
	m.mu.Unlock()
	if m.Program == nil {
		return nil
	}
	go func() {
		if err := m.Program(context.WithoutCancel(ctx), ep); err != nil {
			return
		}
		m.mu.Lock()
		if cur, ok := m.endpoints[ep.ID]; ok && slices.Equal(cur.Addrs, ep.Addrs) && cur.HostIf == ep.HostIf {
			m.enforced[ep.ID] = true
		}
		m.mu.Unlock()
	}()
	return nil
}

// Unregister implements Handler.
func (m *Memory) Unregister(ctx context.Context, id string) error {
	m.mu.Lock()
	ep, ok := m.endpoints[id]
	delete(m.endpoints, id)
	delete(m.enforced, id)
	m.mu.Unlock()
	if ok && m.Unprogram != nil {
		return m.Unprogram(ctx, ep)
	}
	return nil
}

// Enforced implements Handler.
func (m *Memory) Enforced(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.enforced[id]
	if !ok {
		return false, fmt.Errorf("%w: %q", ErrUnknownEndpoint, id)
	}
	return e, nil
}

// Status implements Handler.
func (m *Memory) Status(context.Context) error { return m.broken() }

// Endpoints returns a copy of the registered endpoints by ID.
func (m *Memory) Endpoints() map[string]Endpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Endpoint, len(m.endpoints))
	for k, v := range m.endpoints {
		out[k] = v
	}
	return out
}

func (m *Memory) broken() error {
	if m.Broken == nil {
		return nil
	}
	if err := m.Broken(); err != nil {
		return fmt.Errorf("%w: %w", ErrCannotProgram, err)
	}
	return nil
}
