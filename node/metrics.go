package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's own Prometheus collectors; the HTTP layer registers
// its request metrics on the same registry.
type metrics struct {
	appended      prometheus.Counter
	commits       prometheus.Counter
	commitTime    prometheus.Histogram
	publishLag    prometheus.Histogram
	lastPublished prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payledger_events_appended_total", Help: "Events committed to the log.",
		}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payledger_log_commits_total", Help: "Group commits (fsynced bbolt transactions) of the log.",
		}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "payledger_append_commit_seconds", Help: "Time from a commit group's start to its fsync: the append latency floor.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		publishLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "payledger_publish_lag_seconds", Help: "Time from an event's commit being seen by the relay to its JetStream acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		lastPublished: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "payledger_relay_position", Help: "Last log sequence acknowledged by JetStream.",
		}),
	}
	reg.MustRegister(m.appended, m.commits, m.commitTime, m.publishLag, m.lastPublished)
	return m
}

func (m *metrics) observeCommit(events, appends int, took time.Duration) {
	m.appended.Add(float64(events))
	m.commits.Inc()
	m.commitTime.Observe(took.Seconds())
}

func (m *metrics) observePublish(seq uint64, lag time.Duration) {
	m.publishLag.Observe(lag.Seconds())
	m.lastPublished.Set(float64(seq))
}
