package ipam

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calyxnet/calyx/policy"
)

func TestPoolFromIPPool(t *testing.T) {
	tests := []struct {
		name    string
		spec    policy.IPPoolSpec
		want    Pool
		wantErr bool
	}{
		{
			name: "IPv4 defaults",
			spec: policy.IPPoolSpec{CIDR: "10.244.0.0/16"},
			want: Pool{Name: "pool", CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26},
		},
		{
			name: "IPv6 defaults",
			spec: policy.IPPoolSpec{CIDR: "fd00:10:244::/56"},
			want: Pool{Name: "pool", CIDR: netip.MustParsePrefix("fd00:10:244::/56"), BlockSize: 122},
		},
		{
			name: "every field",
			spec: policy.IPPoolSpec{CIDR: "10.1.2.3/16", BlockSize: 28, NodeSelector: `zone == "a"`, Disabled: true,
				AllowedUses: []policy.IPPoolAllowedUse{policy.IPPoolUseTunnel}, AssignmentMode: "Manual"},
			want: Pool{Name: "pool", CIDR: netip.MustParsePrefix("10.1.0.0/16"), BlockSize: 28, NodeSelector: `zone == "a"`,
				Disabled: true, AllowedUses: []Use{UseTunnel}, Manual: true},
		},
		{name: "bad cidr", spec: policy.IPPoolSpec{CIDR: "10.0.0.0"}, wantErr: true},
		{name: "bad block size", spec: policy.IPPoolSpec{CIDR: "10.0.0.0/16", BlockSize: 8}, wantErr: true},
		{name: "bad selector", spec: policy.IPPoolSpec{CIDR: "10.0.0.0/16", NodeSelector: "a =="}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PoolFromIPPool(&policy.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "pool"}, Spec: tt.spec})
			if tt.wantErr {
				require.ErrorIs(t, err, ErrInvalid)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
