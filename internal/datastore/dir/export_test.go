package dir

// Walks returns how many times the store has walked the whole tree.
func Walks(s *Store) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.walks
}

// JournalKeep is how many writes the journal remembers.
const JournalKeep = journalKeep

// Decodes returns how many good file contents the store has decoded.
func Decodes(s *Store) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.decodes
}

// DocDecodes returns how many YAML documents the store has decoded.
func DocDecodes(s *Store) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.docDecodes
}

// SaveIndex writes the persisted index now, whatever the store decoded.
func SaveIndex(s *Store) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decoded = 1
	s.maybeSaveIndexLocked(1)
}
