package lambda

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
)

// Error codes of Lambda's error envelope ({"error": {"code": …}}). Lambda
// asks clients to branch on the code, never on the message.
const (
	CodeInvalidAPIKey         = "global/invalid-api-key"
	CodeAccountInactive       = "global/account-inactive"
	CodeInvalidAddress        = "global/invalid-address"
	CodeNotFound              = "global/object-does-not-exist"
	CodeInvalidParameters     = "global/invalid-parameters"
	CodeQuotaExceeded         = "global/quota-exceeded"
	CodeDuplicate             = "global/duplicate"
	CodeInternal              = "global/internal-error"
	CodeInsufficientCapacity  = "instance-operations/launch/insufficient-capacity"
	CodeFileSystemWrongRegion = "instance-operations/launch/file-system-in-wrong-region"
	codeProviderPrefix        = "provider/"
)

// maxErrorText bounds the text an error takes from a response body.
const maxErrorText = 300

// APIError is an error answer from Lambda. Code is empty when the body was
// not Lambda's error envelope (a proxy's 502 page, an empty 429).
type APIError struct {
	Method     string
	Path       string // the API path, e.g. /api/v1/instance-operations/launch
	Status     int
	Code       string
	Message    string
	Suggestion string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lambda: %s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Suggestion != "" {
		b.WriteString(" (" + e.Suggestion + ")")
	}
	return b.String()
}

// Temporary reports whether trying again later may succeed: rate limits,
// server errors and upstream provider failures.
func (e *APIError) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500 || strings.HasPrefix(e.Code, codeProviderPrefix)
}

// IsCode reports whether err is an APIError with the code.
func IsCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// StatusOf returns the HTTP status of an APIError in err's chain, or 0.
func StatusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// cleanText makes text from a response body fit for an error message: one
// line, printable, bounded, and with the API key removed in case a server or
// proxy ever echoed the request's headers back.
func cleanText(s, secret string) string {
	if secret != "" {
		s = strings.ReplaceAll(s, secret, "[REDACTED]")
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > maxErrorText {
		s = string(r[:maxErrorText]) + "…"
	}
	return s
}
