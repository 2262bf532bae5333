//go:build !linux

package cni

import (
	"errors"
	"net"
	"net/netip"

	"github.com/calyxnet/calyx/internal/netns"
)

var errNoLinks = errors.New("cni: interfaces are only supported on Linux")

type linkInfo struct {
	mac   net.HardwareAddr
	up    bool
	addrs []netip.Addr
}

func linkMAC(*netns.NS, string) (net.HardwareAddr, error) { return nil, errNoLinks }

func linkIn(*netns.NS, string) (linkInfo, error) { return linkInfo{}, errNoLinks }

func setOwner(*netns.NS, string, string) error { return errNoLinks }

func owner(*netns.NS, string) (string, bool, error) { return "", false, errNoLinks }

func ownedLinks(*netns.NS, string) (map[string]string, error) { return nil, errNoLinks }
