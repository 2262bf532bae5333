package ipam

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestGCGraceAndTwoObservations(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	a := New(NewMemoryStore(), Config{Now: clk.Now, GCGrace: time.Minute, Cooldown: time.Second})
	mustPool(t, a, "p", "10.0.0.0/24", 0)
	live := map[string]bool{"alive": true}
	isLive := func(_ context.Context, h Handle) (bool, error) {
		if h.ID == "flaky" {
			return false, errors.New("apiserver unreachable")
		}
		return live[h.ID], nil
	}
	assign(t, a, "alive", "n")
	assign(t, a, "dead", "n")
	assign(t, a, "flaky", "n")

	// Too young to judge.
	res, err := a.GC(ctx, isLive)
	require.NoError(t, err)
	require.Equal(t, GCResult{}, res)

	clk.Advance(time.Minute)
	res, err = a.GC(ctx, isLive)
	require.NoError(t, err)
	require.Equal(t, 3, res.Checked)
	require.Equal(t, []string{"dead"}, res.Suspects, "first observation only suspects")
	require.Empty(t, res.Released)

	// Second observation, but not yet a grace period after the first.
	clk.Advance(30 * time.Second)
	res, err = a.GC(ctx, isLive)
	require.NoError(t, err)
	require.Equal(t, []string{"dead"}, res.Suspects)
	require.Empty(t, res.Released)

	// The pod comes back: observation starts over.
	live["dead"] = true
	clk.Advance(time.Minute)
	res, err = a.GC(ctx, isLive)
	require.NoError(t, err)
	require.Empty(t, res.Suspects)
	live["dead"] = false
	res, err = a.GC(ctx, isLive)
	require.NoError(t, err)
	require.Equal(t, []string{"dead"}, res.Suspects)
	require.Empty(t, res.Released)

	clk.Advance(time.Minute)
	res, err = a.GC(ctx, isLive)
	require.NoError(t, err)
	require.Equal(t, []string{"dead"}, res.Released)
	_, err = a.LookupHandle(ctx, "dead")
	require.ErrorIs(t, err, ErrNotFound)
	_, err = a.LookupHandle(ctx, "flaky")
	require.NoError(t, err, "an error from isLive never frees")
	requireClean(t, a)

	// Once every handle is gone and the cool-down passed, the block goes too.
	for _, h := range []string{"alive", "flaky"} {
		_, err := a.ReleaseByHandle(ctx, h)
		require.NoError(t, err)
	}
	clk.Advance(2 * time.Second)
	res, err = a.GC(ctx, isLive)
	require.NoError(t, err)
	require.Len(t, res.BlocksReleased, 1)
	rep := requireClean(t, a)
	require.Zero(t, rep.Blocks+rep.Nodes+rep.Handles)
}

func TestGCDoesNotFreeRecreatedHandle(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	a := New(NewMemoryStore(), Config{Now: clk.Now, GCGrace: time.Minute})
	mustPool(t, a, "p", "10.0.0.0/24", 0)
	dead := func(context.Context, Handle) (bool, error) { return false, nil }
	assign(t, a, "h", "n")
	clk.Advance(time.Minute)
	res, err := a.GC(ctx, dead)
	require.NoError(t, err)
	require.Equal(t, []string{"h"}, res.Suspects)
	// The same ID is released and assigned again (a new pod, same name).
	_, err = a.ReleaseByHandle(ctx, "h")
	require.NoError(t, err)
	clk.Advance(time.Minute)
	assign(t, a, "h", "n")
	clk.Advance(time.Minute)
	res, err = a.GC(ctx, dead)
	require.NoError(t, err)
	require.Empty(t, res.Released, "the new handle is observed afresh")
	require.Equal(t, []string{"h"}, res.Suspects)
}
