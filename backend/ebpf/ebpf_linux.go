//go:build linux

package ebpf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/netns"
)

// Name is the registry name of this backend.
const Name = "ebpf"

// BPFFS is where bpffs is mounted; pins live below it.
const BPFFS = "/sys/fs/bpf"

// LayoutVersion names the layout of the maps and pins. A backend of
// another layout version never reads this one's pins.
const LayoutVersion = "v1"

// denyFP is the fingerprint of the deny-all program.
const denyFP = "deny-all"

// PinDir returns the pin directory of a backend with Options.Name name
// ("calyx" if empty) and Options.NetNS netns ("" is the calling thread's
// network namespace): /sys/fs/bpf/calyx/v1/NAME@netINODE, INODE being the
// namespace's inode number (the N of "net:[N]"). bpffs is one per host,
// not per network namespace, so the namespace is part of the name: two
// backends of one name in two namespaces never share a map.
func PinDir(name, netns string) (string, error) {
	ino, err := netnsInode(netns)
	if err != nil {
		return "", fmt.Errorf("ebpf: %w", err)
	}
	return pinDir(name, ino), nil
}

func pinDir(name string, netnsInode uint64) string {
	if name == "" {
		name = "calyx"
	}
	return filepath.Join(BPFFS, "calyx", LayoutVersion, name+"@net"+strconv.FormatUint(netnsInode, 10))
}

// netnsInode returns the inode number of the network namespace at path,
// or of the calling thread's if path is "".
func netnsInode(path string) (uint64, error) {
	open := netns.Current
	if path != "" {
		open = func() (*netns.NS, error) { return netns.Open(path) }
	}
	ns, err := open()
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	return ns.Inode()
}

// checkName refuses an Options.Name that is not one path element.
func checkName(name string) error {
	if strings.ContainsAny(name, "/\x00") || len(name) > 200 {
		return fmt.Errorf("ebpf: Options.Name %q: must be one path element of at most 200 bytes, without '/'", name)
	}
	return nil
}

// lockPins creates dir and takes an exclusive lock on it, held until the
// returned file is closed (by Close, Release or the process's death). A second
// live backend of the same pins gets ErrPinsInUse instead of adopting
// maps the first is still writing.
func lockPins(dir string) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		err := os.MkdirAll(dir, 0o700)
		if errors.Is(err, os.ErrNotExist) && attempt < 5 {
			continue // a closing backend removed a parent meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("ebpf: pin directory: %w", err)
		}
		f, err := os.Open(dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && attempt < 5 {
				continue // a closing backend removed it, or a parent
			}
			return nil, fmt.Errorf("ebpf: pin directory: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			_ = f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w: %s is held by another backend of the same Options.Name in this network namespace (give each its own name)",
					ErrPinsInUse, dir)
			}
			return nil, fmt.Errorf("ebpf: lock pin directory %s: %w", dir, err)
		}
		// The lock is on the directory we opened; a backend that closed
		// meanwhile removed it. Lock the one at the path.
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(dir, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return f, nil
		}
		_ = f.Close()
		if attempt >= 5 {
			return nil, fmt.Errorf("ebpf: pin directory %s keeps being removed", dir)
		}
	}
}

// Backend is the eBPF dataplane. It is safe for concurrent use; calls are
// serialised.
type Backend struct {
	mu   sync.Mutex
	opts backend.Options
	log  *slog.Logger
	ns   *netns.NS
	dir  string
	// lock holds the exclusive lock on dir (see lockPins).
	lock   *os.File
	objs   *objects
	ids    *ids
	progs  map[string]*loaded
	links  map[attachKey]*attachment
	cur    *plan
	refs   map[string]map[uint64]stepRef
	closed bool
	last   Stats
	cfg    config
	cache  *progCache
	// dirtyLinks are links whose meta entry is not written yet.
	dirtyLinks map[attachKey]bool
	// addrs are the source-check entries as last written; nil: unknown.
	addrs map[[addrKeySize]byte]bool
	set   settings
	// rs is the Ruleset of the last Apply (read-only, as the IR is): the
	// link watcher reads an endpoint's addresses from it.
	rs *compile.Ruleset
	// prevRefs are the rule references of the plan before b.cur, so
	// events already in the ring buffer still resolve.
	prevRefs map[string]map[uint64]stepRef
	watch    *watcher
	// nl is the netlink handle interfaces uses.
	nl *netlink.Handle
	// ifTable is the namespace's interfaces (name → index) as the link
	// watcher's notifications tell, ifIndex the reverse; nil without
	// the watcher. Apply reads it instead of listing the interfaces.
	ifTable map[string]int
	ifIndex map[int]string
}

