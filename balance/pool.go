package balance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwdmux/fwdmux/proxy"
)

// Source is where the pool takes chunks from; *proxy.Ring satisfies it.
type Source interface {
	// Get waits for the next chunk; proxy.ErrRingClosed once intake is closed and
	// nothing is queued.
	Get(ctx context.Context) (*proxy.Chunk, error)
	// TryGet returns the next queued chunk or nil.
	TryGet() *proxy.Chunk
	// Requeue puts back, at the head, a chunk whose delivery failed.
	Requeue(c *proxy.Chunk)
}

// TagStats counts what upstreams acked for one tag.
type TagStats struct {
	Chunks int64 `json:"chunks"`
	Events int64 `json:"events"`
	Bytes  int64 `json:"bytes"`
}

type tagCounters struct{ chunks, events, bytes atomic.Int64 }

// recheck bounds how long the dispatcher, holding a chunk no upstream can take, waits
// without a signal: an open breaker turns half-open by the clock, not by an event.
const recheck = 200 * time.Millisecond

// Pool sends chunks from a Source to a set of upstream Forward servers. See the
// package documentation. All methods are safe for concurrent use.
type Pool struct {
	cfg Config
	src Source
	log *slog.Logger

	mu      sync.Mutex
	ups     []*upstream // in the order added
	byID    map[string]*upstream
	running bool
	runCtx  context.Context
	wg      *sync.WaitGroup
	avoid   map[*proxy.Chunk]*upstream // chunks re-queued after failing on an upstream
	scratch []*upstream
	peers   []*wrrPeer

	changed chan struct{} // one slot: capacity, eligibility or upstreams changed
	held    atomic.Int64  // chunks taken from src and neither done nor re-queued
	tags    sync.Map      // tag -> *tagCounters
}

// NewPool validates cfg (after WithDefaults) and returns a pool with no upstream; add
// them with Add. It starts no goroutine. A nil log discards.
func NewPool(cfg Config, src Source, log *slog.Logger) (*Pool, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("balance: nil source")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pool{
		cfg:     cfg,
		src:     src,
		log:     log.With("component", "balance"),
		byID:    make(map[string]*upstream),
		avoid:   make(map[*proxy.Chunk]*upstream),
		changed: make(chan struct{}, 1),
	}, nil
}

func (p *Pool) signal() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// backoff is the jittered exponential delay before connection attempt n (1-based):
// uniform in [d/2, d] with d = ReconnectMin * 2^(n-1), capped at ReconnectMax.
func (p *Pool) backoff(n int) time.Duration {
	d := p.cfg.ReconnectMin.D()
	for i := 1; i < n && d < p.cfg.ReconnectMax.D(); i++ {
		d *= 2
	}
	d = min(d, p.cfg.ReconnectMax.D())
	return d/2 + rand.N(d/2+1)
}

// Add registers an upstream, before or during Run. It validates u (after
// WithDefaults) and returns a *conf.FieldError for a bad field, or an error wrapping
// ErrDuplicate when the id exists. During Run the upstream connects at once.
func (p *Pool) Add(u UpstreamConfig) (UpstreamStatus, error) {
	u = u.WithDefaults()
	if err := u.Validate(); err != nil {
		return UpstreamStatus{}, err
	}
	up, err := newUpstream(p, u)
	if err != nil {
		return UpstreamStatus{}, err
	}
	p.mu.Lock()
	if _, ok := p.byID[u.ID]; ok {
		p.mu.Unlock()
		return UpstreamStatus{}, fmt.Errorf("upstream %s: %w", u.ID, ErrDuplicate)
	}
	p.byID[u.ID] = up
	p.ups = append(p.ups, up)
	if p.running {
		p.startLocked(up)
	}
	p.mu.Unlock()
	p.log.Info("upstream added", "upstream", u.ID, "address", u.Address, "weight", u.Weight, "standby", u.Standby)
	p.signal()
	return up.status(), nil
}

