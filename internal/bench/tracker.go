package bench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Key identifies one generated event: its stream and its sequence number.
type Key struct {
	Src string
	Seq int64
}

// Sent is what generators produced: stream name -> number of events (seq 0..n-1).
type Sent map[string]int64

// Total is the number of events over all streams.
func (s Sent) Total() int64 {
	var n int64
	for _, v := range s {
		n += v
	}
	return n
}

// Add merges o into s.
func (s Sent) Add(o Sent) {
	for k, v := range o {
		s[k] += v
	}
}

// Tracker records received sequence numbers per stream. Safe for concurrent use; several
// sinks may share one.
type Tracker struct {
	mu       sync.Mutex
	streams  map[string]*seqSet
	received int64
	dups     int64
	unkeyed  int64
	changed  chan struct{}
}

type seqSet struct {
	bits   []uint64
	unique int64
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{streams: map[string]*seqSet{}, changed: make(chan struct{}, 1)}
}

// Add records keys; events without a key (unkeyed) are counted apart.
func (t *Tracker) Add(keys []Key, unkeyed int) {
	if len(keys) == 0 && unkeyed == 0 {
		return
	}
	t.mu.Lock()
	t.unkeyed += int64(unkeyed)
	var last string
	var s *seqSet
	for _, k := range keys {
		if s == nil || k.Src != last {
			s = t.streams[k.Src]
			if s == nil {
				s = &seqSet{}
				t.streams[k.Src] = s
			}
			last = k.Src
		}
		t.received++
		if k.Seq < 0 {
			t.unkeyed++
			continue
		}
		w := int(k.Seq >> 6)
		if w >= len(s.bits) {
			s.bits = append(s.bits, make([]uint64, w-len(s.bits)+1+len(s.bits)/2)...)
		}
		m := uint64(1) << (k.Seq & 63)
		if s.bits[w]&m != 0 {
			t.dups++
		} else {
			s.bits[w] |= m
			s.unique++
		}
	}
	t.mu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// Received is the number of keyed events recorded, duplicates included.
func (t *Tracker) Received() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.received
}

// Report compares what arrived with what was sent.
type Report struct {
	Sent     int64
	Received int64 // every arrival, duplicates included
	Unique   int64 // distinct (src, seq) pairs arrived that were sent
	Dup      int64
	Missing  int64
	Unkeyed  int64 // arrivals without a recognisable src/seq
	// MissingSample names a few missing events, for the failure message.
	MissingSample []Key
}

func (r Report) String() string {
	s := fmt.Sprintf("sent=%d received=%d unique=%d lost=%d dup=%d", r.Sent, r.Received, r.Unique, r.Missing, r.Dup)
	if r.Unkeyed > 0 {
		s += fmt.Sprintf(" unkeyed=%d", r.Unkeyed)
	}
	if len(r.MissingSample) > 0 {
		s += fmt.Sprintf(" missing_sample=%v", r.MissingSample)
	}
	return s
}

// Report counts what is missing from sent. Events received for sequence numbers beyond
// what was sent are not counted as unique.
func (t *Tracker) Report(sent Sent) Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := Report{Sent: sent.Total(), Received: t.received, Dup: t.dups, Unkeyed: t.unkeyed}
	for _, src := range slices.Sorted(maps.Keys(sent)) {
		n := sent[src]
		s := t.streams[src]
		for i := int64(0); i < n; i++ {
			if s != nil && int(i>>6) < len(s.bits) && s.bits[i>>6]&(1<<(i&63)) != 0 {
				r.Unique++
				continue
			}
			r.Missing++
			if len(r.MissingSample) < 8 {
				r.MissingSample = append(r.MissingSample, Key{src, i})
			}
		}
	}
	return r
}

// Complete reports whether every sent event arrived.
func (t *Tracker) Complete(sent Sent) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for src, n := range sent {
		s := t.streams[src]
		if s == nil || s.unique < n {
			return false
		}
	}
	return true
}

// Wait blocks until every sent event arrived or ctx ends; it returns ctx.Err() then.
func (t *Tracker) Wait(ctx context.Context, sent Sent) error {
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for !t.Complete(sent) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.changed:
		case <-tk.C:
		}
	}
	return nil
}

