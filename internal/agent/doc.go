// Package agent is the node agent's loop: it watches a datastore, feeds
// the changes into a policy.Set and an incremental compile.Compiler, and
// hands the resulting Ruleset to a dataplane backend, keeping the kernel
// equal to it. cmd/calyx-agent only wires it up; a library user can build
// an agent of their own from the same packages.
//
// # Lifecycle
//
//	New(cfg)            checks the config; nothing runs yet
//	Run(ctx)            watches, compiles, applies, serves; returns when ctx ends
//	(ctx cancelled)     enforcement stays in the kernel (the backend is not closed)
//
// Until the datastore reports EventSynced, nothing is written to the
// kernel: the dataplane's fail-closed defaults (or whatever a previous
// agent left there) hold. The first sync compiles the whole Set once;
// afterwards every batch of events costs what it touches (Compiler.Update).
//
// Two goroutines share the work and never wait for each other. The watch
// goroutine drains the store's events in batches, updates the Set and the
// Compiler and publishes the newest Ruleset with a generation number; it
// then raises a "dirty" signal that never blocks. The apply goroutine waits
// for that signal and applies the newest Ruleset: at once after a quiet
// spell, else no sooner than Config.Coalesce after the previous apply
// ended. A hundred events in quick succession cost a few applies (those
// arriving while the kernel is busy go in the next one), an isolated
// change waits for nothing, and a slow kernel never holds up the watch.
//
// After an apply error the apply goroutine retries with exponential backoff
// (Config.RetryMin to Config.RetryMax), asking the backend to Repair first
// when it is a backend.Repairer; every Config.ReconcileInterval it repairs
// drift (rules, chains, sets or a whole table changed from outside) and
// counts the repairs that found any. A repair holds the dataplane (the
// backend serialises it with Apply), so a slow one is followed by at least
// twenty times its duration before the next: periodic repairs take at most
// 5% of the time, and changes never queue behind back-to-back repairs.
//
// A store's EventError (a file with a typo, a lost connection) is logged,
// counted and shown in Status; the objects last read from that source stay
// in force. The error is cleared by the store's EventRecovered for that
// source (fixed, even back to its last good content, or removed), or by an
// upsert or delete read from it. When a watch ends while the agent runs,
// it watches again; the new initial listing is compared with what the
// agent holds: objects that disappeared meanwhile are deleted, and errors
// of sources it does not report again are cleared, at the new EventSynced.
//
// # Restart
//
// A new agent whose backend is opened on the same table, chain prefix or
// pin directory as its predecessor's finds the dataplane in place: its
// first Apply reads the kernel back, diffs and patches the difference in
// one transaction, so enforcement has no gap.
//
// # Endpoints from the CNI plugin
//
// The Agent implements endpointapi.Handler. Register turns the attachment
// into the pod's workload endpoint, Enforced answers true once a Ruleset
// holding that endpoint (with the registered interface and addresses) has
// been applied successfully, Status reports whether policy can be
// programmed (the datastore is in sync and the last apply succeeded).
//
// A pod can be known twice: from the datastore (a Pod object, with labels,
// named ports and service account) and from the CNI plugin (its addresses
// and host interface). The agent merges them into one Pod per
// namespace/name:
//
//   - labels, annotations, ports, service account and phase come from the
//     datastore object;
//   - the node is this agent's node, whatever the object says: the plugin
//     plumbed the pod here;
//   - the addresses are the ones the plugin allocated (the API object may
//     not carry them yet, and the kernel routes only those).
//
// A pod registered but absent from the datastore is enforced as a pod with
// no labels (namespace profile and namespace-wide policies apply to it);
// when the datastore object arrives its labels are merged in. Unregister
// drops the plugin's part and leaves the datastore's object as it was.
// The plugin's host interface must be compile.WorkloadInterface(namespace,
// pod), the name the compiler derives: an attachment outside Kubernetes
// (no namespace or pod name) cannot be policed and is refused.
//
// # Fail-safe ports
//
// The Ruleset carries FelixConfiguration's failsafeInboundHostPorts and
// failsafeOutboundHostPorts (Calico's defaults when unset). The agent adds
// Config.FailsafeInbound and Config.FailsafeOutbound to them (cmd/calyx-agent
// adds its own health port when it listens beyond loopback), so host
// endpoint policy never cuts a node off from SSH, etcd, DNS or its agent.
//
// # Observability
//
// Handler serves /livez, /readyz, /metrics (a private Prometheus registry,
// calyx_… metrics) and /status (the JSON Status that `calyxctl node
// status` prints). With a dataplane that reports verdicts (the eBPF
// dataplane's ring buffer) the agent reads them: calyx_flow_events_total
// counts them by action and reason, calyx_flow_events_lost_total what the
// full ring buffer dropped, and each is logged at debug level naming the
// policy and rule that decided.
package agent
