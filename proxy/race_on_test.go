//go:build race

package proxy

// raceEnabled: the race detector changes allocation counts; exact allocation checks
// run without it.
const raceEnabled = true
