package exchange

import (
	"slices"
	"testing"
)

func TestCompareShapes(t *testing.T) {
	rec := `{"instances":[{"id":1,"ssh_port":2222,"label":null,"ports":{"22/tcp":[{"HostPort":"40022"}]}}],"total":1,"gone":null}`
	for name, tc := range map[string]struct {
		fake string
		want []string
	}{
		"same shape, other values": {`{"instances":[{"id":9,"ssh_port":1,"label":"x","ports":{"22/tcp":[{"HostPort":"1"}]}}],"total":5}`, nil},
		"type changed":             {`{"instances":[{"id":9,"ssh_port":"1","label":"x","ports":null}],"total":5}`, []string{"instances[0].ssh_port: recorded number, fake string"}},
		"field missing":            {`{"instances":[{"id":9,"label":"x","ports":{}}],"total":5}`, []string{"instances[0].ssh_port: recorded number, fake missing"}},
		"field extra":              {`{"instances":[{"id":9,"ssh_port":1,"new":true,"ports":null}],"total":5}`, []string{"instances[0].new: recorded missing, fake bool"}},
		"nested in a data map":     {`{"instances":[{"id":9,"ssh_port":1,"ports":{"22/tcp":[{"HostPort":22}]}}],"total":5}`, []string{"instances[0].ports{22/tcp}[0].HostPort: recorded string, fake number"}},
		"empty list matches":       {`{"instances":[],"total":0}`, nil},
		"body not json":            {`oops`, []string{"body: recorded object, fake text"}},
	} {
		got := CompareShapes([]byte(rec), []byte(tc.fake), ShapeOptions{DataKeys: func(p string) bool { return p == "instances[].ports" }})
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", name, got, tc.want)
		}
	}
}
