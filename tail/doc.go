// Package tail follows log files like `tail -F` and turns their lines into chunks of
// msgpack [time, record] entries for the ring, committing each file's position only
// after an upstream acknowledged the chunk that carried its lines.
//
// # Guarantees
//
//   - At least once. A file's committed offset moves only to the end of the last line of
//     a finished chunk (acked, or dropped by an explicit drop policy), in order: chunk
//     N+1 finished before chunk N waits for N. A chunk that is never finished never
//     moves the position. After kill -9 the lines re-sent are at most those in flight.
//   - Positions are written atomically (temp file, fsync, rename, fsync of the
//     directory) every Config.SavePositionsEvery when they changed, and when Run ends.
//     A failing write is logged once per failure streak; tailing goes on.
//   - A file is its device and inode, not its name. Rename rotation: the old file is
//     read to its end for rotate_wait while the new one is followed. copytruncate: a
//     file shorter than what was read restarts at 0, and the lines not read yet are
//     read from the copy, found by the file's signature (a hash of its first 1 KiB).
//     Deleted: read to its end and closed. The same holds across restarts: a committed
//     inode no longer at its path is found again in the same directory and read to its
//     end before the file now at the path; after copytruncate, offset 0 of the new
//     content is committed with its signature, so a copy made while down is found.
//   - Unseen generations. At restart, every file of a path's rotation family (the
//     name followed by '.', '-' or '_' and a suffix, not compressed, in the same
//     directory) that the position file does not know and that changed after the
//     target first ran is read from its head before the file now at the path: a
//     generation created and rotated away while we were down, or between two scans.
//     Files read to their end stay in the position file until they disappear, so a
//     normal restart reads none of them again; rotated files already there at the
//     target's first start are remembered as history, not read. While running, a
//     generation that exists at its path for less than one discovery pass is found
//     only by the next restart.
//   - Bounded memory. Put blocks while the ring is full and the tailer stops reading:
//     a file being read holds one 64 KiB buffer and one chunk (Config.ChunkBytes); an
//     idle file holds neither. Lines are cut at max_line_bytes (counted).
//   - No line is dropped for its content: a line that fails to parse is sent raw under
//     the message key and counted; invalid UTF-8 becomes U+FFFD unless kept by option.
//     Empty lines are skipped (they carry nothing); a last line without newline waits
//     for its newline, or is sent when the file is rotated away or deleted.
//
// # New files
//
// On a target's first start ever, files already there are followed from their end
// (read_from_head=false, fluentd's default: do not flood the upstream with history
// nobody asked for). Every file found later, and every file found after a restart of a
// target the position file knows, is read from its head: it was created while we were
// not looking, and its first lines are as new as its last.
//
// # Lifecycle
//
// NewManager validates and loads the position file and starts nothing. Run starts one
// goroutine per target (discovery: glob, fsnotify on the directories, a stat poll
// fallback) and one per followed file, and returns when its context ends, after all of
// them stopped and the positions were saved. Add and Remove work before and during Run.
//
// # Usage
//
//	ring := proxy.NewRing(proxy.RingConfig{})
//	m, err := tail.NewManager(tail.Config{PositionFile: "state/positions.json"}, ring, logger)
//	if err != nil { ... }
//	if _, err := m.Add(tail.TargetConfig{Path: "/var/log/app/*.log", Tag: "app.*", Format: "json"}); err != nil { ... }
//	go m.Run(intakeCtx) // cancel intakeCtx first at shutdown, then drain the ring,
//	// then m.SavePositions() so acks that arrived during the drain are kept.
package tail
