//go:build linux

package ebpf

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/calyxnet/calyx/compile"
)

// watcher is the link watcher's goroutine: it reads link notifications of
// the backend's namespace and covers every new workload interface.
type watcher struct {
	quit     chan struct{} // closed: stop
	done     chan struct{} // closed when the goroutine returned
	quitOnce sync.Once
}

// signal tells the goroutine to stop; it does not wait.
func (w *watcher) signal() { w.quitOnce.Do(func() { close(w.quit) }) }

// stop tells the goroutine to stop and waits until it returned.
func (w *watcher) stop() {
	w.signal()
	<-w.done
}

// watchRcvBuf is the netlink socket's receive buffer: a burst of pods
// created at once must not overflow it (an overflow makes the watcher
// subscribe again and sweep every interface).
const watchRcvBuf = 4 << 20

// subscribe opens a link subscription in the backend's namespace; closing
// quit closes it, and then ch.
func (b *Backend) subscribe(quit chan struct{}) (chan netlink.LinkUpdate, error) {
	ch := make(chan netlink.LinkUpdate, 64)
	err := b.inNS(func() error {
		return netlink.LinkSubscribeWithOptions(ch, quit, netlink.LinkSubscribeOptions{
			ReceiveBufferSize:      watchRcvBuf,
			ReceiveBufferForceSize: true,
			ErrorCallback: func(err error) {
				b.log.Debug("ebpf: link watch", "err", err)
			},
		})
	})
	if err != nil {
		// Not forced: without CAP_NET_ADMIN the default size is used.
		err = b.inNS(func() error {
			return netlink.LinkSubscribeWithOptions(ch, quit, netlink.LinkSubscribeOptions{ReceiveBufferSize: watchRcvBuf})
		})
	}
	if err != nil {
		return nil, fmt.Errorf("ebpf: subscribe to links: %w", err)
	}
	return ch, nil
}

// startWatch subscribes to link changes of the backend's namespace; from
// its return on, every workload interface created is covered.
func (b *Backend) startWatch() error {
	w := &watcher{quit: make(chan struct{}), done: make(chan struct{})}
	sub := make(chan struct{})
	ch, err := b.subscribe(sub)
	if err != nil {
		return err
	}
	// Subscribed first, then listed: nothing created in between is
	// missed; events already queued apply to the list in order.
	ifaces, err := b.interfaces()
	if err != nil {
		close(sub)
		for range ch {
		}
		return err
	}
	b.watch = w
	b.setIfTable(ifaces)
	go b.watchLoop(w, ch, sub)
	return nil
}

// watchLoop covers new workload interfaces until w is stopped. When the
// subscription fails (the socket overflowed), it subscribes again and
// sweeps every interface, so none is missed.
func (b *Backend) watchLoop(w *watcher, ch chan netlink.LinkUpdate, sub chan struct{}) {
	defer close(w.done)
	for {
		select {
		case <-w.quit:
			close(sub)
			for range ch {
				// Drain: the subscription's reader exits once ch is closed.
			}
			return
		case u, ok := <-ch:
			if ok {
				if u.Link != nil {
					b.linkEvent(w, u.Header.Type, u.Attrs().Name, u.Attrs().Index)
				}
				continue
			}
			// The subscription ended by itself: subscribe again, then
			// cover what appeared meanwhile.
			close(sub)
			b.log.Warn("ebpf: link watch interrupted: subscribing again")
			for {
				sub = make(chan struct{})
				var err error
				if ch, err = b.subscribe(sub); err == nil {
					break
				}
				b.log.Warn("ebpf: link watch", "err", err)
				select {
				case <-w.quit:
					return
				case <-time.After(time.Second):
				}
			}
			b.sweep(w)
		}
	}
}

