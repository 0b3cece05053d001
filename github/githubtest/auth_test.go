package githubtest

import (
	"crypto/rand"
	"crypto/rsa"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"
)

var (
	keyOnce            sync.Once
	appKey, strangeKey *rsa.PrivateKey
)

func testKeys(t *testing.T) (app, other *rsa.PrivateKey) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if appKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if strangeKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return appKey, strangeKey
}

func signJWT(t *testing.T, key *rsa.PrivateKey, method jwt.SigningMethod, iss string, iat, exp time.Time) string {
	t.Helper()
	claims := jwt.RegisteredClaims{Issuer: iss, IssuedAt: jwt.NewNumericDate(iat)}
	if !exp.IsZero() {
		claims.ExpiresAt = jwt.NewNumericDate(exp)
	}
	var signKey any = key
	if method == jwt.SigningMethodHS256 {
		signKey = []byte("not an RSA key")
	}
	s, err := jwt.NewWithClaims(method, claims).SignedString(signKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAppJWTAndInstallationTokens(t *testing.T) {
	key, other := testKeys(t)
	s := newTestServer(t, Options{
		Tokens:        []string{},
		AppID:         42,
		AppPublicKey:  &key.PublicKey,
		Installations: map[string]int64{"Acme": 7, "bob/tool": 8},
	})
	now := time.Now()
	good := signJWT(t, key, jwt.SigningMethodRS256, "42", now.Add(-30*time.Second), now.Add(2*time.Minute))

	jwtTests := []struct {
		name  string
		token string
		want  int
		msg   string
	}{
		{"valid", good, 201, ""},
		{"signed by another key", signJWT(t, other, jwt.SigningMethodRS256, "42", now, now.Add(time.Minute)), 401, "could not be decoded"},
		{"HS256", signJWT(t, nil, jwt.SigningMethodHS256, "42", now, now.Add(time.Minute)), 401, "could not be decoded"},
		{"expired", signJWT(t, key, jwt.SigningMethodRS256, "42", now.Add(-5*time.Minute), now.Add(-time.Minute)), 401, "'exp'"},
		{"exp too far ahead", signJWT(t, key, jwt.SigningMethodRS256, "42", now, now.Add(11*time.Minute)), 401, "too far in the future"},
		{"no exp", signJWT(t, key, jwt.SigningMethodRS256, "42", now, time.Time{}), 401, "'exp'"},
		{"other app", signJWT(t, key, jwt.SigningMethodRS256, "43", now, now.Add(time.Minute)), 401, "'iss'"},
		{"not a JWT", "ghp_x", 401, "could not be decoded"},
	}
	for _, tt := range jwtTests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, "POST", s.URL()+"/app/installations/7/access_tokens", "Bearer "+tt.token, nil)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
			if tt.msg != "" && !strings.Contains(r.message(t), tt.msg) {
				t.Errorf("message %q lacks %q", r.message(t), tt.msg)
			}
		})
	}

	if r := call(t, "POST", s.URL()+"/app/installations/99/access_tokens", "Bearer "+good, nil); r.status != 404 {
		t.Errorf("unknown installation: %d", r.status)
	}

	token := func(id int64) string {
		r := call(t, "POST", s.URL()+"/app/installations/"+strconv.FormatInt(id, 10)+"/access_tokens", "Bearer "+good, nil)
		var out struct {
			Token     string    `json:"token"`
			ExpiresAt time.Time `json:"expires_at"`
		}
		r.json(t, &out)
		if !strings.HasPrefix(out.Token, "ghs_") || out.ExpiresAt.Before(time.Now().Add(50*time.Minute)) {
			t.Fatalf("access token answer %s", r.body)
		}
		return out.Token
	}
	acme, bob := token(7), token(8)

	scopeTests := []struct {
		name, token, path string
		want              int
	}{
		{"org installation, its org", acme, "/orgs/acme/actions/runners", 200},
		{"org installation, its repo", acme, "/repos/ACME/app/actions/runners", 200},
		{"org installation, other org", acme, "/orgs/other/actions/runners", 403},
		{"repo installation, its repo", bob, "/repos/bob/tool/actions/runners", 200},
		{"repo installation, sibling repo", bob, "/repos/bob/other/actions/runners", 403},
		{"repo installation, owner org", bob, "/orgs/bob/actions/runners", 403},
		{"JWT is not an installation token", good, "/orgs/acme/actions/runners", 401},
	}
	for _, tt := range scopeTests {
		t.Run(tt.name, func(t *testing.T) {
			if r := call(t, "GET", s.URL()+tt.path, "token "+tt.token, nil); r.status != tt.want {
				t.Errorf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
		})
	}

	lookups := []struct {
		path   string
		want   int
		wantID int64
	}{
		{"/orgs/acme/installation", 200, 7},
		{"/orgs/ACME/installation", 200, 7},
		{"/orgs/other/installation", 404, 0},
		{"/repos/acme/app/installation", 200, 7},
		{"/repos/bob/tool/installation", 200, 8},
		{"/repos/bob/other/installation", 404, 0},
	}
	for _, tt := range lookups {
		t.Run(tt.path, func(t *testing.T) {
			r := call(t, "GET", s.URL()+tt.path, "Bearer "+good, nil)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
			if tt.want == 200 {
				var inst struct{ ID, AppID int64 }
				r.json(t, &inst)
				if inst.ID != tt.wantID {
					t.Errorf("id %d, want %d", inst.ID, tt.wantID)
				}
			}
		})
	}
	if r := call(t, "GET", s.URL()+"/orgs/acme/installation", "token "+acme, nil); r.status != 401 {
		t.Errorf("installation lookup with an installation token: %d, want 401", r.status)
	}
}

func TestJWTRefusedWithoutAppMode(t *testing.T) {
	key, _ := testKeys(t)
	s := newTestServer(t, Options{})
	now := time.Now()
	tok := signJWT(t, key, jwt.SigningMethodRS256, "42", now, now.Add(time.Minute))
	if r := call(t, "GET", s.URL()+"/orgs/acme/installation", "Bearer "+tok, nil); r.status != 401 {
		t.Errorf("status %d, want 401", r.status)
	}
}
