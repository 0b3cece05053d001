package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// storeCollector reads the live leases at scrape time, so the gauges are
// right whichever replica did the work and survive restarts.
type storeCollector struct {
	store   provisioner.Store
	leases  *prometheus.Desc
	spend   *prometheus.Desc
	waiting *prometheus.Desc
	up      *prometheus.Desc
	bad     *prometheus.Desc
}

// WatchStore adds the lease gauges, read from the store at each scrape.
func (m *Metrics) WatchStore(s provisioner.Store) {
	m.reg.MustRegister(&storeCollector{
		store: s,
		leases: prometheus.NewDesc("crabbox_leases", "Leases not yet released, by class, provider and state.",
			[]string{"class", "provider", "state"}, nil),
		spend: prometheus.NewDesc("crabbox_spend_per_hour_dollars", "Sum of the hourly prices of hosts that exist now, by class and provider.",
			[]string{"class", "provider"}, nil),
		waiting: prometheus.NewDesc("crabbox_leases_waiting", "Leases created but not yet given a host (the provisioning queue).",
			[]string{"class"}, nil),
		up: prometheus.NewDesc("crabbox_store_up", "1 when the last scrape could read the store.", nil, nil),
		bad: prometheus.NewDesc("crabbox_bad_machines", "Machines (Lambda: instance types in a region) avoided now because a host there failed a lease, by provider.",
			[]string{"provider"}, nil),
	})
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.leases
	ch <- c.spend
	ch <- c.waiting
	ch <- c.up
	ch <- c.bad
	ch <- warmHostsDesc
}

var liveStates = []provisioner.State{provisioner.StatePending, provisioner.StateProvisioning, provisioner.StateBooting,
	provisioner.StateBootstrapping, provisioner.StateIdle, provisioner.StateBusy, provisioner.StateReleasing, provisioner.StateFailed}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	leases, err := c.store.Leases(ctx, provisioner.LeaseFilter{States: liveStates})
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	type key struct{ class, provider, state string }
	counts := map[key]int{}
	spend := map[[2]string]float64{}
	waiting := map[string]int{}
	for _, l := range leases {
		counts[key{l.Class, l.Provider, string(l.State)}]++
		if l.InstanceID != "" {
			spend[[2]string{l.Class, l.Provider}] += l.PricePerHour
		}
		if l.InstanceID == "" && (l.State == provisioner.StatePending || l.State == provisioner.StateProvisioning) {
			waiting[l.Class]++
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.leases, prometheus.GaugeValue, float64(n), k.class, k.provider, k.state)
	}
	for k, v := range spend {
		ch <- prometheus.MustNewConstMetric(c.spend, prometheus.GaugeValue, v, k[0], k[1])
	}
	for class, n := range waiting {
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(n), class)
	}
	collectWarm(ch, leases)
	// The marks every replica shares (provisioner/badmachines.go). A
	// failed read leaves the gauge out rather than claim zero.
	if bad, err := c.store.BadMachines(ctx, time.Now()); err == nil {
		byProvider := map[string]int{}
		for _, m := range bad {
			byProvider[m.Provider]++
		}
		for p, n := range byProvider {
			ch <- prometheus.MustNewConstMetric(c.bad, prometheus.GaugeValue, float64(n), p)
		}
	}
}
