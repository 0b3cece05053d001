package main

// Hosts without SSH for the budget figures: GitHub's request count does not
// depend on how a runner gets onto a host, and a hundred sshd hosts with
// their runners do not fit a shared test machine. memHosts rents "hosts"
// in memory; goRunners "bootstraps" one by running, in a goroutine, what the
// fake runner's run.sh does: it decodes the JIT config, polls the fake
// GitHub's runner protocol, runs its one job (as exit 0) and exits. Every
// GitHub REST call is still serve's own.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

type memHosts struct {
	mu                 sync.Mutex
	seq                int
	insts              map[string]*provisioner.Instance
	created, destroyed int
	runners            *goRunners
}

func newMemHosts() *memHosts {
	h := &memHosts{insts: map[string]*provisioner.Instance{}}
	h.runners = &goRunners{stop: map[int]context.CancelFunc{}}
	return h
}

func (h *memHosts) Name() string                           { return "local" }
func (h *memHosts) Capabilities() provisioner.Capabilities { return provisioner.Capabilities{} }

func (h *memHosts) Offers(ctx context.Context, class provisioner.Class) ([]provisioner.Offer, error) {
	return []provisioner.Offer{{Provider: "local", ID: "mem-a100", GPU: "A100 PCIE", GPUCount: 1, GPUMemoryGB: 40,
		PricePerHour: 0.89, Region: "local", Reliability: 1}}, nil
}

func (h *memHosts) Create(ctx context.Context, req provisioner.CreateRequest) (*provisioner.Instance, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	h.created++
	inst := &provisioner.Instance{Provider: "local", ID: "m-" + strconv.Itoa(h.seq), Status: provisioner.InstanceRunning,
		SSH: provisioner.Endpoint{Host: "127.0.0.1", Port: 10000 + h.seq, User: "root"}, Marker: req.Marker,
		PricePerHour: req.Offer.PricePerHour, GPU: req.Offer.GPU, CreatedAt: time.Now()}
	h.insts[inst.ID] = inst
	c := *inst
	return &c, nil
}

func (h *memHosts) Get(ctx context.Context, id string) (*provisioner.Instance, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	inst, ok := h.insts[id]
	if !ok {
		return nil, provisioner.ErrNotFound
	}
	c := *inst
	return &c, nil
}

func (h *memHosts) ListOwned(ctx context.Context, deployment string) ([]*provisioner.Instance, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*provisioner.Instance
	for _, inst := range h.insts {
		if inst.Marker.Deployment == deployment {
			c := *inst
			out = append(out, &c)
		}
	}
	return out, nil
}

func (h *memHosts) Destroy(ctx context.Context, inst *provisioner.Instance) error {
	h.mu.Lock()
	cur, ok := h.insts[inst.ID]
	if ok {
		delete(h.insts, inst.ID)
		h.destroyed++
	}
	h.mu.Unlock()
	if ok {
		h.runners.kill(cur.SSH.Port)
	}
	return nil
}

func (h *memHosts) live() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.insts)
}

func (h *memHosts) createdCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.created
}

// goRunners is a Bootstrapper whose runners are goroutines.
type goRunners struct {
	provisioner.Bootstrapper // keys and user-data from the real one
	mu                       sync.Mutex
	stop                     map[int]context.CancelFunc // by host port
	wg                       sync.WaitGroup
	// jobTime is how long each job runs.
	jobTime time.Duration
}

func (g *goRunners) Probe(ctx context.Context, req provisioner.ProbeRequest) (string, error) {
	return "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMemHostKeyForBudgetTests", nil
}

func (g *goRunners) Bootstrap(ctx context.Context, req provisioner.BootstrapRequest) (*provisioner.BootstrapResult, error) {
	jit := req.JIT
	if req.Ready != nil {
		var err error
		// The one GPU of memHosts' one offer, as nvidia-smi reports it.
		res := &provisioner.BootstrapResult{GPU: &provisioner.GPUReport{Driver: "550.54.15", CUDA: "12.4",
			GPUs: []provisioner.GPUFound{{Name: "NVIDIA A100-PCIE-40GB", MemMiB: 40960, Driver: "550.54.15", Answered: true}}}}
		if jit, err = req.Ready(ctx, res); err != nil {
			return nil, err
		}
	}
	id, server, token, err := decodeJITForRunner(jit.Encoded)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	g.mu.Lock()
	if old := g.stop[req.Endpoint.Port]; old != nil {
		old()
	}
	g.stop[req.Endpoint.Port] = cancel
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		runFakeRunner(rctx, server, id, token, g.jobTime)
	}()
	return &provisioner.BootstrapResult{HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMemHostKeyForBudgetTests", GPUInfo: "A100 PCIE"}, nil
}

func (g *goRunners) kill(port int) {
	g.mu.Lock()
	cancel := g.stop[port]
	delete(g.stop, port)
	g.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (g *goRunners) killAll() {
	g.mu.Lock()
	for port, cancel := range g.stop {
		cancel()
		delete(g.stop, port)
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// decodeJITForRunner reads what run.sh reads from the JIT config: the
// runner id and server from .runner, the token from .credentials.
func decodeJITForRunner(encoded string) (id int64, server, token string, err error) {
	outer, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return 0, "", "", err
	}
	var files map[string]string
	if err := json.Unmarshal(outer, &files); err != nil {
		return 0, "", "", err
	}
	file := func(name string, v any) error {
		data, err := base64.StdEncoding.DecodeString(files[name])
		if err != nil {
			return err
		}
		return json.Unmarshal(data, v)
	}
	var dot struct {
		AgentID   int64  `json:"agentId"`
		ServerURL string `json:"serverUrl"`
	}
	var creds struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	if err := file(".runner", &dot); err != nil {
		return 0, "", "", fmt.Errorf(".runner: %w", err)
	}
	if err := file(".credentials", &creds); err != nil {
		return 0, "", "", fmt.Errorf(".credentials: %w", err)
	}
	if dot.AgentID == 0 || dot.ServerURL == "" || creds.Data.Token == "" {
		return 0, "", "", fmt.Errorf("JIT config lacks the runner id, server or token")
	}
	return dot.AgentID, dot.ServerURL, creds.Data.Token, nil
}

// runFakeRunner is run.sh's loop: poll twice a second, run the one job,
// report it, exit.
func runFakeRunner(ctx context.Context, server string, id int64, token string, jobTime time.Duration) {
	post := func(path string, body any) (int, map[string]any) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, server+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	base := "/_fake/runner/" + strconv.FormatInt(id, 10)
	for {
		status, ans := post(base+"/poll", map[string]any{})
		switch {
		case status == http.StatusNotFound || status == http.StatusUnauthorized:
			return
		case status == http.StatusOK && ans["action"] == "exit":
			return
		case status == http.StatusOK && ans["action"] == "job":
			job := int64(ans["job_id"].(float64))
			select {
			case <-ctx.Done():
				return
			case <-time.After(jobTime):
			}
			post(base+"/jobs/"+strconv.FormatInt(job, 10)+"/done", map[string]int{"exit_code": 0})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}
