package ebpf

// Option changes how New opens the backend.
type Option func(*settings)

// settings are what Options set.
type settings struct {
	linkWatch  bool
	flowEvents bool
}

func defaultSettings() settings { return settings{linkWatch: true, flowEvents: true} }

func applyOptions(o []Option) settings {
	s := defaultSettings()
	for _, f := range o {
		if f != nil {
			f(&s)
		}
	}
	return s
}

// WithLinkWatch turns the link watcher on (the default) or off. With it,
// the backend subscribes to link creation in its network namespace and
// attaches the deny-all program (or, for an interface the last Apply
// named, the endpoint's own program) to every new workload interface as
// soon as it appears: a new pod is fail-closed from its first packet, and
// the Apply that registers it only switches its links with Link.Update.
// Without it, an interface created after an Apply is uncovered until the
// next Apply or Reconcile.
func WithLinkWatch(on bool) Option { return func(s *settings) { s.linkWatch = on } }

// WithFlowEvents turns flow events on (the default) or off: the verdict
// on every new flow (Allow) and every denied packet (Deny) is written to
// the ring buffer ReadEvents reads. Log rules write their events either
// way. Off, the programs are exactly those without event code.
func WithFlowEvents(on bool) Option { return func(s *settings) { s.flowEvents = on } }
