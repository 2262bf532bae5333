package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// LoadPaths reads files and directories (recursively: every .yaml, .yml
// and .json file, in lexical order) and decodes them as Decode does; "-"
// reads stdin. It is all or nothing like Decode: on any problem it returns
// no objects and every problem found across all the paths.
func LoadPaths(ctx context.Context, paths ...string) ([]Object, error) {
	res, err := LoadPathsWithOptions(ctx, DecodeOptions{}, paths...)
	return res.Objects, err
}

// LoadPathsWithOptions is LoadPaths with options, returning warnings and
// origins beside the objects.
func LoadPathsWithOptions(ctx context.Context, opts DecodeOptions, paths ...string) (Result, error) {
	var total Result
	var errs ValidationErrors
	var ioErrs []error
	for _, p := range paths {
		files, err := expandPath(p)
		if err != nil {
			ioErrs = append(ioErrs, err)
			continue
		}
		for _, f := range files {
			if err := ctx.Err(); err != nil {
				return Result{}, err
			}
			res, err := loadFile(f, opts)
			total.Warnings = append(total.Warnings, res.Warnings...)
			var verrs ValidationErrors
			switch {
			case err == nil:
				total.Objects = append(total.Objects, res.Objects...)
				total.Origins = append(total.Origins, res.Origins...)
			case errors.As(err, &verrs):
				errs = append(errs, verrs...)
			case errors.Is(err, ErrNoObjects):
				// Judged over all paths together below.
			default:
				ioErrs = append(ioErrs, err)
			}
		}
	}
	if len(ioErrs) > 0 || len(errs) > 0 {
		if len(errs) > 0 {
			ioErrs = append(ioErrs, errs)
		}
		total.Objects, total.Origins = nil, nil
		return total, errors.Join(ioErrs...)
	}
	if len(total.Objects) == 0 {
		return total, fmt.Errorf("%s: %w", strings.Join(paths, ", "), ErrNoObjects)
	}
	return total, nil
}

func loadFile(name string, opts DecodeOptions) (Result, error) {
	var r io.Reader
	if name == "-" {
		r = opts.Stdin
		if r == nil {
			r = os.Stdin
		}
	} else {
		f, err := os.Open(name)
		if err != nil {
			return Result{}, fmt.Errorf("read policy: %w", err)
		}
		defer f.Close()
		r = f
	}
	return DecodeWithOptions(r, name, opts)
}

// expandPath lists the files a path stands for.
func expandPath(p string) ([]string, error) {
	if p == "-" {
		return []string{p}, nil
	}
	info, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	if !info.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	sort.Strings(files)
	return files, nil
}