// linkEvent applies one link notification to the interface table and
// covers a new workload interface.
func (b *Backend) linkEvent(w *watcher, typ uint16, name string, idx int) {
	b.mu.Lock()
	if b.ifTable != nil {
		switch typ {
		case unix.RTM_NEWLINK:
			if old, ok := b.ifIndex[idx]; ok && old != name && b.ifTable[old] == idx {
				delete(b.ifTable, old) // renamed
			}
			b.ifTable[name] = idx
			b.ifIndex[idx] = name
		case unix.RTM_DELLINK:
			if b.ifTable[name] == idx {
				delete(b.ifTable, name)
			}
			delete(b.ifIndex, idx)
		}
	}
	b.mu.Unlock()
	if typ == unix.RTM_NEWLINK && strings.HasPrefix(name, compile.InterfacePrefix) {
		b.cover(w, name, idx)
	}
}

// sweep lists the namespace's interfaces again (the table may have missed
// notifications) and covers every workload interface.
func (b *Backend) sweep(w *watcher) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	ifaces, err := b.interfaces()
	if err == nil {
		b.setIfTable(ifaces)
	}
	b.mu.Unlock()
	if err != nil {
		b.log.Warn("ebpf: link watch", "err", err)
		return
	}
	for name, idx := range ifaces {
		if strings.HasPrefix(name, compile.InterfacePrefix) {
			b.cover(w, name, idx)
		}
	}
}

// cover attaches a program to both hooks of the interface name (index
// idx) unless the backend has links there already: the endpoint's own
// program if the last Apply named the interface, else deny-all. It holds
// b.mu, so it never runs during an Apply.
func (b *Backend) cover(w *watcher, name string, idx int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.quit:
		return
	default:
	}
	if b.closed {
		return
	}
	type job struct {
		ak   attachKey
		fp   string
		prog *ebpf.Program
		l    link.Link
		err  error
	}
	var jobs []*job
	for _, h := range []hook{hookIngress, hookEgress} {
		ak := attachKey{name, h}
		if a, ok := b.links[ak]; ok && a.ifindex == idx {
			continue
		}
		fp := denyFP
		if b.cur != nil {
			if f, ok := b.cur.attach[ak]; ok {
				if _, loaded := b.progs[f]; loaded {
					fp = f
				}
			}
		}
		prog, err := b.program(fp, h)
		if err != nil {
			b.log.Warn("ebpf: link watch", "interface", name, "err", err)
			return
		}
		jobs = append(jobs, &job{ak: ak, fp: fp, prog: prog})
	}
	if len(jobs) == 0 {
		return
	}
	// The endpoint's own program checks source addresses: add the
	// endpoint's before its program runs.
	if b.cur != nil && b.rs != nil {
		if key, ok := b.cur.owner[attachKey{name, hookIngress}]; ok {
			if ep := b.rs.Endpoints[key]; ep != nil {
				for _, a := range ep.Addrs {
					k := srcKey(uint32(idx), a)
					if err := b.objs.maps[refAddrs].Put(k, uint32(1)); err != nil {
						b.log.Warn("ebpf: link watch: source entry", "interface", name, "err", err)
						b.addrs = nil
						continue
					}
					if b.addrs != nil {
						b.addrs[k] = true
					}
				}
			}
		}
	}
	// Each attach waits for an RCU grace period: both at once.
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.l, j.err = b.attachRaw(j.ak, idx, j.prog)
		}()
	}
	wg.Wait()
	n := 0
	for _, j := range jobs {
		if j.err != nil {
			// Gone again already, or renamed: the next event or Apply
			// tells.
			if !errors.Is(j.err, unix.ENODEV) {
				b.log.Debug("ebpf: link watch", "interface", name, "err", j.err)
			}
			continue
		}
		if err := b.record(j.ak, idx, j.fp, j.l); err != nil {
			b.log.Warn("ebpf: link watch", "interface", name, "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		if err := b.writeMeta(); err != nil {
			b.log.Warn("ebpf: link watch", "err", err)
		}
		b.log.Debug("ebpf: link watch covered an interface", "interface", name, "links", n)
	}
}

// setIfTable replaces the interface table (b.mu held).
func (b *Backend) setIfTable(ifaces map[string]int) {
	b.ifTable = ifaces
	b.ifIndex = make(map[int]string, len(ifaces))
	for name, idx := range ifaces {
		b.ifIndex[idx] = name
	}
}
