package policy

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// IPPool is a projectcalico.org/v3 IPPool: a range of addresses from which
// IPAM hands out per-node blocks. Cluster scoped.
type IPPool struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the standard Kubernetes object metadata; only the name
	// matters to Calyx.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds the pool's settings.
	Spec IPPoolSpec `json:"spec,omitempty"`
}

// IPPoolSpec is the specification of an IPPool.
type IPPoolSpec struct {
	// CIDR is the pool's address range, such as 10.244.0.0/16 or fd00::/48.
	CIDR string `json:"cidr"`
	// VXLANMode says when to encapsulate pod traffic in VXLAN: Never
	// (default), Always or CrossSubnet.
	VXLANMode EncapMode `json:"vxlanMode,omitempty"`
	// IPIPMode says when to encapsulate pod traffic in IP-in-IP: Never
	// (default), Always or CrossSubnet.
	IPIPMode EncapMode `json:"ipipMode,omitempty"`
	// NATOutgoing masquerades traffic from the pool to destinations outside
	// every pool.
	NATOutgoing bool `json:"natOutgoing,omitempty"`
	// Disabled stops new allocations from the pool; existing addresses stay.
	Disabled bool `json:"disabled,omitempty"`
	// DisableBGPExport keeps routes for the pool out of BGP.
	DisableBGPExport bool `json:"disableBGPExport,omitempty"`
	// BlockSize is the prefix length of the blocks the pool is cut into and
	// handed to nodes (Calico's defaults: 26 for IPv4, 122 for IPv6; 0 means
	// the default).
	BlockSize int `json:"blockSize,omitempty"`
	// NodeSelector is a Calico selector over node labels choosing the nodes
	// that may allocate from the pool; empty means all().
	NodeSelector string `json:"nodeSelector,omitempty"`
	// AllowedUses lists what the pool's addresses may be used for:
	// Workload, Tunnel, LoadBalancer. Empty means [Workload, Tunnel].
	AllowedUses []IPPoolAllowedUse `json:"allowedUses,omitempty"`
	// AssignmentMode is Automatic (default: IPAM may pick the pool on its
	// own) or Manual (only when asked for by name).
	AssignmentMode string `json:"assignmentMode,omitempty"`
}

// EncapMode is the value of IPPoolSpec.VXLANMode and IPPoolSpec.IPIPMode.
type EncapMode string

// Encapsulation modes, as Calico spells them.
const (
	EncapNever       EncapMode = "Never"
	EncapAlways      EncapMode = "Always"
	EncapCrossSubnet EncapMode = "CrossSubnet"
)

// IPPoolAllowedUse is one entry of IPPoolSpec.AllowedUses.
type IPPoolAllowedUse string

// Allowed uses of an IP pool, as Calico spells them.
const (
	IPPoolUseWorkload     IPPoolAllowedUse = "Workload"
	IPPoolUseTunnel       IPPoolAllowedUse = "Tunnel"
	IPPoolUseLoadBalancer IPPoolAllowedUse = "LoadBalancer"
)