// attachment is one pinned TCX link.
type attachment struct {
	key     attachKey
	ifindex int
	link    link.Link
	fp      string
}

var (
	_ backend.Backend  = (*Backend)(nil)
	_ backend.Repairer = (*Backend)(nil)
	_ backend.Releaser = (*Backend)(nil)
)

// Open is a backend.Factory: New with the default Options.
func Open(ctx context.Context, opts backend.Options) (backend.Backend, error) {
	return New(ctx, opts)
}

// Factory returns a backend.Factory that opens the backend with o.
func Factory(o ...Option) backend.Factory {
	return func(ctx context.Context, opts backend.Options) (backend.Backend, error) {
		return New(ctx, opts, o...)
	}
}

// New opens the backend: it checks for TCX, mounts bpffs if needed, and
// adopts the maps and links a previous backend of the same name pinned.
// With the link watcher (the default, see WithLinkWatch) it then attaches
// the deny-all program to every workload interface created from now on;
// otherwise nothing is attached or changed until Apply. The watcher runs
// until Close, not until ctx is done.
func New(ctx context.Context, opts backend.Options, o ...Option) (*Backend, error) {
	if err := checkKernel(); err != nil {
		return nil, err
	}
	set := applyOptions(o)
	if err := checkName(opts.Name); err != nil {
		return nil, err
	}
	b := &Backend{opts: opts, log: opts.Logger, progs: map[string]*loaded{},
		links: map[attachKey]*attachment{}, ids: newIDs(), set: set,
		cfg: config{timeouts: DefaultTimeouts(), events: set.flowEvents}, cache: newProgCache(), dirtyLinks: map[attachKey]bool{}}
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.NetNS != "" {
		ns, err := netns.Open(opts.NetNS)
		if err != nil {
			return nil, fmt.Errorf("ebpf: %w", err)
		}
		b.ns = ns
	}
	if err := ensureBPFFS(); err != nil {
		b.closeNS()
		return nil, err
	}
	var ino uint64
	var err error
	if b.ns != nil {
		ino, err = b.ns.Inode()
	} else {
		ino, err = netnsInode("")
	}
	if err != nil {
		b.closeNS()
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	b.dir = pinDir(opts.Name, ino)
	if b.lock, err = lockPins(b.dir); err != nil {
		b.closeNS()
		return nil, err
	}
	objs, err := openObjects(b.dir)
	if err != nil {
		b.release()
		return nil, err
	}
	b.objs = objs
	if err := b.adopt(); err != nil {
		b.release()
		return nil, err
	}
	if set.linkWatch {
		if err := b.startWatch(); err != nil {
			b.release()
			return nil, err
		}
	}
	return b, nil
}

// checkKernel refuses kernels without TCX (Linux 6.6).
func checkKernel() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("ebpf: uname: %w", err)
	}
	return kernelError(unix.ByteSliceToString(u.Release[:]))
}

// kernelError refuses a kernel release older than 6.6.
func kernelError(rel string) error {
	major, minor, ok := kernelVersion(rel)
	if !ok {
		return nil // unknown format: let the attach tell
	}
	if major < 6 || major == 6 && minor < 6 {
		return fmt.Errorf("%w: the eBPF dataplane attaches with TCX, which needs Linux 6.6 or later (this kernel is %s)",
			backend.ErrNotSupported, rel)
	}
	return nil
}

func kernelVersion(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minorStr := parts[1]
	if i := strings.IndexFunc(minorStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorStr = minorStr[:i]
	}
	minor, err2 := strconv.Atoi(minorStr)
	return major, minor, err1 == nil && err2 == nil
}

// ensureBPFFS mounts bpffs at BPFFS unless it is there already.
func ensureBPFFS() error {
	var st unix.Statfs_t
	if err := unix.Statfs(BPFFS, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpffs", BPFFS, "bpf", 0, "mode=0700"); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%w: ebpf: mount bpffs at %s: %w", backend.ErrNotSupported, BPFFS, err)
	}
	return nil
}

// Name returns "ebpf".
func (b *Backend) Name() string { return Name }

// PinDir returns the directory the backend pins its maps and links in.
func (b *Backend) PinDir() string { return b.dir }

func (b *Backend) closeNS() {
	if b.ns != nil {
		_ = b.ns.Close()
		b.ns = nil
	}
}

