package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// prefetch counts how bootstrapped hosts got their runner: from the
// boot-time prefetch (ready, or waited for), downloaded over SSH, or
// taken from the host's image (issue 18).
type prefetch struct {
	got *prometheus.CounterVec
	// The runner tarball's downloads as the hosts timed them: the facts
	// docs/benchmarks.md's time-to-runner model had to assume (size,
	// bandwidth, how much of the download the boot hides).
	bytes    *prometheus.CounterVec
	download *prometheus.HistogramVec
	afterSSH *prometheus.HistogramVec
}

var _ provisioner.PrefetchObserver = (*Metrics)(nil)

func newPrefetch(reg prometheus.Registerer) *prefetch {
	p := &prefetch{got: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crabbox_runner_prefetch_total",
		Help: "Bootstrapped hosts by how the runner was got: prefetched (ready when the install began), waited (a prefetch under way), downloaded (by the install), image (the host's image had it).",
	}, []string{"provider", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_runner_download_bytes_total",
			Help: "Bytes of runner tarball downloaded by hosts, by who downloaded it: prefetch (at boot) or install (over SSH).",
		}, []string{"provider", "by"}),
		download: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crabbox_runner_download_seconds",
			Help:    "How long a host's download of the runner tarball took, the transfer alone; with crabbox_runner_download_bytes_total, the bandwidth hosts get.",
			Buckets: []float64{.5, 1, 2, 4, 8, 15, 30, 60, 120, 300},
		}, []string{"provider", "by"}),
		afterSSH: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crabbox_runner_fetch_after_ssh_seconds",
			Help:    "How much of the runner tarball's fetch (download, checksum, unpack) was left when the host's SSH came up: the part on the way to the runner online; 0 when the boot hid it all.",
			Buckets: []float64{0, .5, 1, 2, 4, 8, 15, 30, 60, 120},
		}, []string{"provider", "by"}),
	}
	reg.MustRegister(p.got, p.bytes, p.download, p.afterSSH)
	return p
}

// RunnerGot implements provisioner.PrefetchObserver.
func (m *Metrics) RunnerGot(provider, result string) {
	switch result {
	case provisioner.RunnerPrefetched, provisioner.RunnerWaited, provisioner.RunnerDownloaded, provisioner.RunnerImage:
		m.prefetch.got.WithLabelValues(provider, result).Inc()
	}
}

// RunnerFetched implements provisioner.PrefetchObserver.
func (m *Metrics) RunnerFetched(provider string, f provisioner.RunnerFetch, afterSSH time.Duration) {
	if f.By != provisioner.FetchByPrefetch && f.By != provisioner.FetchByInstall {
		return
	}
	m.prefetch.bytes.WithLabelValues(provider, f.By).Add(float64(f.Bytes))
	m.prefetch.download.WithLabelValues(provider, f.By).Observe(f.Download.Seconds())
	m.prefetch.afterSSH.WithLabelValues(provider, f.By).Observe(afterSSH.Seconds())
}
