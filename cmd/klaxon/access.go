package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/server"
)

// migratedSuffix is appended to DATA/tokens once its tokens are in the store.
const migratedSuffix = ".migrated"

// openTokens returns the token and session store kept in st (every replica
// sharing st sees one set), first moving the tokens of an earlier version's
// DATA/tokens file into it; the file is then renamed tokens.migrated.
func openTokens(ctx context.Context, st any, dataDir, adminToken string, log *slog.Logger) (*auth.Store, error) {
	as, ok := st.(auth.State)
	if !ok {
		return nil, errors.New("this store cannot keep tokens (it has no state sweep)")
	}
	tokens := auth.NewStore(as, adminToken)
	path := filepath.Join(dataDir, tokensFile)
	if _, err := os.Stat(path); err == nil {
		n, err := tokens.Import(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("moving the token file %s into the store: %w (fix or remove the file)", path, err)
		}
		if err := os.Rename(path, path+migratedSuffix); err != nil {
			return nil, fmt.Errorf("the tokens of %s are in the store, but it could not be renamed: %w", path, err)
		}
		if log != nil {
			log.Warn("moved the named tokens of the token file into the store; the file is kept, renamed", "tokens", n, "file", path+migratedSuffix)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return tokens, nil
}

// onRota says whether person is on the rota in force.
func onRota(current func() *rota.Rota) func(string) bool {
	return func(person string) bool { r := current(); return r != nil && r.People[person] != nil }
}

// feedOnRota refuses a feed token of a person who is not on the rota in force.
func feedOnRota(tokens *auth.Store, current func() *rota.Rota) func(string) (auth.Scope, bool) {
	return func(token string) (auth.Scope, bool) {
		s, ok := tokens.FeedScope(token)
		if ok && s.Person != "" && !onRota(current)(s.Person) {
			return auth.Scope{}, false
		}
		return s, ok
	}
}

// endSessionsOffRota ends the web sessions of people rota r no longer has.
func endSessionsOffRota(ctx context.Context, tokens *auth.Store, r *rota.Rota, log *slog.Logger) {
	n, err := tokens.EndSessions(ctx, func(s auth.WebSession) bool { return r.People[s.Person] == nil })
	switch {
	case err != nil:
		log.Error("could not end the web sessions of people who left the rota; each is refused at its next request", "error", err)
	case n > 0:
		log.Info("ended the web sessions of people who left the rota", "sessions", n)
	}
}

// tokenAPI serves the admin API of tokens and sessions, which `klaxon
// token` uses while a server runs:
//
//	GET    /api/v1/tokens          list (ids, never secrets)
//	POST   /api/v1/tokens          {"kind":"api|feed","person":ID,"rotation":ID} → {"id","token"}
//	DELETE /api/v1/tokens/{id}     revoke (and end the sessions it opened)
//	GET    /api/v1/sessions        list web sessions
//	DELETE /api/v1/sessions/{id}   end one
//
// Only the admin token may: a person's token is refused (403).
func mountTokenAPI(srv *server.Server, tokens *auth.Store, current func() *rota.Rota, log *slog.Logger) {
	admin := func(h func(w http.ResponseWriter, r *http.Request)) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if id, ok := server.IdentityOf(r); !ok || !id.Admin {
				apiJSON(w, http.StatusForbidden, map[string]string{"error": "only the admin API token manages tokens and sessions"})
				return
			}
			h(w, r)
		})
	}
	srv.Handle("GET /api/v1/tokens", auth.APIToken, admin(func(w http.ResponseWriter, r *http.Request) {
		list, err := tokens.List(r.Context())
		if err != nil {
			apiStoreError(w, log, err)
			return
		}
		apiJSON(w, http.StatusOK, map[string]any{"tokens": list})
	}))
	srv.Handle("POST /api/v1/tokens", auth.APIToken, admin(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Kind     auth.Kind `json:"kind"`
			Person   string    `json:"person"`
			Rotation string    `json:"rotation"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&req); err != nil {
			apiJSON(w, http.StatusBadRequest, map[string]string{"error": "want JSON {\"kind\":\"api\"|\"feed\",\"person\":ID,\"rotation\":ID}"})
			return
		}
		scope := auth.Scope{Person: req.Person, Rotation: req.Rotation}
		cur := current()
		if scope.Person != "" && (cur == nil || cur.People[scope.Person] == nil) || scope.Rotation != "" && (cur == nil || cur.Rotations[scope.Rotation] == nil) {
			apiJSON(w, http.StatusBadRequest, map[string]string{"error": "the rota in force has no " + clipID(scope.String())})
			return
		}
		tok, id, err := tokens.Create(r.Context(), req.Kind, scope, time.Now())
		if err != nil {
			apiJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		log.Info("token created", "id", id, "kind", req.Kind, "for", scope.String())
		apiJSON(w, http.StatusOK, map[string]string{"id": id, "token": tok})
	}))
	srv.Handle("DELETE /api/v1/tokens/{id}", auth.APIToken, admin(func(w http.ResponseWriter, r *http.Request) {
		e, err := tokens.Revoke(r.Context(), r.PathValue("id"))
		if errors.Is(err, auth.ErrNoToken) {
			apiJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
			return
		}
		if err != nil {
			apiStoreError(w, log, err)
			return
		}
		log.Info("token revoked", "id", e.ID, "for", e.Scope.String())
		apiJSON(w, http.StatusOK, e)
	}))
	srv.Handle("GET /api/v1/sessions", auth.APIToken, admin(func(w http.ResponseWriter, r *http.Request) {
		list, err := tokens.Sessions(r.Context(), time.Now())
		if err != nil {
			apiStoreError(w, log, err)
			return
		}
		apiJSON(w, http.StatusOK, map[string]any{"sessions": list})
	}))
	srv.Handle("DELETE /api/v1/sessions/{id}", auth.APIToken, admin(func(w http.ResponseWriter, r *http.Request) {
		s, err := tokens.EndSessionID(r.Context(), r.PathValue("id"))
		if errors.Is(err, auth.ErrNoSession) {
			apiJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
			return
		}
		if err != nil {
			apiStoreError(w, log, err)
			return
		}
		log.Info("web session ended", "id", s.ID, "person", s.Person)
		apiJSON(w, http.StatusOK, s)
	}))
}

func clipID(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func apiStoreError(w http.ResponseWriter, log *slog.Logger, err error) {
	log.Error("tokens: the store failed", "error", err)
	apiJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the store could not be read or written; retry"})
}

func apiJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