// release closes every descriptor the backend holds; pins stay. It
// tells the link watcher to stop without waiting for it (the caller may
// hold b.mu, which the watcher takes).
func (b *Backend) release() {
	if b.watch != nil {
		b.watch.signal()
	}
	for _, a := range b.links {
		_ = a.link.Close()
	}
	for _, l := range b.progs {
		l.close()
	}
	if b.objs != nil {
		b.objs.close()
	}
	b.links, b.progs = map[attachKey]*attachment{}, map[string]*loaded{}
	if b.nl != nil {
		b.nl.Close()
		b.nl = nil
	}
	b.closeNS()
	if b.lock != nil {
		_ = b.lock.Close()
		b.lock = nil
	}
}

// inNS runs fn in the backend's network namespace.
func (b *Backend) inNS(fn func() error) error {
	if b.ns == nil {
		return fn()
	}
	return b.ns.Do(fn)
}

// Meta map: sha256 of a name → kind byte and payload.
const (
	metaID   = 1
	metaLink = 2
)

func metaKey(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// adopt reads what a previous backend pinned: set IDs and the links with
// the programs they run.
func (b *Backend) adopt() error {
	var k, v [32]byte
	linkFP := map[[32]byte]string{}
	byHash := map[[32]byte]uint32{}
	it := b.objs.maps[refMeta].Iterate()
	for it.Next(&k, &v) {
		switch v[0] {
		case metaID:
			id := uint32(v[1]) | uint32(v[2])<<8 | uint32(v[3])<<16 | uint32(v[4])<<24
			byHash[k] = id
			b.ids.used[id] = true
		case metaLink:
			linkFP[k] = hex.EncodeToString(v[1:17])
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("ebpf: read meta: %w", err)
	}
	b.ids.adopted = byHash
	stale := len(b.objs.replaced) > 0
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return fmt.Errorf("ebpf: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(b.dir, name)
		switch {
		case strings.HasPrefix(name, "link_"):
			ak, ok := parseLinkPin(name)
			if !ok {
				continue
			}
			l, err := link.LoadPinnedLink(path, nil)
			if err != nil {
				b.log.Warn("ebpf: unreadable pinned link: removing", "pin", path, "err", err)
				_ = os.Remove(path)
				continue
			}
			a := &attachment{key: ak, link: l}
			if info, err := l.Info(); err == nil && info.TCX() != nil {
				a.ifindex = int(info.TCX().Ifindex)
			}
			fp, ok := linkFP[metaKey("link:"+ak.String())]
			switch {
			case !ok || stale:
				// Unknown program: the next Apply replaces it.
			case fp == hex.EncodeToString(make([]byte, 16)):
				a.fp = denyFP
			default:
				a.fp = fp
				if _, have := b.progs[fp]; !have {
					if lp := b.adoptProgram(l, fp); lp != nil {
						b.progs[fp] = lp
					}
				}
			}
			b.links[ak] = a
		}
	}
	return b.dropForeignLinks()
}

// dropForeignLinks detaches, unpins and forgets adopted links that are
// attached in another network namespace: pins of a namespace that is
// gone, found here because the kernel gave its inode number to ours.
// Their interface index may equal one of ours, so only the kernel's list
// of the links on our interface's hook tells. A link that is attached
// nowhere (its interface deleted, or detached from outside) stays: Apply
// and Reconcile replace it.
func (b *Backend) dropForeignLinks() error {
	type hookAt struct {
		ifindex int
		at      ebpf.AttachType
	}
	here := map[hookAt]map[link.ID]bool{}
	return b.inNS(func() error {
		for _, ak := range slices.SortedFunc(maps.Keys(b.links), func(x, y attachKey) int { return strings.Compare(x.String(), y.String()) }) {
			a := b.links[ak]
			info, err := a.link.Info()
			if err != nil || info.TCX() == nil || info.TCX().Ifindex == 0 {
				continue
			}
			h := hookAt{int(info.TCX().Ifindex), ebpf.AttachType(info.TCX().AttachType)}
			ids, ok := here[h]
			if !ok {
				ids = map[link.ID]bool{}
				res, err := link.QueryPrograms(link.QueryOptions{Target: h.ifindex, Attach: h.at})
				if err != nil && !errors.Is(err, unix.ENODEV) {
					return fmt.Errorf("ebpf: query %s links on interface %d: %w", h.at, h.ifindex, err)
				}
				if res != nil {
					for _, p := range res.Programs {
						id, ok := p.LinkID()
						if !ok {
							ids = nil // the kernel does not tell: keep every link
							break
						}
						ids[id] = true
					}
				}
				here[h] = ids
			}
			if ids == nil || ids[info.ID] {
				continue
			}
			b.log.Warn("ebpf: pinned link is attached in another network namespace: detaching it", "link", ak.String(), "id", info.ID)
			_ = a.link.Detach()
			_ = a.link.Unpin()
			_ = a.link.Close()
			delete(b.links, ak)
		}
		return nil
	})
}

// adoptProgram rebuilds a loaded program from a pinned link and its pinned
// program array.
func (b *Backend) adoptProgram(l link.Link, fp string) *loaded {
	info, err := l.Info()
	if err != nil {
		return nil
	}
	prog, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return nil
	}
	lp := &loaded{fp: fp, entry: prog}
	if tm, err := ebpf.LoadPinnedMap(filepath.Join(b.dir, "tail_"+fp), nil); err == nil {
		lp.tail = tm
	}
	if info.Type == link.TCXType && info.TCX() != nil && ebpf.AttachType(info.TCX().AttachType) == ebpf.AttachTCXEgress {
		lp.hook = hookEgress
	}
	return lp
}

func linkPin(ak attachKey) string {
	h := "in"
	if ak.hook == hookEgress {
		h = "eg"
	}
	return "link_" + ak.iface + "_" + h
}

func parseLinkPin(name string) (attachKey, bool) {
	rest := strings.TrimPrefix(name, "link_")
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 {
		return attachKey{}, false
	}
	switch rest[i+1:] {
	case "in":
		return attachKey{rest[:i], hookIngress}, true
	case "eg":
		return attachKey{rest[:i], hookEgress}, true
	}
	return attachKey{}, false
}

// handle returns the backend's netlink handle in its namespace.
func (b *Backend) handle() (*netlink.Handle, error) {
	if b.nl != nil {
		return b.nl, nil
	}
	var h *netlink.Handle
	var err error
	if b.ns != nil {
		h, err = netlink.NewHandleAt(nlns.NsHandle(b.ns.Fd()))
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("ebpf: netlink: %w", err)
	}
	b.nl = h
	return h, nil
}

// Stats counts what one Apply did.
type Stats struct {
	// ProgramsLoaded counts programs loaded (each passed the verifier),
	// ProgramsFreed those no link runs any more.
	ProgramsLoaded, ProgramsFreed int
	// LinksAttached counts new TCX links, LinksUpdated links switched to
	// another program with Link.Update, LinksDetached links removed.
	LinksAttached, LinksUpdated, LinksDetached int
	// EntriesAdded and EntriesDeleted count map entries written and
	// deleted: set members, ports, source-check addresses.
	EntriesAdded, EntriesDeleted int
	// Instructions counts the instructions of the programs loaded.
	Instructions int
	// UnknownInterfaces are workload interfaces (compile.InterfacePrefix)
	// of no endpoint in the Ruleset: they got the deny-all program.
	UnknownInterfaces []string
	// MissingInterfaces are endpoints' interfaces that do not exist
	// (yet): nothing is attached for them until they appear.
	MissingInterfaces []string
	// Wait is the time Apply waited for the backend (the link watcher
	// attaching to a new interface, or another call); Render the time
	// spent generating programs and map entries, Interfaces listing the
	// node's interfaces, Load loading new programs (the verifier), Kernel
	// the rest: entries, links and pins; Links is part of it.
	Wait, Render, Load, Kernel, Interfaces, Links time.Duration
}

// LastApply returns what the last successful Apply did.
func (b *Backend) LastApply() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// interfaces lists the node's interfaces: name → index. The netlink
// handle stays open between calls (creating one in another namespace
// costs a thread switch into it); callers hold b.mu, or own b.
func (b *Backend) interfaces() (map[string]int, error) {
	h, err := b.handle()
	if err != nil {
		return nil, err
	}
	var links []netlink.Link
	for range 5 {
		links, err = h.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		b.nl.Close()
		b.nl = nil // a fresh handle next time
		return nil, fmt.Errorf("ebpf: list interfaces: %w", err)
	}
	out := make(map[string]int, len(links))
	for _, l := range links {
		out[l.Attrs().Name] = l.Attrs().Index
	}
	return out, nil
}

// maxLookups is how many interfaces Apply looks up one by one, when the
// watcher's table lacks them, before it lists them all instead.
const maxLookups = 8

// applyInterfaces returns the interfaces Apply works with. Without the
// watcher, a fresh list. With it, the watcher's table, which may lag
// behind the kernel by the notifications not read yet; so the interfaces
// of endpoints new in p (the CNI plugin created one a moment ago, maybe
// in place of an older one of the same name) and those the table lacks
// are looked up, so a pod is enforced when the Apply that registers it
// returns. More than maxLookups: a full list. An interface gone meanwhile
// is skipped by syncLinks; an unknown workload interface not heard of yet
// gets deny-all from the watcher when it hears of it.
func (b *Backend) applyInterfaces(p *plan) (map[string]int, error) {
	if b.ifTable == nil || b.cur == nil {
		return b.interfaces()
	}
	ifaces := maps.Clone(b.ifTable)
	var check []string
	for ak, key := range p.owner {
		if ak.hook != hookIngress {
			continue
		}
		if _, ok := ifaces[ak.iface]; !ok || b.cur.owner[ak] != key {
			check = append(check, ak.iface)
			if len(check) > maxLookups {
				return b.interfaces()
			}
		}
	}
	if len(check) == 0 {
		return ifaces, nil
	}
	h, err := b.handle()
	if err != nil {
		return nil, err
	}
	for _, name := range check {
		l, err := h.LinkByName(name)
		if err != nil {
			delete(ifaces, name) // not there (or unreadable): missing
			continue
		}
		idx := l.Attrs().Index
		ifaces[name] = idx
	}
	return ifaces, nil
}

// Apply makes the node enforce rs: programs whose code changed are loaded
// (the verifier checks them before anything changes), set entries are
// added, links are attached or switched atomically to their new program
// with Link.Update, then what is no longer used is removed. A membership
// change only writes map entries.
func (b *Backend) Apply(ctx context.Context, rs *compile.Ruleset) error {
	called := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	var st Stats
	start := time.Now()
	st.Wait = start.Sub(called)
	p, err := makePlan(rs, b.ids, b.cfg, b.cache)
	st.Render = time.Since(start)
	if err != nil {
		return err
	}
	t0 := time.Now()
	ifaces, err := b.applyInterfaces(p)
	if err != nil {
		return err
	}
	st.Interfaces = time.Since(t0)
	// Load what is new; nothing in the kernel changed yet.
	start = time.Now()
	var fresh []string
	for _, fp := range slices.Sorted(mapsKeys(p.progs)) {
		if _, ok := b.progs[fp]; ok {
			continue
		}
		l, err := b.objs.load(p.progs[fp])
		if err != nil {
			for _, f := range fresh {
				_ = b.progs[f].tail.Unpin()
				b.progs[f].close()
				delete(b.progs, f)
			}
			return fmt.Errorf("ebpf: %w", err)
		}
		if err := l.tail.Pin(filepath.Join(b.dir, "tail_"+fp)); err != nil {
			l.close()
			return fmt.Errorf("ebpf: pin program array: %w", err)
		}
		b.progs[fp] = l
		fresh = append(fresh, fp)
		st.ProgramsLoaded++
		st.Instructions += l.insns
	}
	st.Load = time.Since(start)
	start = time.Now()
	old := b.cur
	if old == nil {
		lpm, np, err := readEntries(b.objs)
		if err != nil {
			return err
		}
		old = &plan{raw: true, lpm: lpm, np: np}
	}
	addrs := sourceEntries(rs, p, ifaces)
	if b.addrs == nil {
		if b.addrs, err = readAddrs(b.objs); err != nil {
			return err
		}
	}
	addAddrs, delAddrs := diffSet(b.addrs, addrs)
	if err := putAll(b.objs.maps[refAddrs], addAddrs, 1); err != nil {
		b.addrs = nil
		return err
	}
	diff := entryDiff(old, p)
	if st.EntriesAdded, err = diff.add(b.objs); err != nil {
		b.cur = nil
		return err
	}
	t0 = time.Now()
	want := b.wantedLinks(p, ifaces, &st)
	if err := b.syncLinks(want, ifaces, &st); err != nil {
		b.cur = nil
		return err
	}
	st.Links = time.Since(t0)
	if st.EntriesDeleted, err = diff.del(b.objs); err != nil {
		b.cur = nil
		return err
	}
	for _, k := range delAddrs {
		if err := b.objs.maps[refAddrs].Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			b.addrs = nil
			return fmt.Errorf("ebpf: addrs: delete: %w", err)
		}
	}
	b.addrs = addrs
	st.EntriesAdded += len(addAddrs)
	st.EntriesDeleted += len(delAddrs)
	st.ProgramsFreed = b.freePrograms(p)
	b.ids.release(p.used)
	if err := b.writeMeta(); err != nil {
		b.cur = nil
		return err
	}
	st.Kernel = time.Since(start)
	b.prevRefs, b.refs = b.refs, p.refs
	b.rs = rs
	b.cur = p
	b.last = st
	b.log.Debug("ebpf apply", "programs", len(p.progs), "loaded", st.ProgramsLoaded, "links", len(b.links),
		"updated", st.LinksUpdated, "entries+", st.EntriesAdded, "entries-", st.EntriesDeleted)
	return nil
}

