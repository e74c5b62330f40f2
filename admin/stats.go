package admin

import (
	"fmt"
	"net/http"
	"runtime"
	"time"
)

type statusBody struct {
	Status string `json:"status"`
}

// getHealth is liveness: the process serves HTTP.
func (s *Server) getHealth(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, statusBody{Status: "ok"})
}

// getReady is readiness: 503 with the reason once shutdown began or while no output
// can take events.
func (s *Server) getReady(w http.ResponseWriter, r *http.Request) error {
	if s.draining.Load() {
		return &apiError{status: http.StatusServiceUnavailable, slug: "not-ready", detail: "shutting down"}
	}
	if ok, reason := s.ready(); !ok {
		if reason == "" {
			reason = "not ready"
		}
		return &apiError{status: http.StatusServiceUnavailable, slug: "not-ready", detail: reason}
	}
	return writeJSON(w, http.StatusOK, statusBody{Status: "ready"})
}

// snapshot is Stats.Snapshot with the admin-owned fields filled and nil lists made
// empty, as /stats, / and /metrics show it.
func (s *Server) snapshot() Snapshot {
	snap := s.deps.Stats.Snapshot()
	st := s.state.Load()
	snap.Servers = fillServers(snap.Servers, st)
	if snap.Files == nil {
		snap.Files = []FileStatus{}
	}
	if snap.Sent == nil {
		snap.Sent = map[string]SentStats{}
	}
	if snap.Receiver.Errors == nil {
		snap.Receiver.Errors = map[string]int64{}
	}
	if snap.StartTime.IsZero() {
		snap.StartTime = s.start
	}
	if snap.Output == "" {
		snap.Output = OutputForward
	}
	snap.UptimeSeconds = time.Since(snap.StartTime).Seconds()
	return snap
}

func (s *Server) getStats(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, s.snapshot())
}

// The shape of fluent-agent-hydra's monitor ("/"), key for key, so checks written for
// hydra keep working.
type hydraStats struct {
	Sent     map[string]hydraSent `json:"sent"`
	Files    map[string]hydraFile `json:"files"`
	Servers  []hydraServer        `json:"servers"`
	Receiver hydraReceiver        `json:"receiver"`
}

type hydraSent struct {
	Messages int64 `json:"messages"`
	Bytes    int64 `json:"bytes"`
	Sents    int64 `json:"sents"`
}

type hydraFile struct {
	Tag      string `json:"tag"`
	Position int64  `json:"position"`
	Error    string `json:"error"`
}

type hydraServer struct {
	Address string `json:"address"`
	Alive   bool   `json:"alive"`
	Error   string `json:"error"`
}

type hydraReceiver struct {
	Address            string `json:"address"`
	TotalConnections   int64  `json:"total_connections"`
	CurrentConnections int64  `json:"current_connections"`
	Messages           int64  `json:"messages"`
	Disposed           int64  `json:"disposed"`
	Buffered           int64  `json:"buffered"`
	MaxBufferMessages  int64  `json:"max_buffer_messages"`
}

// toHydra maps a snapshot to hydra's keys: messages are events, sents are chunks, a
// file's position is its committed offset, alive is eligible, disposed counts dropped
// events, and the buffer is the ring counted in chunks.
func toHydra(snap Snapshot) hydraStats {
	h := hydraStats{
		Sent:    make(map[string]hydraSent, len(snap.Sent)),
		Files:   make(map[string]hydraFile, len(snap.Files)),
		Servers: make([]hydraServer, 0, len(snap.Servers)),
		Receiver: hydraReceiver{
			Address:            snap.Receiver.Address,
			TotalConnections:   snap.Receiver.Connections,
			CurrentConnections: snap.Receiver.ActiveConnections,
			Messages:           snap.Receiver.Events,
			Disposed:           snap.Ring.DroppedEvents,
			Buffered:           int64(snap.Ring.Chunks),
			MaxBufferMessages:  int64(snap.Ring.CapacityChunks),
		},
	}
	for tag, v := range snap.Sent {
		h.Sent[tag] = hydraSent{Messages: v.Events, Bytes: v.Bytes, Sents: v.Chunks}
	}
	for _, f := range snap.Files {
		h.Files[f.Path] = hydraFile{Tag: f.Tag, Position: f.CommittedOffset, Error: f.LastError}
	}
	for _, sv := range snap.Servers {
		e := sv.LastError
		if e != "" && sv.LastErrorTime != nil {
			e = fmt.Sprintf("[%s] %s", sv.LastErrorTime, e) // hydra's monitorError format
		}
		h.Servers = append(h.Servers, hydraServer{Address: sv.Address, Alive: sv.Eligible, Error: e})
	}
	return h
}

