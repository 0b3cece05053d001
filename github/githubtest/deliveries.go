package githubtest

// The App webhook's delivery log (reference §2.1): every attempt the fake
// made, including those that got no answer, is listed newest first by
// GET /app/hook/deliveries and can be sent again through
// POST /app/hook/deliveries/{id}/attempts. SetDropDeliveries loses
// deliveries on purpose, so that tests can prove a client recovers them.

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// errDropped is Delivery.Error of a delivery SetDropDeliveries dropped.
const errDropped = "dropped by SetDropDeliveries"

// firstDeliveryID is the id of the first attempt; GitHub's are large.
const firstDeliveryID = 70_000_000_001

// SetDropDeliveries makes the fake drop every delivery, first or
// redelivery, for which drop returns true: it is recorded as failed
// ("failed to connect", no status code) and listed as such, but never
// sent, as when the receiver is unreachable. A nil drop sends everything
// again. drop runs on the delivery goroutine, without the server's lock.
func (s *Server) SetDropDeliveries(drop func(Delivery) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recon.drop = drop
}

// dropped asks the drop switch about d.
func (s *Server) dropped(d Delivery) bool {
	s.mu.Lock()
	drop := s.recon.drop
	s.mu.Unlock()
	return drop != nil && drop(d)
}

// deliveryIDLocked numbers delivery attempts in the order they are made,
// so that a larger id is a later attempt.
func (s *Server) deliveryIDLocked() int64 {
	if s.recon.nextDeliveryID == 0 {
		s.recon.nextDeliveryID = firstDeliveryID
	}
	id := s.recon.nextDeliveryID
	s.recon.nextDeliveryID++
	return id
}

// hookStatus is the delivery log's status text: "OK" for a 2xx answer,
// else what went wrong, in GitHub's words.
func hookStatus(d Delivery) string {
	switch {
	case d.Error != "" && (strings.Contains(d.Error, "Timeout") || strings.Contains(d.Error, "deadline exceeded")):
		return "timed out"
	case d.Error != "":
		return "failed to connect"
	case d.StatusCode >= 200 && d.StatusCode < 300:
		return "OK"
	}
	return fmt.Sprintf("Invalid HTTP Response: %d", d.StatusCode)
}

// hookDeliveryJSON is an item of GET /app/hook/deliveries (OAS
// hook-delivery-item).
func hookDeliveryJSON(d Delivery) map[string]any {
	var ids struct {
		Installation *struct {
			ID int64 `json:"id"`
		} `json:"installation"`
		Repository *struct {
			ID int64 `json:"id"`
		} `json:"repository"`
	}
	json.Unmarshal(d.Body, &ids) // our own payload; a ping has neither
	var inst, repo, action any
	if ids.Installation != nil {
		inst = ids.Installation.ID
	}
	if ids.Repository != nil {
		repo = ids.Repository.ID
	}
	if d.Action != "" {
		action = d.Action
	}
	return map[string]any{
		"id":              d.ID,
		"guid":            d.GUID,
		"delivered_at":    d.DeliveredAt.UTC().Format(time.RFC3339),
		"redelivery":      d.Redelivery,
		"duration":        d.Duration.Seconds(),
		"status":          hookStatus(d),
		"status_code":     d.StatusCode,
		"event":           d.Event,
		"action":          action,
		"installation_id": inst,
		"repository_id":   repo,
		"throttled_at":    nil,
	}
}

// handleHookDeliveries: GET /app/hook/deliveries?per_page=&cursor=&status=
// (App JWT). Newest first; the cursor is opaque to clients and here names
// the last id of the previous page. Only a next link is sent, as GitHub
// does for cursor paging.
func (s *Server) handleHookDeliveries(w http.ResponseWriter, r *http.Request) {
	if !s.checkJWT(w, r) {
		return
	}
	q := r.URL.Query()
	perPage, _ := paging(r)
	before := int64(math.MaxInt64)
	if c := q.Get("cursor"); c != "" {
		id, err := strconv.ParseInt(strings.TrimPrefix(c, "v1_"), 10, 64)
		if err != nil || !strings.HasPrefix(c, "v1_") {
			writeError(w, http.StatusBadRequest, "Invalid cursor")
			return
		}
		before = id
	}
	status := q.Get("status")
	if status != "" && status != "success" && status != "failure" {
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed")
		return
	}

	s.mu.Lock()
	items := []map[string]any{}
	var last int64
	more := false
	for i := len(s.records) - 1; i >= 0; i-- {
		d := s.records[i]
		if d.ID >= before {
			continue
		}
		if ok := hookStatus(d) == "OK"; (status == "success" && !ok) || (status == "failure" && ok) {
			continue
		}
		if len(items) == perPage {
			more = true
			break
		}
		items = append(items, hookDeliveryJSON(d))
		last = d.ID
	}
	s.mu.Unlock()

	if more {
		q.Set("cursor", "v1_"+strconv.FormatInt(last, 10))
		q.Set("per_page", strconv.Itoa(perPage))
		w.Header().Set("Link", fmt.Sprintf("<%s%s?%s>; rel=\"next\"", s.url, r.URL.Path, q.Encode()))
	}
	writeJSON(w, http.StatusOK, items)
}

// handleRedeliverAttempt: POST /app/hook/deliveries/{id}/attempts (App
// JWT) sends that attempt's event again, with its GUID and body, marked as
// a redelivery, to the webhook as it is set now; 202 once queued. Like
// Redeliver, it ignores HoldDeliveries.
//
// Its answers are the operation's documented ones (OAS
// apps/redeliver-webhook-delivery: 202 accepted, 400 bad_request, 422
// validation_failed); it documents no 404. So an id that names no delivery
// is 422 with a validation-error body, and an id that is not an integer
// (the path parameter is one) is 400.
func (s *Server) handleRedeliverAttempt(w http.ResponseWriter, r *http.Request) {
	if !s.checkJWT(w, r) {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "Bad Request")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.records {
		if d.ID == id {
			d.ID, d.Redelivery = 0, true
			d.StatusCode, d.Error, d.DeliveredAt, d.Duration = 0, "", time.Time{}, 0
			s.addressLocked(&d)
			s.deliveries.push(d)
			writeJSON(w, http.StatusAccepted, map[string]any{})
			return
		}
	}
	// OAS validation-error: message, documentation_url, errors.
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
		"message":           "Validation Failed",
		"documentation_url": "https://docs.github.com/rest/apps/webhooks#redeliver-a-delivery-for-an-app-webhook",
		"errors":            []any{map[string]any{"resource": "HookDelivery", "field": "delivery_id", "code": "invalid"}},
	})
}
