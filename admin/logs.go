package admin

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"
)

// logList is the GET /logs answer.
type logList struct {
	Logs []LogStatus `json:"logs"`
}

func (s *Server) listLogs(w http.ResponseWriter, r *http.Request) error {
	items := s.deps.Targets.List()
	st := s.state.Load()
	for i := range items {
		items[i] = fillLog(items[i], st)
	}
	slices.SortFunc(items, func(a, b LogStatus) int { return cmp.Compare(a.ID, b.ID) })
	if items == nil {
		items = []LogStatus{}
	}
	return writeJSON(w, http.StatusOK, logList{Logs: items})
}

func fillLog(l LogStatus, st *runtimeState) LogStatus {
	l.Source = st.logSource(l.ID)
	if l.Files == nil {
		l.Files = []FileStatus{}
	}
	return l
}

func (s *Server) getLog(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	l, ok := s.deps.Targets.Get(id)
	if !ok {
		return fmt.Errorf("tail target %q: %w", id, ErrNotFound)
	}
	return writeJSON(w, http.StatusOK, fillLog(l, s.state.Load()))
}

func (s *Server) postLog(w http.ResponseWriter, r *http.Request) error {
	var spec LogSpec
	if err := decodeJSON(r, &spec, "multiline_timeout", "rotate_wait"); err != nil {
		return err
	}
	if err := s.checkLogSpec(&spec); err != nil {
		return err
	}
	if _, ok := s.deps.Targets.Get(spec.ID); ok {
		return fmt.Errorf("tail target %q: %w", spec.ID, ErrDuplicate)
	}
	var added LogStatus
	err := s.change(func(st *runtimeState) { st.addLog(spec) }, func() error {
		var err error
		added, err = s.deps.Targets.Add(spec)
		return err
	})
	if err != nil {
		return err
	}
	if added.ID == "" {
		added.LogSpec = spec
	}
	s.log.Info("tail target added", "id", spec.ID, "path", spec.Path, "tag", spec.Tag, "remote", r.RemoteAddr)
	w.Header().Set("Location", "/logs/"+spec.ID)
	return writeJSON(w, http.StatusCreated, fillLog(added, s.state.Load()))
}

func (s *Server) deleteLog(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if _, ok := s.deps.Targets.Get(id); !ok {
		return fmt.Errorf("tail target %q: %w", id, ErrNotFound)
	}
	err := s.change(func(st *runtimeState) { st.removeLog(id) }, func() error {
		return s.deps.Targets.Remove(id)
	})
	if err != nil {
		return err
	}
	s.log.Info("tail target removed", "id", id, "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
