package admin

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/fwdmux/fwdmux/internal/conf"
)

// ProblemContentType is the media type of every error response (RFC 9457).
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem document with fwdmux's one extension member, Field,
// which names the request field (or header) at fault.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Field  string `json:"field,omitempty"`
	// RequestID echoes X-Request-Id, for matching a response to the server's log line.
	RequestID string `json:"request_id,omitempty"`
}

const problemTypePrefix = "urn:fwdmux:problem:"

// apiError is what handlers return for an answer other than 500: the status, the slug
// of the problem type, the field at fault and a detail for the client.
type apiError struct {
	status int
	slug   string
	field  string
	detail string
	err    error // cause, logged; may be nil
}

func (e *apiError) Error() string {
	s := e.detail
	if e.field != "" {
		s = e.field + ": " + s
	}
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *apiError) Unwrap() error { return e.err }

func badField(field, detail string) *apiError {
	return &apiError{status: http.StatusBadRequest, slug: "invalid-field", field: field, detail: detail}
}

func badBody(detail string, err error) *apiError {
	return &apiError{status: http.StatusBadRequest, slug: "invalid-body", field: "body", detail: detail, err: err}
}

// toAPIError maps any handler error to its answer. Errors it does not know are 500,
// and their text stays in the log, not in the response.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var fe *conf.FieldError
	if errors.As(err, &fe) {
		return &apiError{status: http.StatusBadRequest, slug: "invalid-field", field: fe.Field, detail: fe.Reason, err: err}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &apiError{status: http.StatusRequestEntityTooLarge, slug: "body-too-large", field: "body",
			detail: "request body exceeds the limit of " + strconv.FormatInt(mbe.Limit, 10) + " bytes", err: err}
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return &apiError{status: http.StatusNotFound, slug: "not-found", field: "id", detail: err.Error(), err: err}
	case errors.Is(err, ErrDuplicate):
		return &apiError{status: http.StatusConflict, slug: "duplicate", field: "id", detail: err.Error(), err: err}
	}
	return &apiError{status: http.StatusInternalServerError, slug: "internal", detail: "internal error; see the server log", err: err}
}

// handlerFunc is an HTTP handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle adapts h: a returned error is rendered by s.writeError.
func (s *Server) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}

// writeError is the one place that renders an error as problem+json and logs it, once:
// 5xx at error level, refused credentials at warn, other client errors at info.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	p := Problem{
		Type:      problemTypePrefix + ae.slug,
		Title:     http.StatusText(ae.status),
		Status:    ae.status,
		Detail:    ae.detail,
		Field:     ae.field,
		RequestID: middleware.GetReqID(r.Context()),
	}
	level := slog.LevelInfo
	switch {
	case ae.status >= 500:
		level = slog.LevelError
	case ae.status == http.StatusUnauthorized || ae.slug == "forbidden" || ae.slug == "forbidden-path":
		level = slog.LevelWarn
	case ae.status == http.StatusServiceUnavailable:
		level = slog.LevelDebug
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", ae.status),
		slog.String("remote", r.RemoteAddr),
		slog.String("request_id", p.RequestID),
	}
	if ae.field != "" {
		attrs = append(attrs, slog.String("field", ae.field))
	}
	attrs = append(attrs, slog.String("error", ae.Error()))
	s.log.LogAttrs(r.Context(), level, "admin request failed", attrs...)
	writeProblem(w, p)
}

func writeProblem(w http.ResponseWriter, p Problem) {
	b, err := json.Marshal(p)
	if err != nil { // cannot happen: plain strings and ints
		b = []byte(`{"type":"urn:fwdmux:problem:internal","title":"Internal Server Error","status":500}`)
		p.Status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", ProblemContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(b, '\n'))
}

// writeJSON writes v as JSON with status. Marshalling happens before the header is
// written, so a marshalling error can still become a 500.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}