// sourceEntries are the addresses each pod may send from, on the index of
// its interface.
func sourceEntries(rs *compile.Ruleset, p *plan, ifaces map[string]int) map[[addrKeySize]byte]bool {
	out := map[[addrKeySize]byte]bool{}
	for ak, key := range p.owner {
		idx, ok := ifaces[ak.iface]
		ep := rs.Endpoints[key]
		if ak.hook != hookIngress || !ok || ep.Kind != compile.WorkloadEndpoint {
			continue
		}
		for _, a := range ep.Addrs {
			out[srcKey(uint32(idx), a)] = true
		}
	}
	return out
}

// diffSet lists the keys of want missing from have, and those of have
// missing from want.
func diffSet[K comparable](have, want map[K]bool) (add, del []K) {
	for k := range want {
		if !have[k] {
			add = append(add, k)
		}
	}
	for k := range have {
		if !want[k] {
			del = append(del, k)
		}
	}
	return add, del
}

// readAddrs reads the source-check map back.
func readAddrs(o *objects) (map[[addrKeySize]byte]bool, error) {
	out := map[[addrKeySize]byte]bool{}
	var k [addrKeySize]byte
	var v uint32
	it := o.maps[refAddrs].Iterate()
	for it.Next(&k, &v) {
		out[k] = true
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("ebpf: read addrs: %w", err)
	}
	return out, nil
}

