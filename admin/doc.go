// Package admin is fwdmux's HTTP API: health, readiness, statistics, Prometheus
// metrics, and runtime changes of tail targets (/logs) and upstreams (/servers).
//
// Typical use, in cmd:
//
//	srv, err := admin.New(cfg.Admin, admin.Deps{
//		Targets:     targetsAdapter{tailManager}, // admin.Targets
//		Servers:     serversAdapter{pool},        // admin.Servers
//		Stats:       statsAdapter{...},           // admin.Stats
//		ConfigPaths: configuredLogPaths,          // their directories join the allow-list
//	}, logger)
//	if err != nil { ... }                          // e.g. a remote listen address without a token
//	if err := srv.Restore(); err != nil { ... }    // re-apply the runtime changes of the last run
//	if err := srv.Listen(); err != nil { ... }     // srv.Addr() is known from here
//	go srv.Serve(ctx)                              // returns nil once ctx ends
//	...
//	srv.SetDraining()                              // first signal: /ready answers 503
//
// # Contract
//
// openapi.yaml at the repository root describes every path, body, response and error;
// the handler tests validate each request and response they make against it.
// Errors are application/problem+json (RFC 9457) with an extension member "field"
// naming the request field or header at fault. Handlers return errors; one function,
// Server.writeError, renders them and logs each once.
//
// # Guarantees
//
//   - Mutating requests (POST, DELETE) need "Authorization: Bearer <token>" when
//     Config.Token is set (401 without it, 403 when wrong; compared in constant time).
//     New refuses a non-loopback Listen without a token unless AllowInsecureRemote.
//   - POST /logs only accepts paths under the allow-list (Config.AllowPaths, default
//     /var/log/**, plus the directories of Deps.ConfigPaths), checked after
//     filepath.Clean and after resolving symlinks in the longest existing prefix (for a
//     glob, its static directory); ".." is refused inside globs. A refusal is a 403
//     naming field "path".
//   - Request bodies are limited to Config.MaxBodyBytes (413); unknown JSON fields,
//     wrong types and trailing data are 400; a body that is not application/json is 415.
//     The http.Server has header, read, write and idle timeouts.
//   - A runtime change is saved to <StateDir>/runtime.json (temp file, fsync, rename,
//     fsync of the directory; mode 0600, since it holds shared keys) before it is
//     applied, and the previous state is saved back if applying fails: a change the
//     API reports as failed is neither running nor remembered, and one it reports as
//     done survives a restart. A failed save is a 500 and the change is not made.
//   - Items carry their source ("config" or "api"), tracked here; adapters need not.
//   - Shared keys and passwords are write-only: responses show shared_key_set and
//     password_set.
//
// # Concurrency
//
// All methods are safe for concurrent use. New starts no goroutine; Serve (or Run)
// owns the http.Server and waits for its graceful shutdown before returning. Reads
// take no lock (the runtime state is an immutable value behind an atomic pointer); one
// mutex, changeMu, serializes runtime changes and Restore, and is held across the state
// file write and the component call on purpose. The Targets, Servers and Stats
// implementations are called from request goroutines and must be safe for concurrent
// use. changeMu is held only around Add, Remove and the calls Restore makes; Stats and
// the List/Get of request handlers run under no admin lock.
package admin
