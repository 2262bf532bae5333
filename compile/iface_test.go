package compile

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWorkloadInterface(t *testing.T) {
	a := WorkloadInterface("shop", "web-0")
	assert.Len(t, a, 15)
	assert.True(t, strings.HasPrefix(a, InterfacePrefix))
	assert.Equal(t, a, WorkloadInterface("shop", "web-0"), "stable")
	assert.NotEqual(t, a, WorkloadInterface("shop", "web-1"))
}