// wantedLinks is every attachment p asks for on interfaces that exist,
// plus deny-all on workload interfaces p does not know.
func (b *Backend) wantedLinks(p *plan, ifaces map[string]int, st *Stats) map[attachKey]string {
	want := map[attachKey]string{}
	for ak, fp := range p.attach {
		if _, ok := ifaces[ak.iface]; !ok {
			if ak.hook == hookIngress {
				st.MissingInterfaces = append(st.MissingInterfaces, ak.iface)
			}
			continue
		}
		want[ak] = fp
	}
	p.hostLinks(ifaces, want)
	for name := range ifaces {
		if !strings.HasPrefix(name, compile.InterfacePrefix) {
			continue
		}
		for _, h := range []hook{hookIngress, hookEgress} {
			ak := attachKey{name, h}
			if _, ok := p.attach[ak]; !ok {
				want[ak] = denyFP
				if h == hookIngress {
					st.UnknownInterfaces = append(st.UnknownInterfaces, name)
				}
			}
		}
	}
	slices.Sort(st.MissingInterfaces)
	slices.Sort(st.UnknownInterfaces)
	return want
}

// program returns the program for fp, loading deny-all on demand.
func (b *Backend) program(fp string, h hook) (*ebpf.Program, error) {
	key := fp
	if fp == denyFP {
		key = denyFP + "-" + h.String()
		if l, ok := b.progs[key]; ok {
			return l.entry, nil
		}
		prog, err := b.objs.loadDenyAll(h, b.cfg.events)
		if err != nil {
			return nil, fmt.Errorf("ebpf: deny-all program: %w", err)
		}
		b.progs[key] = &loaded{fp: key, hook: h, entry: prog}
		return prog, nil
	}
	l, ok := b.progs[fp]
	if !ok || l.entry == nil {
		return nil, fmt.Errorf("ebpf: program %s not loaded", fp)
	}
	return l.entry, nil
}

