package cni_test

import (
	"fmt"

	"github.com/calyxnet/calyx/cni"
)

// A network configuration with a typo is refused with the key named, so a
// misspelt failOpenWithoutAgent never changes behaviour silently.
func ExampleParseNetConf() {
	conf, err := cni.ParseNetConf([]byte(`{
		"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "calyx-cni",
		"ipamStore": "bolt:/var/lib/calyx/ipam.db",
		"pools": [{"name": "default-ipv4", "cidr": "10.244.0.0/16"}],
		"policyTimeout": "5s"
	}`))
	fmt.Println(conf.IPAMStore, conf.Pools[0].CIDR, conf.PolicyTimeout, conf.FailOpenWithoutAgent, err)

	_, err = cni.ParseNetConf([]byte(`{"cniVersion": "1.1.0", "name": "n", "failOpenWithoutAgnet": true}`))
	fmt.Println(err)
	// Output:
	// bolt:/var/lib/calyx/ipam.db 10.244.0.0/16 5s false <nil>
	// network config: key "failOpenWithoutAgnet": unknown key
}
