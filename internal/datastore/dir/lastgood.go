package dir

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// lastGood keeps a copy of each policy file's last good content in a
// state directory (Options.StateDir), so that a process starting while a
// file is broken still has its last good objects: an agent restarted
// after a typo was pushed keeps enforcing what the file said before.
//
// Copies are named <hash of the file's path>-<hash of the content>.yaml;
// one per file, written when a new good content is first seen. The
// directory is listed once; afterwards the store knows its copies, so
// keeping one costs the same whatever the number of files.
type lastGood struct {
	dir    string
	log    *slog.Logger
	swept  bool
	copies map[string][]string // base → names of its copies; nil until listed
}

func (l *lastGood) base(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	sum := sha256.Sum256([]byte(p))
	return hex.EncodeToString(sum[:8])
}

// list reads the directory's copies once.
func (l *lastGood) list() {
	if l.copies != nil {
		return
	}
	l.copies = map[string][]string{}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		base, _, ok := strings.Cut(e.Name(), "-")
		if ok && strings.HasSuffix(e.Name(), ".yaml") {
			l.copies[base] = append(l.copies[base], e.Name())
		}
	}
}

// save records data as the good content of p.
func (l *lastGood) save(p string, sum [32]byte, data []byte) {
	l.list()
	base := l.base(p)
	name := base + "-" + hex.EncodeToString(sum[:8]) + ".yaml"
	if slices.Contains(l.copies[base], name) {
		return
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		l.log.Warn("cannot keep last good policy file", "file", p, "err", err)
		return
	}
	if err := writeAtomic(filepath.Join(l.dir, name), data, 0o600); err != nil {
		l.log.Warn("cannot keep last good policy file", "file", p, "err", err)
		return
	}
	l.removeOthers(base, name)
	l.copies[base] = []string{name}
}

// load returns the objects of p's last good content, if one was kept.
func (l *lastGood) load(p string) ([]entry, bool) {
	l.list()
	var newest string
	var newestInfo fs.FileInfo
	for _, m := range l.copies[l.base(p)] {
		m = filepath.Join(l.dir, m)
		info, err := os.Stat(m)
		if err == nil && (newestInfo == nil || info.ModTime().After(newestInfo.ModTime())) {
			newest, newestInfo = m, info
		}
	}
	if newest == "" {
		return nil, false
	}
	data, err := os.ReadFile(newest)
	if err != nil {
		return nil, false
	}
	entries, err := decode(data, p)
	if err != nil {
		return nil, false
	}
	l.log.Info("policy file has errors; using its last good version from before this process", "file", p, "copy", newest)
	return entries, true
}

// forget removes the copies of a file that was removed.
func (l *lastGood) forget(p string) {
	l.list()
	base := l.base(p)
	l.removeOthers(base, "")
	delete(l.copies, base)
}

func (l *lastGood) removeOthers(base, keep string) {
	for _, m := range l.copies[base] {
		if m != keep {
			_ = os.Remove(filepath.Join(l.dir, m))
		}
	}
}

// sweep removes the copies of files that no longer exist (removed while
// no process watched); once per store, after its first full read.
func (l *lastGood) sweep(paths []string) {
	if l.swept {
		return
	}
	l.swept = true
	l.list()
	keep := map[string]bool{}
	for _, p := range paths {
		keep[l.base(p)] = true
	}
	for base := range l.copies {
		if !keep[base] {
			l.removeOthers(base, "")
			delete(l.copies, base)
		}
	}
}
