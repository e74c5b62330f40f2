package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// StateFile is the name of the runtime-changes file in Config.StateDir.
const StateFile = "runtime.json"

const stateVersion = 1

// runtimeState is what runtime.json holds: the items added through the API (whole
// specs, secrets included: the file is 0600) and the ids of config items removed
// through it. Values are never mutated once stored in Server.state; changes clone.
type runtimeState struct {
	Version int           `json:"version"`
	Logs    logChanges    `json:"logs"`
	Servers serverChanges `json:"servers"`
}

type logChanges struct {
	Added   []LogSpec `json:"added"`
	Removed []string  `json:"removed"`
}

type serverChanges struct {
	Added   []ServerSpec `json:"added"`
	Removed []string     `json:"removed"`
}

func (st *runtimeState) clone() *runtimeState {
	return &runtimeState{
		Version: stateVersion,
		Logs:    logChanges{Added: slices.Clone(st.Logs.Added), Removed: slices.Clone(st.Logs.Removed)},
		Servers: serverChanges{Added: slices.Clone(st.Servers.Added), Removed: slices.Clone(st.Servers.Removed)},
	}
}

func (st *runtimeState) logAdded(id string) bool {
	return slices.ContainsFunc(st.Logs.Added, func(s LogSpec) bool { return s.ID == id })
}

func (st *runtimeState) serverAdded(id string) bool {
	return slices.ContainsFunc(st.Servers.Added, func(s ServerSpec) bool { return s.ID == id })
}

func (st *runtimeState) logSource(id string) string {
	if st.logAdded(id) {
		return SourceAPI
	}
	return SourceConfig
}

func (st *runtimeState) serverSource(id string) string {
	if st.serverAdded(id) {
		return SourceAPI
	}
	return SourceConfig
}

// addLog records an API-added target.
func (st *runtimeState) addLog(spec LogSpec) {
	st.Logs.Added = append(slices.DeleteFunc(st.Logs.Added, func(s LogSpec) bool { return s.ID == spec.ID }), spec)
}

// removeLog forgets an API-added target, or remembers that a config target was removed.
func (st *runtimeState) removeLog(id string) {
	if st.logAdded(id) {
		st.Logs.Added = slices.DeleteFunc(st.Logs.Added, func(s LogSpec) bool { return s.ID == id })
		return
	}
	if !slices.Contains(st.Logs.Removed, id) {
		st.Logs.Removed = append(st.Logs.Removed, id)
	}
}

func (st *runtimeState) addServer(spec ServerSpec) {
	st.Servers.Added = append(slices.DeleteFunc(st.Servers.Added, func(s ServerSpec) bool { return s.ID == spec.ID }), spec)
}

func (st *runtimeState) removeServer(id string) {
	if st.serverAdded(id) {
		st.Servers.Added = slices.DeleteFunc(st.Servers.Added, func(s ServerSpec) bool { return s.ID == id })
		return
	}
	if !slices.Contains(st.Servers.Removed, id) {
		st.Servers.Removed = append(st.Servers.Removed, id)
	}
}

// loadState reads runtime.json from dir; a missing file (or no dir) is an empty state.
func loadState(dir string) (*runtimeState, error) {
	st := &runtimeState{Version: stateVersion}
	if dir == "" {
		return st, nil
	}
	path := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		// ENOTDIR: the state directory cannot exist, so nothing was ever saved; saving
		// will fail with a clear error and the process keeps forwarding.
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("%s is not valid runtime state (fix or remove it): %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s has version %d, this fwdmux reads version %d", path, st.Version, stateVersion)
	}
	return st, nil
}

// saveState writes st to dir atomically: a temp file in the same directory, fsync,
// rename over runtime.json, fsync the directory. No-op without a state dir.
func saveState(dir string, st *runtimeState) error {
	if dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, StateFile, append(b, '\n'))
}

func writeFileAtomic(dir, name string, data []byte) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// change applies one runtime change: it saves the edited state first, then applies it
// to the component; if applying fails the previous state is saved back. So a change
// the API reports as failed is neither running nor remembered, and one it reports as
// done survives a restart. changeMu serializes changes; it is held across the file
// write and the component call on purpose (changes are rare, and their order must be
// the file's order). Readers never take it: they load s.state.
func (s *Server) change(edit func(*runtimeState), apply func() error) error {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	old := s.state.Load()
	next := old.clone()
	edit(next)
	if err := saveState(s.cfg.StateDir, next); err != nil {
		return &apiError{status: http.StatusInternalServerError, slug: "state-not-saved",
			detail: "saving the runtime state failed, so the change was not made; see the server log",
			err:    fmt.Errorf("save %s: %w", filepath.Join(s.cfg.StateDir, StateFile), err)}
	}
	if err := apply(); err != nil {
		if serr := saveState(s.cfg.StateDir, old); serr != nil {
			s.log.Error("reverting runtime state after a failed change", "error", serr, "cause", err)
		}
		return err
	}
	s.state.Store(next)
	return nil
}

