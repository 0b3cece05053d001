package vasttest

// GET /api/v1/instances/: the listing of the account's instances, paged by
// after_token, filtered by select_filters on stored columns (vast-cli's
// show instances-v1; vast-openapi.yaml).

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// storedColumns can be filtered on in the v1 list; computed ones cannot.
var storedColumns = map[string]bool{
	"id": true, "label": true, "actual_status": true, "intended_status": true, "cur_state": true,
	"gpu_name": true, "verification": true, "machine_id": true, "host_id": true, "image_uuid": true,
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	limit := 25
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return write(w, badRequest("invalid_args", "limit must be an integer"))
		}
		switch {
		case n <= 0:
			limit = 5
		case n < 25:
			limit = n
		}
	}
	filters := map[string]map[string]any{}
	if v := q.Get("select_filters"); v != "" {
		if err := json.Unmarshal([]byte(v), &filters); err != nil {
			return write(w, badRequest("invalid_request", "select_filters must be a JSON object of operator objects"))
		}
		for col, cond := range filters {
			if !storedColumns[col] {
				return write(w, badRequest("invalid_request", "cannot filter on column "+col))
			}
			for op, val := range cond {
				if !ops[op] {
					return write(w, badRequest("invalid_request", fmt.Sprintf("%s: unknown operator %q", col, op)))
				}
				if _, isList := val.([]any); (op == "in" || op == "notin") != isList {
					return write(w, badRequest("invalid_request", fmt.Sprintf("%s: %s takes %s", col, op, map[bool]string{true: "a list", false: "a value"}[op == "in" || op == "notin"])))
				}
			}
		}
	}
	if v := q.Get("order_by"); v != "" {
		var order []struct{ Col, Dir string }
		if err := json.Unmarshal([]byte(v), &order); err != nil {
			return write(w, badRequest("invalid_request", "order_by must be a JSON array of {col, dir}"))
		}
		for _, o := range order {
			if o.Col != "id" {
				return write(w, badRequest("invalid_request", "the fake orders by id only"))
			}
		}
	}
	var after int64
	if tok := q.Get("after_token"); tok != "" {
		raw, err := base64.URLEncoding.DecodeString(tok)
		var t struct{ ID int64 }
		if err != nil || json.Unmarshal(raw, &t) != nil || t.ID <= 0 {
			return write(w, badRequest("invalid_token", "invalid after_token"))
		}
		after = t.ID
	}

	s.mu.Lock()
	var match []map[string]any
	labels := map[string]int{}
	now := time.Now()
	for _, in := range s.sorted() {
		if in.destroyed || now.Sub(in.created) < s.opts.ListLag {
			continue
		}
		v := in.view()
		row := map[string]any{}
		for col := range filters {
			row[col] = v[col]
		}
		req := searchRequest{filters: filters}
		if !req.matches(row) {
			continue
		}
		labels[in.label]++
		if in.id > after {
			match = append(match, v)
		}
	}
	s.mu.Unlock()
	total := 0
	for _, n := range labels {
		total += n
	}
	var next any
	if len(match) > limit {
		match = match[:limit]
		last, _ := json.Marshal(map[string]int64{"id": match[len(match)-1]["id"].(int64)})
		next = base64.URLEncoding.EncodeToString(last)
	}
	if match == nil {
		match = []map[string]any{}
	}
	return writeJSON(w, map[string]any{
		"success": true, "instances_found": len(match), "total_instances": total,
		"label_counts": labels, "next_token": next, "instances": match,
	})
}