// linkWorkers bounds concurrent attach and update syscalls: each waits
// for an RCU grace period in the kernel, so they overlap well.
const linkWorkers = 16

// syncLinks attaches, switches and detaches links so that exactly want is
// attached. Attaches and updates run concurrently.
func (b *Backend) syncLinks(want map[attachKey]string, ifaces map[string]int, st *Stats) error {
	keys := slices.SortedFunc(mapsKeys(want), cmpAttach)
	type job struct {
		ak     attachKey
		fp     string
		prog   *ebpf.Program
		update *attachment
		l      link.Link
		err    error
	}
	var jobs []*job
	for _, ak := range keys {
		fp := want[ak]
		prog, err := b.program(fp, ak.hook)
		if err != nil {
			return err
		}
		// Apply trusts what it attached (Reconcile reads links back).
		a, ok := b.links[ak]
		if ok && a.ifindex == ifaces[ak.dev()] && a.ifindex != 0 {
			if a.fp != fp {
				jobs = append(jobs, &job{ak: ak, fp: fp, prog: prog, update: a})
			}
			continue
		}
		jobs = append(jobs, &job{ak: ak, fp: fp, prog: prog})
	}
	sem := make(chan struct{}, linkWorkers)
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if j.update != nil {
				if err := j.update.link.Update(j.prog); err != nil {
					j.err = fmt.Errorf("ebpf: update link %s: %w", j.ak, err)
				}
				return
			}
			j.l, j.err = b.attachRaw(j.ak, ifaces[j.ak.dev()], j.prog)
		}()
	}
	wg.Wait()
	var errs []error
	for _, j := range jobs {
		switch {
		case j.err != nil && gone(j.err):
			// The interface went away since it was listed: nothing to
			// enforce there; a defunct link is dropped.
			b.log.Debug("ebpf: interface gone during apply", "link", j.ak.String(), "err", j.err)
			if j.update != nil {
				b.detach(j.ak)
			}
			if !slices.Contains(st.MissingInterfaces, j.ak.iface) {
				st.MissingInterfaces = append(st.MissingInterfaces, j.ak.iface)
			}
			delete(want, j.ak)
		case j.err != nil:
			errs = append(errs, j.err)
		case j.update != nil:
			j.update.fp = j.fp
			b.dirtyLinks[j.ak] = true
			st.LinksUpdated++
		default:
			if err := b.record(j.ak, ifaces[j.ak.dev()], j.fp, j.l); err != nil {
				errs = append(errs, err)
				continue
			}
			st.LinksAttached++
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, ak := range slices.SortedFunc(mapsKeys(b.links), cmpAttach) {
		if _, ok := want[ak]; ok {
			continue
		}
		b.detach(ak)
		st.LinksDetached++
	}
	return nil
}

// gone reports whether err says the interface no longer exists (an
// attach to it, or an update of a link whose interface was deleted).
func gone(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOLINK) || errors.Is(err, unix.ENXIO)
}