// Restore re-applies the changes saved in the state directory: it removes again the
// config targets and upstreams deleted through the API, then re-adds the ones added
// through it. Call it once, after the components are built and before serving; later
// calls do nothing.
//
// A removal whose id the config no longer has is forgotten. An added item that now
// clashes with a config item, is refused by the allow-list, or fails to start is
// dropped from the state and logged with its spec (secrets left out), so the
// operator can add it again; the returned error joins those failures, and the caller
// may log it and carry on.
func (s *Server) Restore() error {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	if s.restored {
		return nil
	}
	s.restored = true
	st := s.state.Load().clone()
	changed := false
	var errs []error

	st.Logs.Removed = slices.DeleteFunc(st.Logs.Removed, func(id string) bool {
		err := s.deps.Targets.Remove(id)
		switch {
		case err == nil:
			s.log.Info("restored removal of tail target", "id", id)
			return false
		case errors.Is(err, ErrNotFound):
			s.log.Info("forgetting the removal of a tail target the config no longer has", "id", id)
			changed = true
			return true
		default:
			errs = append(errs, fmt.Errorf("remove tail target %s: %w", id, err))
			return false
		}
	})
	st.Servers.Removed = slices.DeleteFunc(st.Servers.Removed, func(id string) bool {
		err := s.deps.Servers.Remove(id)
		switch {
		case err == nil:
			s.log.Info("restored removal of upstream", "id", id)
			return false
		case errors.Is(err, ErrNotFound):
			s.log.Info("forgetting the removal of an upstream the config no longer has", "id", id)
			changed = true
			return true
		default:
			errs = append(errs, fmt.Errorf("remove upstream %s: %w", id, err))
			return false
		}
	})

	st.Logs.Added = slices.DeleteFunc(st.Logs.Added, func(spec LogSpec) bool {
		err := s.restoreLog(spec)
		if err == nil {
			s.log.Info("restored tail target", "id", spec.ID, "path", spec.Path, "tag", spec.Tag)
			return false
		}
		s.log.Error("dropping a saved tail target that cannot be restored; add it again",
			"id", spec.ID, "spec", logSpecAttr(spec), "error", err)
		errs = append(errs, fmt.Errorf("restore tail target %s: %w", spec.ID, err))
		changed = true
		return true
	})
	st.Servers.Added = slices.DeleteFunc(st.Servers.Added, func(spec ServerSpec) bool {
		err := s.restoreServer(spec)
		if err == nil {
			s.log.Info("restored upstream", "id", spec.ID, "address", spec.Address)
			return false
		}
		s.log.Error("dropping a saved upstream that cannot be restored; add it again",
			"id", spec.ID, "spec", serverSpecAttr(spec), "error", err)
		errs = append(errs, fmt.Errorf("restore upstream %s: %w", spec.ID, err))
		changed = true
		return true
	})

	if changed {
		if err := saveState(s.cfg.StateDir, st); err != nil {
			errs = append(errs, fmt.Errorf("save %s: %w", filepath.Join(s.cfg.StateDir, StateFile), err))
		}
	}
	s.state.Store(st)
	return errors.Join(errs...)
}

func (s *Server) restoreLog(spec LogSpec) error {
	if _, ok := s.deps.Targets.Get(spec.ID); ok {
		return fmt.Errorf("id %q is taken by a configured target: %w", spec.ID, ErrDuplicate)
	}
	if err := s.checkLogSpec(&spec); err != nil {
		return err
	}
	_, err := s.deps.Targets.Add(spec)
	return err
}

func (s *Server) restoreServer(spec ServerSpec) error {
	if _, ok := s.deps.Servers.Get(spec.ID); ok {
		return fmt.Errorf("id %q is taken by a configured upstream: %w", spec.ID, ErrDuplicate)
	}
	if err := checkServerSpec(&spec); err != nil {
		return err
	}
	_, err := s.deps.Servers.Add(spec)
	return err
}

func logSpecAttr(spec LogSpec) slog.Value {
	b, _ := json.Marshal(spec)
	return slog.StringValue(string(b))
}

func serverSpecAttr(spec ServerSpec) slog.Value {
	if spec.SharedKey != "" {
		spec.SharedKey = "(set)"
	}
	if spec.Password != "" {
		spec.Password = "(set)"
	}
	b, _ := json.Marshal(spec)
	return slog.StringValue(string(b))
}
