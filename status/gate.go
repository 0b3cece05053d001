package status

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Access is who may read what a Gate guards.
type Access string

const (
	// TokenOnly: callers with the status token (Bearer, or HTTP Basic
	// with the token as password).
	TokenOnly Access = "token"
	// Open: anyone who reaches the address. Only chosen without a token
	// when serve listens on loopback only, so "anyone" is this host.
	Open Access = "open"
	// Closed: nobody; there is no token and the address may be reachable
	// from elsewhere.
	Closed Access = "closed"
)

// ClosedMessage is the body of a Closed gate's 403: how to open it, and
// nothing of what it guards.
const ClosedMessage = "forbidden: serve listens beyond loopback and has no status token, so the status page and /metrics are closed.\n" +
	"Open them by setting CRABBOX_STATUS_TOKEN or CRABBOX_STATUS_TOKEN_FILE (or status.token_file), " +
	"by listening on loopback only (listen: 127.0.0.1:8080), or scrape /metrics on metrics_listen.\n"

// Gate decides who reads the status page and /metrics: the callers with
// the token when one is set; without one, everybody when serve listens on
// loopback only, nobody otherwise. It is the one place the token is
// checked.
type Gate struct {
	access   Access
	tokenSum [sha256.Size]byte
}

// NewGate returns the gate for a token (empty: none) and whether the
// address served on is reachable from this host only.
func NewGate(token string, loopbackOnly bool) *Gate {
	switch {
	case token != "":
		return &Gate{access: TokenOnly, tokenSum: sha256.Sum256([]byte(token))}
	case loopbackOnly:
		return &Gate{access: Open}
	default:
		return &Gate{access: Closed}
	}
}

// Access says who the gate lets through.
func (g *Gate) Access() Access { return g.access }

// Allow reports whether r may be answered. When it may not, the refusal is
// written: 401 asking for the token, or 403 saying how to open the gate.
func (g *Gate) Allow(w http.ResponseWriter, r *http.Request) bool {
	switch g.access {
	case Open:
		return true
	case TokenOnly:
		if g.tokenGiven(r) {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="crabbox-runner", charset="UTF-8"`)
		refuse(w, http.StatusUnauthorized, "unauthorized: this needs the status token (Bearer, or as the Basic auth password)\n")
	default:
		refuse(w, http.StatusForbidden, ClosedMessage)
	}
	return false
}

// Wrap guards next with the gate.
func (g *Gate) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.Allow(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

// tokenGiven checks the token in constant time: both sides are hashed
// first, so not even the length is compared directly.
func (g *Gate) tokenGiven(r *http.Request) bool {
	var given string
	auth := r.Header.Get("Authorization")
	if scheme, rest, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
		given = strings.TrimSpace(rest)
	} else if _, pw, ok := r.BasicAuth(); ok {
		given = pw
	}
	if given == "" {
		return false
	}
	sum := sha256.Sum256([]byte(given))
	return subtle.ConstantTimeCompare(sum[:], g.tokenSum[:]) == 1
}

func refuse(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write([]byte(msg))
}
