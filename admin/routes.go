package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"mime"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes builds the router. Every answer other than a success goes through writeError.
func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.RequestID, echoRequestID, s.recoverer, s.limitBody)
	r.NotFound(s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return &apiError{status: http.StatusNotFound, slug: "no-route", detail: fmt.Sprintf("no route %s", r.URL.Path)}
	}))
	r.MethodNotAllowed(s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return &apiError{status: http.StatusMethodNotAllowed, slug: "method-not-allowed",
			detail: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)}
	}))

	metrics := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{s.log},
		ErrorHandling: promhttp.ContinueOnError,
	})

	r.Get("/", s.handle(s.getHydra))
	r.Get("/health", s.handle(s.getHealth))
	r.Get("/ready", s.handle(s.getReady))
	r.Get("/stats", s.handle(s.getStats))
	r.Get("/system", s.handle(s.getSystem))
	r.Method(http.MethodGet, "/metrics", metrics)

	r.Route("/logs", func(r chi.Router) {
		r.Get("/", s.handle(s.listLogs))
		r.With(s.auth, requireJSON(s)).Post("/", s.handle(s.postLog))
		r.Route("/{id}", func(r chi.Router) {
			r.Get("/", s.handle(s.getLog))
			r.With(s.auth).Delete("/", s.handle(s.deleteLog))
		})
	})
	r.Route("/servers", func(r chi.Router) {
		r.Get("/", s.handle(s.listServers))
		r.With(s.auth, requireJSON(s)).Post("/", s.handle(s.postServer))
		r.Route("/{id}", func(r chi.Router) {
			r.Get("/", s.handle(s.getServer))
			r.With(s.auth).Delete("/", s.handle(s.deleteServer))
		})
	})
	return r
}

// echoRequestID returns the request id (the client's X-Request-Id or a generated one)
// in the response, so a client can find the server's log line.
func echoRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := middleware.GetReqID(r.Context()); id != "" {
			w.Header().Set(middleware.RequestIDHeader, id)
		}
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a handler panic into a logged 500 problem.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.writeError(w, r, &apiError{status: http.StatusInternalServerError, slug: "internal",
				detail: "internal error; see the server log", err: fmt.Errorf("panic: %v\n%s", v, debug.Stack())})
		}()
		next.ServeHTTP(w, r)
	})
}

// limitBody bounds every request body to MaxBodyBytes: a declared larger body is
// refused at once, a longer stream fails the read with *http.MaxBytesError (-> 413).
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.cfg.MaxBodyBytes {
			s.writeError(w, r, &http.MaxBytesError{Limit: s.cfg.MaxBodyBytes})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// requireJSON refuses a body that is not application/json with 415.
func requireJSON(s *Server) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ct := r.Header.Get("Content-Type")
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || mt != "application/json" {
				s.writeError(w, r, &apiError{status: http.StatusUnsupportedMediaType, slug: "unsupported-media-type",
					field: "Content-Type", detail: fmt.Sprintf("the body must be application/json, not %q", ct)})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// auth requires "Authorization: Bearer <token>" when a token is configured: 401 when
// it is missing, 403 when it is wrong. The comparison is constant-time (over hashes, so
// the length does not leak either).
func (s *Server) auth(next http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return next
	}
	want := sha256.Sum256([]byte(s.cfg.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fwdmux-admin"`)
			s.writeError(w, r, &apiError{status: http.StatusUnauthorized, slug: "unauthorized", field: "Authorization",
				detail: "this request needs an \"Authorization: Bearer <token>\" header"})
			return
		}
		got := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			s.writeError(w, r, &apiError{status: http.StatusForbidden, slug: "forbidden", field: "Authorization",
				detail: "the bearer token is not valid"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// promLogger sends promhttp's errors to slog.
type promLogger struct {
	log interface{ Error(string, ...any) }
}

func (l promLogger) Println(v ...any) { l.log.Error("metrics", "error", fmt.Sprint(v...)) }