func (p *Pool) startLocked(u *upstream) {
	ctx, cancel := context.WithCancel(p.runCtx)
	u.cancel = cancel
	u.stopped = make(chan struct{})
	p.wg.Go(func() { u.run(ctx) })
}

// Remove takes the upstream out of rotation, closes its connection and re-queues
// its in-flight chunks for the others; it returns once that is done. An unknown id
// gives an error wrapping ErrNotFound.
func (p *Pool) Remove(id string) error {
	p.mu.Lock()
	u, ok := p.byID[id]
	if !ok {
		p.mu.Unlock()
		return fmt.Errorf("upstream %s: %w", id, ErrNotFound)
	}
	delete(p.byID, id)
	p.ups = slices.DeleteFunc(p.ups, func(x *upstream) bool { return x == u })
	for c, x := range p.avoid {
		if x == u {
			delete(p.avoid, c)
		}
	}
	u.removed.Store(true)
	cancel, stopped := u.cancel, u.stopped
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-stopped
	}
	p.log.Info("upstream removed", "upstream", id)
	p.signal()
	return nil
}

// List returns every upstream's status, in the order added.
func (p *Pool) List() []UpstreamStatus {
	p.mu.Lock()
	ups := slices.Clone(p.ups)
	p.mu.Unlock()
	out := make([]UpstreamStatus, 0, len(ups))
	for _, u := range ups {
		out = append(out, u.status())
	}
	return out
}

// Get returns one upstream's status.
func (p *Pool) Get(id string) (UpstreamStatus, bool) {
	p.mu.Lock()
	u, ok := p.byID[id]
	p.mu.Unlock()
	if !ok {
		return UpstreamStatus{}, false
	}
	return u.status(), true
}

// Eligible returns the number of eligible upstreams (breaker not open, phi under the
// threshold), primaries and standbys alike; 0 means chunks wait in the ring.
func (p *Pool) Eligible() int {
	p.mu.Lock()
	ups := slices.Clone(p.ups)
	p.mu.Unlock()
	n := 0
	for _, u := range ups {
		if u.eligible() {
			n++
		}
	}
	return n
}

// SentByTag returns what upstreams acked, per tag.
func (p *Pool) SentByTag() map[string]TagStats {
	out := make(map[string]TagStats)
	p.tags.Range(func(k, v any) bool {
		t := v.(*tagCounters)
		out[k.(string)] = TagStats{Chunks: t.chunks.Load(), Events: t.events.Load(), Bytes: t.bytes.Load()}
		return true
	})
	return out
}

// Run sends chunks until the source is closed and drained (every chunk acked: it
// returns nil) or ctx ends (the drain deadline: chunks in flight go back to the
// source, not Done, connections close, and it returns nil). It starts and waits for
// every goroutine of the pool. Run may be called once.
func (p *Pool) Run(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	p.mu.Lock()
	if p.running || p.runCtx != nil {
		p.mu.Unlock()
		return errors.New("balance: Run called twice")
	}
	p.running, p.runCtx, p.wg = true, rctx, &wg
	for _, u := range p.ups {
		p.startLocked(u)
	}
	p.mu.Unlock()
	defer func() {
		cancel()
		p.mu.Lock()
		p.running = false // no Add starts goroutines from now on
		p.mu.Unlock()
		wg.Wait()
	}()
	return p.dispatch(rctx)
}

// dispatch takes chunks from the source and routes each to an upstream connection.
func (p *Pool) dispatch(ctx context.Context) error {
	t := time.NewTimer(recheck)
	defer t.Stop()
	for {
		c, err := p.src.Get(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, proxy.ErrRingClosed) {
				return fmt.Errorf("balance: source: %w", err)
			}
			// Intake closed and nothing queued: done once nothing is in flight either.
			// held only grows here, so held == 0 and an empty queue after it is final.
			if p.held.Load() == 0 {
				if c = p.src.TryGet(); c == nil {
					p.log.Info("drained: every chunk delivered")
					return nil
				}
			} else {
				select {
				case <-p.changed:
				case <-ctx.Done():
					return nil
				}
				continue
			}
		}
		if c.Finished() {
			continue
		}
		p.held.Add(1)
		if !p.route(ctx, c, t) {
			p.src.Requeue(c)
			p.held.Add(-1)
			return nil
		}
	}
}

