// Package e2e is the no-loss suite: it builds the real fwdmux binary, runs it between
// sequence-numbered producers (tailed files, Forward clients) and real Forward sinks,
// injects one fault per case, and asserts that every event sent arrived (duplicates are
// allowed and counted). Each case logs one line:
//
//	RESULT case=<name> sent=N received=N lost=0 dup=N peak_rss_kb=N
//
// Sizes are small by default so the package fits in `make test`; FWDMUX_SOAK=1 runs
// longer and faster (make soak). FWDMUX_BIN runs a prebuilt binary instead of building.
package e2e
