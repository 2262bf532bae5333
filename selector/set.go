package selector

import "iter"

// smallPtrSet is the size up to which a ptrSet is a slice; most label
// values, selector buckets and per-item match sets are that small, and a
// slice costs less memory than a map and is much faster to iterate, which
// is what the index mostly does with its sets.
const smallPtrSet = 64

// ptrSet is a set of pointers: a slice while small, a map beyond.
// The zero value is an empty set.
type ptrSet[T comparable] struct {
	small []T
	big   map[T]struct{}
}

func (s *ptrSet[T]) len() int {
	if s.big != nil {
		return len(s.big)
	}
	return len(s.small)
}

func (s *ptrSet[T]) has(v T) bool {
	if s.big != nil {
		_, ok := s.big[v]
		return ok
	}
	for _, x := range s.small {
		if x == v {
			return true
		}
	}
	return false
}

// add adds v and reports whether it was missing.
func (s *ptrSet[T]) add(v T) bool {
	if s.big != nil {
		if _, ok := s.big[v]; ok {
			return false
		}
		s.big[v] = struct{}{}
		return true
	}
	if s.has(v) {
		return false
	}
	if len(s.small) < smallPtrSet {
		s.small = append(s.small, v)
		return true
	}
	s.big = make(map[T]struct{}, 2*smallPtrSet)
	for _, x := range s.small {
		s.big[x] = struct{}{}
	}
	s.small = nil
	s.big[v] = struct{}{}
	return true
}

// remove removes v and reports whether it was present.
func (s *ptrSet[T]) remove(v T) bool {
	if s.big != nil {
		if _, ok := s.big[v]; !ok {
			return false
		}
		delete(s.big, v)
		if len(s.big) == 0 {
			s.big = nil
		}
		return true
	}
	for i, x := range s.small {
		if x == v {
			last := len(s.small) - 1
			s.small[i] = s.small[last]
			var zero T
			s.small[last] = zero
			s.small = s.small[:last]
			if last == 0 {
				s.small = nil
			}
			return true
		}
	}
	return false
}

// all iterates over the set; the set must not change meanwhile.
func (s *ptrSet[T]) all() iter.Seq[T] {
	return func(yield func(T) bool) {
		if s.big != nil {
			for v := range s.big {
				if !yield(v) {
					return
				}
			}
			return
		}
		for _, v := range s.small {
			if !yield(v) {
				return
			}
		}
	}
}