func (s *Server) getHydra(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, toHydra(s.snapshot()))
}

// systemStats has the keys of golang-stats-api-handler, which hydra served on /system.
// gc_pause lists the pauses (ms) since the previous call, and the per-second figures
// are over the same interval, as there.
type systemStats struct {
	Time             int64     `json:"time"`
	GoVersion        string    `json:"go_version"`
	GoOS             string    `json:"go_os"`
	GoArch           string    `json:"go_arch"`
	CPUNum           int       `json:"cpu_num"`
	GoroutineNum     int       `json:"goroutine_num"`
	Gomaxprocs       int       `json:"gomaxprocs"`
	CgoCallNum       int64     `json:"cgo_call_num"`
	MemoryAlloc      uint64    `json:"memory_alloc"`
	MemoryTotalAlloc uint64    `json:"memory_total_alloc"`
	MemorySys        uint64    `json:"memory_sys"`
	MemoryLookups    uint64    `json:"memory_lookups"`
	MemoryMallocs    uint64    `json:"memory_mallocs"`
	MemoryFrees      uint64    `json:"memory_frees"`
	MemoryStack      uint64    `json:"memory_stack"`
	HeapAlloc        uint64    `json:"heap_alloc"`
	HeapSys          uint64    `json:"heap_sys"`
	HeapIdle         uint64    `json:"heap_idle"`
	HeapInuse        uint64    `json:"heap_inuse"`
	HeapReleased     uint64    `json:"heap_released"`
	HeapObjects      uint64    `json:"heap_objects"`
	GCNext           uint64    `json:"gc_next"`
	GCLast           uint64    `json:"gc_last"`
	GCNum            uint32    `json:"gc_num"`
	GCPerSecond      float64   `json:"gc_per_second"`
	GCPausePerSecond float64   `json:"gc_pause_per_second"`
	GCPause          []float64 `json:"gc_pause"`
}

// sysSample is the previous /system call, for the per-interval figures.
type sysSample struct {
	at         time.Time
	numGC      uint32
	pauseTotal uint64
}

func (s *Server) systemStats() systemStats {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	now := time.Now()
	prev := s.sysLast.Swap(&sysSample{at: now, numGC: m.NumGC, pauseTotal: m.PauseTotalNs})
	if prev == nil {
		prev = &sysSample{at: s.start}
	}
	st := systemStats{
		Time:             now.UnixNano(),
		GoVersion:        runtime.Version(),
		GoOS:             runtime.GOOS,
		GoArch:           runtime.GOARCH,
		CPUNum:           runtime.NumCPU(),
		GoroutineNum:     runtime.NumGoroutine(),
		Gomaxprocs:       runtime.GOMAXPROCS(0),
		CgoCallNum:       runtime.NumCgoCall(),
		MemoryAlloc:      m.Alloc,
		MemoryTotalAlloc: m.TotalAlloc,
		MemorySys:        m.Sys,
		MemoryLookups:    m.Lookups,
		MemoryMallocs:    m.Mallocs,
		MemoryFrees:      m.Frees,
		MemoryStack:      m.StackInuse,
		HeapAlloc:        m.HeapAlloc,
		HeapSys:          m.HeapSys,
		HeapIdle:         m.HeapIdle,
		HeapInuse:        m.HeapInuse,
		HeapReleased:     m.HeapReleased,
		HeapObjects:      m.HeapObjects,
		GCNext:           m.NextGC,
		GCLast:           m.LastGC,
		GCNum:            m.NumGC,
		GCPause:          []float64{},
	}
	newGC := m.NumGC - prev.numGC
	if m.NumGC < prev.numGC { // a concurrent call swapped in a later sample
		newGC = 0
	}
	if interval := now.Sub(prev.at).Seconds(); interval > 0 && newGC > 0 {
		st.GCPerSecond = float64(newGC) / interval
		st.GCPausePerSecond = float64(m.PauseTotalNs-prev.pauseTotal) / 1e6 / interval
	}
	n := min(newGC, uint32(len(m.PauseNs)))
	for i := m.NumGC - n + 1; i <= m.NumGC; i++ { // PauseNs is a ring indexed by (NumGC+255)%256
		st.GCPause = append(st.GCPause, float64(m.PauseNs[(i+255)%256])/1e6)
	}
	return st
}

func (s *Server) getSystem(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, s.systemStats())
}
