package balance

import (
	"strings"
	"testing"
)

func TestSmoothPickSequence(t *testing.T) {
	peers := []*wrrPeer{{weight: 5}, {weight: 1}, {weight: 1}}
	var b strings.Builder
	for range 7 {
		b.WriteByte("abc"[smoothPick(peers)])
	}
	if got := b.String(); got != "aabacaa" {
		t.Fatalf("sequence %q, want nginx's aabacaa", got)
	}
}

func TestSmoothPickSpread(t *testing.T) {
	for _, weights := range [][]int{{1, 1}, {3, 1}, {1, 2, 3}, {1000, 1}, {7, 7, 1}} {
		peers := make([]*wrrPeer, len(weights))
		sum := 0
		for i, w := range weights {
			peers[i] = &wrrPeer{weight: w}
			sum += w
		}
		counts := make([]int, len(weights))
		n := sum * 100
		for range n {
			counts[smoothPick(peers)]++
		}
		for i, w := range weights {
			if want := w * 100; counts[i] != want {
				t.Errorf("weights %v: peer %d picked %d times, want %d", weights, i, counts[i], want)
			}
		}
	}
	if smoothPick(nil) != -1 {
		t.Error("no candidates: want -1")
	}
}