// route hands c to an upstream, waiting while none can take it. false: ctx ended.
func (p *Pool) route(ctx context.Context, c *proxy.Chunk, t *time.Timer) bool {
	var tried []*upstream
	for {
		u := p.pick(c, tried)
		if u != nil {
			if p.offer(u, c) {
				return true
			}
			tried = append(tried, u)
			continue
		}
		tried = tried[:0]
		t.Reset(recheck)
		select {
		case <-p.changed:
		case <-t.C:
		case <-ctx.Done():
			return false
		}
	}
}

// offer tries to put c on u's connection: a free slot and the breaker's permission.
func (p *Pool) offer(u *upstream, c *proxy.Chunk) bool {
	cn := u.conn.Load()
	if cn == nil || !cn.reserve(p.cfg.MaxInFlight) {
		return false
	}
	done, ok := u.br.allow()
	if !ok {
		cn.load.Add(-1)
		u.noteBreaker()
		return false
	}
	f := newFlight(c, done, u.flightSeq.Add(1))
	if !cn.enqueue(f) {
		cn.load.Add(-1)
		done(errNotSent)
		return false
	}
	return true
}

// pick chooses an upstream for c by smooth weighted round-robin among eligible,
// connected primaries with a free slot; standbys only when no primary is eligible.
// An upstream that just failed c is skipped while another is eligible. nil: none
// can take c now.
func (p *Pool) pick(c *proxy.Chunk, skip []*upstream) *upstream {
	p.mu.Lock()
	defer p.mu.Unlock()
	avoid := p.avoid[c]
	var chosen *upstream
	for _, standby := range []bool{false, true} {
		cands := p.scratch[:0]
		eligible := 0
		for _, u := range p.ups {
			if u.cfg.Standby != standby || !u.eligible() {
				continue
			}
			eligible++
			if slices.Contains(skip, u) {
				continue
			}
			cn := u.conn.Load()
			if cn == nil || cn.load.Load() >= int64(p.cfg.MaxInFlight) {
				continue
			}
			cands = append(cands, u)
		}
		if avoid != nil && eligible > 1 {
			cands = slices.DeleteFunc(cands, func(u *upstream) bool { return u == avoid })
		}
		p.scratch = cands
		if len(cands) > 0 {
			peers := p.peers[:0]
			for _, u := range cands {
				peers = append(peers, &u.wrr)
			}
			p.peers = peers
			chosen = cands[smoothPick(peers)]
			clear(p.peers)
			break
		}
		if eligible > 0 {
			break // primaries are eligible, just busy: wait for them
		}
	}
	clear(p.scratch[:cap(p.scratch)])
	if chosen != nil && avoid != nil {
		delete(p.avoid, c)
	}
	return chosen
}

// delivered finishes an acked chunk.
func (p *Pool) delivered(c *proxy.Chunk) {
	v, ok := p.tags.Load(c.Tag)
	if !ok {
		v, _ = p.tags.LoadOrStore(c.Tag, new(tagCounters))
	}
	t := v.(*tagCounters)
	t.chunks.Add(1)
	t.events.Add(int64(c.Count))
	t.bytes.Add(int64(len(c.Data)))
	c.Done(proxy.Acked)
	p.held.Add(-1)
	p.signal()
}

// requeue gives a chunk back to the source; failed marks u to be avoided for it.
func (p *Pool) requeue(c *proxy.Chunk, u *upstream, failed bool) {
	if failed {
		u.retries.Add(1)
		p.mu.Lock()
		if len(p.avoid) >= 4096 {
			for k := range p.avoid {
				if k.Finished() {
					delete(p.avoid, k)
				}
			}
		}
		if !u.removed.Load() {
			p.avoid[c] = u
		}
		p.mu.Unlock()
	}
	p.src.Requeue(c)
	p.held.Add(-1)
	p.signal()
}
