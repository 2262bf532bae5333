// Command calyx-cni is the Calyx CNI plugin: the container runtime runs it
// for every pod attachment. All logic lives in package cni.
package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/calyxnet/calyx/cni"
)

func main() {
	p := &cni.Plugin{Stdout: os.Stdout, Hostname: os.Hostname}
	skel.PluginMainFuncs(p.Funcs(), version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "Calyx CNI plugin")
}
