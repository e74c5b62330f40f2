package balance

// wrrPeer is one peer's smooth weighted round-robin state (nginx's algorithm):
// each pick, every candidate's current weight grows by its weight, the largest wins
// and loses the total. Over any window the picks follow the weights exactly and are
// spread out (5:1:1 gives a a b a c a a, not a a a a a b c).
type wrrPeer struct {
	weight  int
	current int
}

// smoothPick returns the index of the candidate to use, or -1 when there is none.
// Only candidates take part: a peer that is skipped (ineligible, full) neither gains
// nor loses current weight, so it does not burst when it comes back.
func smoothPick(cands []*wrrPeer) int {
	total, best := 0, -1
	for i, p := range cands {
		p.current += p.weight
		total += p.weight
		if best < 0 || p.current > cands[best].current {
			best = i
		}
	}
	if best >= 0 {
		cands[best].current -= total
	}
	return best
}
