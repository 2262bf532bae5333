package dir

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// lastGood keeps a copy of each policy file's last good content in a
// state directory (Options.StateDir), so that a process starting while a
// file is broken still has its last good objects: an agent restarted
// after a typo was pushed keeps enforcing what the file said before.
//
// Copies are named <hash of the file's path>-<hash of the content>.yaml;
// one per file, written when a new good content is first seen.
type lastGood struct {
	dir   string
	log   *slog.Logger
	swept bool
}

func (l *lastGood) base(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	sum := sha256.Sum256([]byte(p))
	return hex.EncodeToString(sum[:8])
}

// save records data as the good content of p.
func (l *lastGood) save(p string, sum [32]byte, data []byte) {
	base := l.base(p)
	name := filepath.Join(l.dir, base+"-"+hex.EncodeToString(sum[:8])+".yaml")
	if _, err := os.Lstat(name); err == nil {
		return
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		l.log.Warn("cannot keep last good policy file", "file", p, "err", err)
		return
	}
	if err := writeAtomic(name, data, 0o600); err != nil {
		l.log.Warn("cannot keep last good policy file", "file", p, "err", err)
		return
	}
	l.removeOthers(base, name)
}

// load returns the objects of p's last good content, if one was kept.
func (l *lastGood) load(p string) ([]entry, bool) {
	matches, _ := filepath.Glob(filepath.Join(l.dir, l.base(p)+"-*.yaml"))
	var newest string
	var newestInfo fs.FileInfo
	for _, m := range matches {
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
func (l *lastGood) forget(p string) { l.removeOthers(l.base(p), "") }

func (l *lastGood) removeOthers(base, keep string) {
	matches, _ := filepath.Glob(filepath.Join(l.dir, base+"-*.yaml"))
	for _, m := range matches {
		if m != keep {
			_ = os.Remove(m)
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
	keep := map[string]bool{}
	for _, p := range paths {
		keep[l.base(p)] = true
	}
	entries, err := os.ReadDir(l.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	for _, e := range entries {
		base, _, ok := strings.Cut(e.Name(), "-")
		if ok && strings.HasSuffix(e.Name(), ".yaml") && !keep[base] {
			_ = os.Remove(filepath.Join(l.dir, e.Name()))
		}
	}
}
