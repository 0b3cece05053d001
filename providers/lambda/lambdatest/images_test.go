package lambdatest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// GET /images lists the recorded images: x86_64 everywhere but us-east-3,
// which has only arm64 Lambda Stack, in two versions of 22.04.
func TestFakeImagesPerRegionAndArchitecture(t *testing.T) {
	s := New(t, Options{})
	c := client{t, s, s.APIKey()}
	status, env := c.do(http.MethodGet, "/api/v1/images", "")
	if status != 200 {
		t.Fatalf("images: %d %s", status, env["error"])
	}
	var images []wImage
	if err := json.Unmarshal(env["data"], &images); err != nil {
		t.Fatal(err)
	}
	var east3 []string
	for _, im := range images {
		if im.Region.Name == "us-east-3" {
			if im.Architecture != ArchARM64 {
				t.Errorf("us-east-3 lists %s %s", im.Family, im.Architecture)
			}
			east3 = append(east3, im.Family+"/"+im.Version)
		} else if im.Architecture != ArchX86_64 {
			t.Errorf("%s lists %s %s", im.Region.Name, im.Family, im.Architecture)
		}
	}
	slices.Sort(east3)
	if want := []string{"lambda-stack-22-04/22.4.5-1026", "lambda-stack-22-04/22.4.5-1459", "lambda-stack-24-04/24.4.2-1459"}; !slices.Equal(east3, want) {
		t.Fatalf("us-east-3: %v, want %v", east3, want)
	}
}

func (c client) addKey(name string) {
	c.t.Helper()
	pub, _ := genKey(c.t)
	body, _ := json.Marshal(map[string]string{"name": name, "public_key": pub})
	if status, env := c.do(http.MethodPost, "/api/v1/ssh-keys", string(body)); status != 200 {
		c.t.Fatalf("add key: %d %s", status, env["error"])
	}
}

func (c client) launch(typeName, region, key, image string) (int, string, string) {
	c.t.Helper()
	body := fmt.Sprintf(`{"region_name":%q,"instance_type_name":%q,"ssh_key_names":[%q]%s}`, region, typeName, key, image)
	status, env := c.do(http.MethodPost, "/api/v1/instance-operations/launch", body)
	var out struct {
		InstanceIDs []string `json:"instance_ids"`
	}
	json.Unmarshal(env["data"], &out)
	id := ""
	if len(out.InstanceIDs) == 1 {
		id = out.InstanceIDs[0]
	}
	return status, errorCode(env), id
}

// A launch whose image the region does not list for the type's
// architecture is a 404; the region's own images launch.
func TestFakeLaunchChecksTheImage(t *testing.T) {
	s := New(t, Options{})
	c := client{t, s, s.APIKey()}
	c.addKey("k")
	var armStack string
	for _, im := range s.images {
		if im.Region == "us-east-3" && im.Family == "lambda-stack-24-04" {
			armStack = im.ID()
		}
	}
	for _, tc := range []struct {
		typ, region, image string
		status             int
	}{
		{"gpu_1x_a10", "us-east-1", `,"image":{"family":"no-such-family"}`, 404},
		{"gpu_1x_a100_sxm4", "us-east-1", `,"image":{"family":"lambda-stack-legacy-22-04"}`, 404}, // us-south only
		{"gpu_1x_gh200", "us-east-3", `,"image":{"family":"gpu-base-24-04"}`, 404},                // no arm64 GPU Base
		{"gpu_1x_a10", "us-east-1", `,"image":{"id":"` + armStack + `"}`, 404},                    // another region's arm64 id
		{"gpu_1x_gh200", "us-east-3", `,"image":{"id":"` + armStack + `"}`, 200},
		{"gpu_1x_a10", "us-east-1", `,"image":{"family":"gpu-base-24-04"}`, 200},
		{"gpu_1x_gh200", "us-east-3", ``, 200}, // Lambda's default: its Lambda Stack
	} {
		status, code, _ := c.launch(tc.typ, tc.region, "k", tc.image)
		if status != tc.status || (status == 404 && code != "global/object-does-not-exist") {
			t.Errorf("%s@%s %s: %d %s, want %d", tc.typ, tc.region, tc.image, status, code, tc.status)
		}
	}
}

// Terminate is refused while the VM has not launched (actions.terminate
// vm-has-not-launched) and while terminating; a key that a live instance
// uses cannot be deleted until the instance is terminated.
func TestFakeRefusesTerminateWhileBootingAndKeysInUse(t *testing.T) {
	s := New(t, Options{BootDelay: 700 * time.Millisecond})
	c := client{t, s, s.APIKey()}
	c.addKey("k")
	_, _, id := c.launch("gpu_1x_a10", "us-east-1", "k", "")
	var inst wInstance
	_, env := c.do(http.MethodGet, "/api/v1/instances/"+id, "")
	json.Unmarshal(env["data"], &inst)
	if inst.Status != "booting" || inst.Actions.Terminate.Available || inst.Actions.Terminate.ReasonCode != "vm-has-not-launched" {
		t.Fatalf("booting instance: %+v", inst)
	}
	terminate := `{"instance_ids":["` + id + `"]}`
	if status, env := c.do(http.MethodPost, "/api/v1/instance-operations/terminate", terminate); status != 400 || errorCode(env) != "global/unknown" {
		t.Fatalf("terminate while booting: %d %s", status, env["error"])
	}
	var keys []wSSHKey
	_, env = c.do(http.MethodGet, "/api/v1/ssh-keys", "")
	json.Unmarshal(env["data"], &keys)
	if status, env := c.do(http.MethodDelete, "/api/v1/ssh-keys/"+keys[0].ID, ""); status != 400 || errorCode(env) != "global/invalid-parameters" {
		t.Fatalf("deleting a key in use: %d %s", status, env["error"])
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _ := c.do(http.MethodPost, "/api/v1/instance-operations/terminate", terminate)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never terminable")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status, env := c.do(http.MethodPost, "/api/v1/instance-operations/terminate", terminate); status == 200 && s.Status(id) == "terminating" {
		t.Fatalf("a second terminate while terminating: %d %s", status, env["data"])
	}
	for s.Status(id) != "terminated" {
		if time.Now().After(deadline) {
			t.Fatal("never terminated")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, env := c.do(http.MethodDelete, "/api/v1/ssh-keys/"+keys[0].ID, ""); status != 200 {
		t.Fatalf("deleting the key once its instance is gone: %d %s", status, env["error"])
	}
	if v := s.Violations(); len(v) != 0 {
		t.Fatalf("violations: %q", v)
	}
}
