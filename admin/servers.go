package admin

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"
)

// serverList is the GET /servers answer.
type serverList struct {
	Servers []ServerStatus `json:"servers"`
}

func (s *Server) listServers(w http.ResponseWriter, r *http.Request) error {
	items := fillServers(s.deps.Servers.List(), s.state.Load())
	slices.SortFunc(items, func(a, b ServerStatus) int { return cmp.Compare(a.ID, b.ID) })
	return writeJSON(w, http.StatusOK, serverList{Servers: items})
}

// fillServers sets each item's source and makes a nil list empty.
func fillServers(items []ServerStatus, st *runtimeState) []ServerStatus {
	if items == nil {
		return []ServerStatus{}
	}
	for i := range items {
		items[i] = fillServer(items[i], st)
	}
	return items
}

func fillServer(sv ServerStatus, st *runtimeState) ServerStatus {
	sv.Source = st.serverSource(sv.ID)
	if sv.Breaker == "" {
		sv.Breaker = BreakerClosed
	}
	return sv
}

func (s *Server) getServer(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	sv, ok := s.deps.Servers.Get(id)
	if !ok {
		return fmt.Errorf("upstream %q: %w", id, ErrNotFound)
	}
	return writeJSON(w, http.StatusOK, fillServer(sv, s.state.Load()))
}

func (s *Server) postServer(w http.ResponseWriter, r *http.Request) error {
	var spec ServerSpec
	if err := decodeJSON(r, &spec, "heartbeat_interval"); err != nil {
		return err
	}
	if err := checkServerSpec(&spec); err != nil {
		return err
	}
	if _, ok := s.deps.Servers.Get(spec.ID); ok {
		return fmt.Errorf("upstream %q: %w", spec.ID, ErrDuplicate)
	}
	var added ServerStatus
	err := s.change(func(st *runtimeState) { st.addServer(spec) }, func() error {
		var err error
		added, err = s.deps.Servers.Add(spec)
		return err
	})
	if err != nil {
		return err
	}
	if added.ID == "" {
		added = StatusFromSpec(spec)
	}
	s.log.Info("upstream added", "id", spec.ID, "address", spec.Address, "remote", r.RemoteAddr)
	w.Header().Set("Location", "/servers/"+spec.ID)
	return writeJSON(w, http.StatusCreated, fillServer(added, s.state.Load()))
}

func (s *Server) deleteServer(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if _, ok := s.deps.Servers.Get(id); !ok {
		return fmt.Errorf("upstream %q: %w", id, ErrNotFound)
	}
	err := s.change(func(st *runtimeState) { st.removeServer(id) }, func() error {
		return s.deps.Servers.Remove(id)
	})
	if err != nil {
		return err
	}
	s.log.Info("upstream removed", "id", id, "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
