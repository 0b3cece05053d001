package vasttest

import (
	"encoding/json"
	"strings"
	"testing"
)

// The bid market: a type "bid" search prices each machine at its min_bid
// (plus storage) with is_bid true; a create whose price is under min_bid,
// or outside the spec's 0.001–128, is refused 400 invalid_price.
func TestBidSearchAndBidCreate(t *testing.T) {
	s := newServer(t, Options{})
	search := func(typ string) map[string]any {
		t.Helper()
		code, body := do(t, s, "POST", "/api/v0/bundles/", `{"id": {"eq": 5000101}, "type": "`+typ+`", "allocated_storage": 72}`, true)
		var out struct{ Offers []map[string]any }
		if code != 200 || json.Unmarshal([]byte(body), &out) != nil || len(out.Offers) != 1 {
			t.Fatalf("%s search: %d %s", typ, code, body)
		}
		return out.Offers[0]
	}
	od, bid := search("on-demand"), search("bid")
	// 5000101: dph_base 0.30, min_bid 0.18, 72 GB at $0.15/GB/month = 0.015/h.
	if od["is_bid"] != false || od["dph_total"] != 0.315 || od["min_bid"] != 0.18 {
		t.Fatalf("on-demand row: %v %v %v", od["is_bid"], od["dph_total"], od["min_bid"])
	}
	if bid["is_bid"] != true || bid["dph_total"] != 0.195 || bid["dph_base"] != 0.18 {
		t.Fatalf("bid row: %v %v %v", bid["is_bid"], bid["dph_total"], bid["dph_base"])
	}
	for _, price := range []string{"0.17", "0.0001", "200"} {
		code, body := do(t, s, "PUT", "/api/v0/asks/5000101/", `{"image": "ubuntu", "price": `+price+`}`, true)
		if code != 400 || !strings.Contains(body, `"invalid_price"`) {
			t.Fatalf("bid %s: %d %s", price, code, body)
		}
	}
	if len(s.Live()) != 0 {
		t.Fatal("a refused bid made an instance")
	}
	s.SetMinBid(5000101, 0.1)
	code, body := do(t, s, "PUT", "/api/v0/asks/5000101/", `{"image": "ubuntu", "price": 0.12, "disk": 72}`, true)
	if code != 200 {
		t.Fatalf("bid over the lowered min_bid: %d %s", code, body)
	}
	var created struct {
		NewContract int64 `json:"new_contract"`
	}
	json.Unmarshal([]byte(body), &created)
	code, body = do(t, s, "GET", "/api/v0/instances/"+itoa(created.NewContract)+"/", "", true)
	var shown struct{ Instances map[string]any }
	if code != 200 || json.Unmarshal([]byte(body), &shown) != nil || shown.Instances["is_bid"] != true || shown.Instances["dph_total"] != 0.135 {
		t.Fatalf("bid instance: %d %s", code, body)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
