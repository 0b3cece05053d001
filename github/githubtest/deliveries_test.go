package githubtest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"
)

type deliveryItem struct {
	ID             int64
	GUID           string
	DeliveredAt    time.Time `json:"delivered_at"`
	Redelivery     bool
	Duration       float64
	Status         string
	StatusCode     int `json:"status_code"`
	Event          string
	Action         *string
	InstallationID *int64 `json:"installation_id"`
	RepositoryID   *int64 `json:"repository_id"`
}

func TestDeliveryLogAndRedelivery(t *testing.T) {
	key, _ := testKeys(t)
	s := newTestServer(t, Options{AppID: 42, AppPublicKey: &key.PublicKey, Installations: map[string]int64{"acme": 7}})
	h := newHook(t)
	s.SetWebhook(h.URL, []byte("k"))
	ctx := ctxFor(t)
	now := time.Now()
	jwtTok := "Bearer " + signJWT(t, key, jwt.SigningMethodRS256, "42", now.Add(-30*time.Second), now.Add(2*time.Minute))
	list := func(query string) ([]deliveryItem, string) {
		t.Helper()
		r := call(t, "GET", s.URL()+"/app/hook/deliveries"+query, jwtTok, nil)
		if r.status != 200 {
			t.Fatalf("list deliveries: %d %s", r.status, r.body)
		}
		var items []deliveryItem
		r.json(t, &items)
		return items, r.header.Get("Link")
	}

	// 1: OK; 2: dropped; 3: answered 500; then the receiver is gone (4).
	a := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"x"}})
	if _, err := s.WaitDeliveries(ctx, 1); err != nil {
		t.Fatal(err)
	}
	s.SetDropDeliveries(func(d Delivery) bool { return !d.Redelivery })
	b := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"x"}})
	if _, err := s.WaitDeliveries(ctx, 2); err != nil {
		t.Fatal(err)
	}
	s.SetDropDeliveries(nil)
	h.answer(500)
	s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"x"}})
	if _, err := s.WaitDeliveries(ctx, 3); err != nil {
		t.Fatal(err)
	}
	s.SetWebhook("http://127.0.0.1:1/hook", []byte("k"))
	s.Ping()
	ds, err := s.WaitDeliveries(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.received()) != 2 {
		t.Errorf("the receiver got %d deliveries; the dropped one must not be sent", len(h.received()))
	}
	if ds[1].Error != errDropped || ds[1].StatusCode != 0 || ds[1].JobID != b {
		t.Errorf("dropped delivery = %+v", ds[1])
	}
	for i, d := range ds {
		if d.ID != firstDeliveryID+int64(i) {
			t.Errorf("delivery %d has id %d", i, d.ID)
		}
	}

	items, link := list("")
	if len(items) != 4 || link != "" {
		t.Fatalf("%d items, Link %q", len(items), link)
	}
	for i, want := range []struct {
		status string
		code   int
		event  string
	}{{"failed to connect", 0, "ping"}, {"Invalid HTTP Response: 500", 500, "workflow_job"}, {"failed to connect", 0, "workflow_job"}, {"OK", 202, "workflow_job"}} {
		it, d := items[i], ds[3-i]
		if it.ID != d.ID || it.GUID != d.GUID || it.Status != want.status || it.StatusCode != want.code || it.Event != want.event || it.Redelivery {
			t.Errorf("item %d = %+v, want %+v", i, it, want)
		}
		if it.DeliveredAt.IsZero() || it.DeliveredAt.Sub(now) > time.Minute || it.Duration < 0 {
			t.Errorf("item %d: delivered_at %v, duration %v", i, it.DeliveredAt, it.Duration)
		}
	}
	if it := items[3]; it.Action == nil || *it.Action != "queued" || it.InstallationID == nil || *it.InstallationID != 7 || it.RepositoryID == nil {
		t.Errorf("a workflow_job item: %+v", it)
	}
	if it := items[0]; it.Action != nil || it.InstallationID != nil || it.RepositoryID != nil {
		t.Errorf("a ping item: %+v", it)
	}
	if got, _ := list("?status=failure"); len(got) != 3 {
		t.Errorf("status=failure: %d items", len(got))
	}
	if got, _ := list("?status=success"); len(got) != 1 || got[0].GUID != ds[0].GUID || ds[0].JobID != a {
		t.Errorf("status=success: %+v", got)
	}

	// Cursor paging: a next link only, until the oldest.
	var paged []int64
	url := s.URL() + "/app/hook/deliveries?per_page=3"
	for url != "" {
		r := call(t, "GET", url, jwtTok, nil)
		var page []deliveryItem
		r.json(t, &page)
		for _, it := range page {
			paged = append(paged, it.ID)
		}
		if strings.Contains(r.header.Get("Link"), "rel=\"prev\"") {
			t.Errorf("Link %q", r.header.Get("Link"))
		}
		url = nextLink(r.header.Get("Link"))
	}
	if fmt.Sprint(paged) != fmt.Sprint([]int64{ds[3].ID, ds[2].ID, ds[1].ID, ds[0].ID}) {
		t.Errorf("paged ids %v", paged)
	}

	// Redeliver the dropped one to the receiver as it is now.
	h.answer(200)
	s.SetWebhook(h.URL, []byte("k"))
	r := call(t, "POST", fmt.Sprintf("%s/app/hook/deliveries/%d/attempts", s.URL(), ds[1].ID), jwtTok, nil)
	if r.status != 202 {
		t.Fatalf("redeliver: %d %s", r.status, r.body)
	}
	ds, err = s.WaitDeliveries(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	got := h.received()
	if d := ds[4]; !d.Redelivery || d.GUID != ds[1].GUID || d.StatusCode != 200 || d.ID != ds[3].ID+1 ||
		got[len(got)-1].header.Get("X-GitHub-Delivery") != ds[1].GUID || string(got[len(got)-1].body) != string(ds[1].Body) {
		t.Errorf("redelivery = %+v", d)
	}
	if items, _ := list("?per_page=1"); len(items) != 1 || !items[0].Redelivery || items[0].Status != "OK" || items[0].GUID != ds[1].GUID {
		t.Errorf("newest item = %+v", items)
	}

	for _, tc := range []struct {
		method, path, auth string
		want               int
	}{
		// OAS apps/redeliver-webhook-delivery documents 202, 400 and 422.
		{"POST", "/app/hook/deliveries/1/attempts", jwtTok, 422},
		{"POST", "/app/hook/deliveries/x/attempts", jwtTok, 400},
		{"POST", fmt.Sprintf("/app/hook/deliveries/%d/attempts", ds[0].ID), "Bearer " + testToken, 401},
		{"GET", "/app/hook/deliveries", "Bearer " + testToken, 401},
		{"GET", "/app/hook/deliveries?cursor=bogus", jwtTok, 400},
		{"GET", "/app/hook/deliveries?status=meh", jwtTok, 422},
	} {
		if r := call(t, tc.method, s.URL()+tc.path, tc.auth, nil); r.status != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, r.status, tc.want)
		}
	}
}