// alive reports whether a's link is still attached to its interface.
func (b *Backend) alive(a *attachment) bool {
	info, err := a.link.Info()
	if err != nil || info.TCX() == nil {
		return false
	}
	return int(info.TCX().Ifindex) == a.ifindex && a.ifindex != 0
}

// attach creates a new link (replacing one that is gone or on an old
// interface) and pins it.
func (b *Backend) attach(ak attachKey, ifindex int, fp string, prog *ebpf.Program) error {
	l, err := b.attachRaw(ak, ifindex, prog)
	if err != nil {
		return err
	}
	return b.record(ak, ifindex, fp, l)
}

// attachRaw attaches prog in the backend's namespace; safe to call
// concurrently.
func (b *Backend) attachRaw(ak attachKey, ifindex int, prog *ebpf.Program) (link.Link, error) {
	var l link.Link
	err := b.inNS(func() error {
		var err error
		l, err = link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: attachType(ak.hook), Anchor: link.Head()})
		return err
	})
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("%w: ebpf: TCX: %w", backend.ErrNotSupported, err)
		}
		return nil, fmt.Errorf("ebpf: attach %s: %w", ak, err)
	}
	return l, nil
}

// record pins a new link in place of the old one (which detaches).
func (b *Backend) record(ak attachKey, ifindex int, fp string, l link.Link) error {
	path := filepath.Join(b.dir, linkPin(ak))
	if old, ok := b.links[ak]; ok {
		_ = old.link.Unpin()
		_ = old.link.Close()
		delete(b.links, ak)
	}
	_ = os.Remove(path)
	if err := l.Pin(path); err != nil {
		_ = l.Close()
		b.dirtyLinks[ak] = true
		return fmt.Errorf("ebpf: pin link %s: %w", ak, err)
	}
	b.links[ak] = &attachment{key: ak, ifindex: ifindex, link: l, fp: fp}
	b.dirtyLinks[ak] = true
	return nil
}

// detach removes a link: unpinned and closed, the kernel detaches it.
func (b *Backend) detach(ak attachKey) {
	a := b.links[ak]
	_ = a.link.Unpin()
	_ = os.Remove(filepath.Join(b.dir, linkPin(ak)))
	_ = a.link.Close()
	delete(b.links, ak)
	b.dirtyLinks[ak] = true
}

