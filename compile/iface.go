package compile

import (
	"crypto/sha256"
	"encoding/hex"
)

// InterfacePrefix begins the name of every host-side workload interface
// Calyx creates. Dataplanes drop traffic from an interface with this prefix
// that the Ruleset does not know (a pod not yet programmed): fail closed.
const InterfacePrefix = "calyx"

// WorkloadInterface returns the host-side interface name of a pod: the
// prefix and the first 10 hex digits of SHA-256 over "namespace/name",
// 15 characters in all (the kernel's limit). The CNI plugin, the lab and the
// compiler all derive it this way, so the compiler knows a pod's interface
// from its identity alone.
func WorkloadInterface(namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	return InterfacePrefix + hex.EncodeToString(sum[:5])
}