// WaitQuiet waits until every sent event arrived and then no new event came for quiet
// (late duplicates), or ctx ends.
func (t *Tracker) WaitQuiet(ctx context.Context, sent Sent, quiet time.Duration) error {
	if err := t.Wait(ctx, sent); err != nil {
		return err
	}
	last := t.Received()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(quiet):
		}
		n := t.Received()
		if n == last {
			return nil
		}
		last = n
	}
}

// ParseEntries extracts the keys of concatenated msgpack [time, record] entries. The
// stream is the record's "src" field, or a "src=NAME" inside a string value, or the tag.
// It appends to keys and returns the number of entries without a sequence number.
func ParseEntries(keys []Key, tag []byte, entries []byte) ([]Key, int, error) {
	unkeyed := 0
	b := entries
	for len(b) > 0 {
		n, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil {
			return keys, unkeyed, fmt.Errorf("entry: %w", err)
		}
		if n < 2 {
			return keys, unkeyed, fmt.Errorf("entry has %d elements", n)
		}
		if rest, err = msgp.Skip(rest); err != nil { // time
			return keys, unkeyed, err
		}
		k, ok, rest2, err := recordKey(rest)
		if err != nil {
			return keys, unkeyed, err
		}
		rest = rest2
		for i := uint32(2); i < n; i++ {
			if rest, err = msgp.Skip(rest); err != nil {
				return keys, unkeyed, err
			}
		}
		b = rest
		if !ok {
			unkeyed++
			continue
		}
		if k.Src == "" {
			k.Src = string(tag)
		}
		keys = append(keys, k)
	}
	return keys, unkeyed, nil
}

// readStr reads a str or bin.
func readStr(b []byte) ([]byte, []byte, bool, error) {
	switch msgp.NextType(b) {
	case msgp.StrType:
		s, rest, err := msgp.ReadStringZC(b)
		return s, rest, true, err
	case msgp.BinType:
		s, rest, err := msgp.ReadBytesZC(b)
		return s, rest, true, err
	}
	rest, err := msgp.Skip(b)
	return nil, rest, false, err
}

func recordKey(b []byte) (Key, bool, []byte, error) {
	k := Key{Seq: -1}
	if msgp.NextType(b) != msgp.MapType {
		rest, err := msgp.Skip(b)
		return k, false, rest, err
	}
	n, b, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return k, false, b, err
	}
	for i := uint32(0); i < n; i++ {
		name, rest, ok, err := readStr(b)
		if err != nil {
			return k, false, rest, err
		}
		b = rest
		if !ok {
			if b, err = msgp.Skip(b); err != nil {
				return k, false, b, err
			}
			continue
		}
		switch t := msgp.NextType(b); {
		case string(name) == "seq" && (t == msgp.IntType || t == msgp.UintType):
			v, rest, err := msgp.ReadInt64Bytes(b)
			if err != nil {
				return k, false, rest, err
			}
			k.Seq, b = v, rest
		case t == msgp.StrType || t == msgp.BinType:
			v, rest, _, err := readStr(b)
			if err != nil {
				return k, false, rest, err
			}
			b = rest
			switch string(name) {
			case "seq":
				if x, err := strconv.ParseInt(string(v), 10, 64); err == nil {
					k.Seq = x
				}
			case "src":
				k.Src = string(v)
			default:
				scanInline(&k, v)
			}
		default:
			if b, err = msgp.Skip(b); err != nil {
				return k, false, b, err
			}
		}
	}
	return k, k.Seq >= 0, b, nil
}

// scanInline finds "src=NAME" and "seq=N" inside a free-form string.
func scanInline(k *Key, v []byte) {
	s := string(v)
	if k.Src == "" {
		if i := strings.Index(s, "src="); i >= 0 {
			j := i + 4
			for j < len(s) && isNameByte(s[j]) {
				j++
			}
			k.Src = s[i+4 : j]
		}
	}
	if k.Seq < 0 {
		if i := strings.Index(s, "seq="); i >= 0 {
			j := i + 4
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			if x, err := strconv.ParseInt(s[i+4:j], 10, 64); err == nil {
				k.Seq = x
			}
		}
	}
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}