// freePrograms closes programs no link runs and p does not use.
func (b *Backend) freePrograms(p *plan) int {
	inUse := map[string]bool{}
	// Programs of endpoints whose interface is not there yet stay loaded
	// for when it appears.
	for fp := range p.progs {
		inUse[fp] = true
	}
	for _, a := range b.links {
		inUse[a.fp] = true
		if a.fp == denyFP {
			inUse[denyFP+"-"+a.key.hook.String()] = true
		}
	}
	if b.watch != nil {
		// The watcher attaches deny-all to every new interface: keep it
		// loaded.
		inUse[denyFP+"-"+hookIngress.String()] = true
		inUse[denyFP+"-"+hookEgress.String()] = true
	}
	n := 0
	for fp, l := range b.progs {
		if inUse[fp] {
			continue
		}
		if l.tail != nil {
			_ = l.tail.Unpin()
		}
		_ = os.Remove(filepath.Join(b.dir, "tail_"+fp))
		l.close()
		delete(b.progs, fp)
		n++
	}
	return n
}

// writeMeta records IDs and link programs so a new backend adopts them,
// writing only what changed since the last write.
func (b *Backend) writeMeta() error {
	m := b.objs.maps[refMeta]
	for _, name := range b.ids.put {
		id, ok := b.ids.byName[name]
		if !ok {
			continue
		}
		var v [32]byte
		v[0] = metaID
		v[1], v[2], v[3], v[4] = byte(id), byte(id>>8), byte(id>>16), byte(id>>24)
		if err := m.Put(idKey(name), v); err != nil {
			return fmt.Errorf("ebpf: meta: %w", err)
		}
	}
	for _, k := range b.ids.del {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("ebpf: meta: %w", err)
		}
	}
	b.ids.put, b.ids.del = nil, nil
	for ak := range b.dirtyLinks {
		k := metaKey("link:" + ak.String())
		a, ok := b.links[ak]
		if !ok {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("ebpf: meta: %w", err)
			}
			continue
		}
		var v [32]byte
		v[0] = metaLink
		if a.fp != denyFP {
			if raw, err := hex.DecodeString(a.fp); err == nil {
				copy(v[1:17], raw)
			}
		}
		if err := m.Put(k, v); err != nil {
			return fmt.Errorf("ebpf: meta: %w", err)
		}
	}
	clear(b.dirtyLinks)
	return nil
}

// Check generates every program rs needs and loads it without attaching
// anything: the kernel's verifier is the dry run.
func (b *Backend) Check(ctx context.Context, rs *compile.Ruleset) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	p, err := makePlan(rs, b.ids.clone(), b.cfg)
	if err != nil {
		return err
	}
	for _, fp := range slices.Sorted(mapsKeys(p.progs)) {
		if _, ok := b.progs[fp]; ok {
			continue
		}
		l, err := b.objs.load(p.progs[fp])
		if err != nil {
			return fmt.Errorf("ebpf: check: %w", err)
		}
		l.close()
	}
	return nil
}

// Release closes every descriptor the backend holds, stops the link
// watcher and lets go of the pin directory's lock, leaving pins, links and
// maps in place: enforcement goes on as if the process had died, and a new
// Backend of the same name in the same namespace adopts it. Afterwards the
// Backend returns backend.ErrClosed; Close after Release does nothing.
func (b *Backend) Release(ctx context.Context) error {
	return b.finish(func() error { b.release(); return nil })
}

// Close detaches and unpins everything the backend owns: its links,
// programs and maps, and its pin directory. Closing twice is a no-op.
func (b *Backend) Close(ctx context.Context) error { return b.finish(b.uninstall) }

// finish stops the link watcher, then, unless the backend is closed
// already, marks it closed and runs fn holding b.mu.
func (b *Backend) finish(fn func() error) error {
	// The watcher takes b.mu: stop it first, without holding it.
	b.mu.Lock()
	w := b.watch
	b.mu.Unlock()
	if w != nil {
		w.stop()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	return fn()
}

// uninstall is Close's work, under b.mu.
func (b *Backend) uninstall() error {
	for ak := range b.links {
		b.detach(ak)
	}
	for fp, l := range b.progs {
		if l.tail != nil {
			_ = l.tail.Unpin()
		}
		_ = os.Remove(filepath.Join(b.dir, "tail_"+fp))
	}
	var errs []error
	for name, m := range b.objs.maps {
		if err := m.Unpin(); err != nil {
			errs = append(errs, err)
		}
		_ = os.Remove(filepath.Join(b.dir, name))
	}
	// Remove the directory before letting go of its lock: a backend
	// opening the same name meanwhile gets ErrPinsInUse or a new
	// directory, never half-removed pins.
	if err := os.RemoveAll(b.dir); err != nil {
		errs = append(errs, err)
	}
	// Parents only if empty: other backends may live there.
	_ = os.Remove(filepath.Dir(b.dir))
	_ = os.Remove(filepath.Dir(filepath.Dir(b.dir)))
	b.release()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ebpf: close: %w", err)
	}
	return nil
}
