package node

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/webhooks"
)

// metrics are the node's own Prometheus collectors; the HTTP layer registers
// its request metrics on the same registry.
type metrics struct {
	appended      prometheus.Counter
	commits       prometheus.Counter
	commitTime    prometheus.Histogram
	publishLag    prometheus.Histogram
	lastPublished prometheus.Gauge
	natsRestarts  prometheus.Counter
	// published is the last sequence acknowledged by any relay of this
	// process, for the backlog while no relay knows its position.
	published atomic.Uint64
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
			Name: "payledger_publish_lag_seconds", Help: "Time from an event's commit (its event time) to its JetStream acknowledgement, NATS outages included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		lastPublished: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "payledger_relay_position", Help: "Last log sequence acknowledged by JetStream.",
		}),
		natsRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payledger_nats_restarts_total", Help: "Restarts of the embedded NATS server after the relay stalled behind the log.",
		}),
	}
	reg.MustRegister(m.appended, m.commits, m.commitTime, m.publishLag, m.lastPublished, m.natsRestarts)
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
	m.published.Store(seq)
}

// registerRelayMetrics exposes whether the relay has stopped on its own
// (stopped reports it): an event stream that no longer grows, for an
// alert, as /readyz fails; and its backlog, the events committed and not
// yet in the stream, which grows through a NATS outage.
func registerRelayMetrics(reg *prometheus.Registry, stopped func() bool, backlog func() uint64) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "payledger_relay_backlog_events",
		Help: "Events committed to the log and not yet acknowledged by JetStream: the log's head minus the relay's position. It grows while NATS is unreachable.",
	}, func() float64 { return float64(backlog()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "payledger_relay_stopped",
		Help: "1 when the NATS relay has stopped on its own (the stream diverged from the log, or NATS refuses an event as too large) and publishes nothing until the node restarts; else 0.",
	}, func() float64 {
		if stopped() {
			return 1
		}
		return 0
	}))
}

// registerWebhookMetrics exposes the dispatcher's counters.
func registerWebhookMetrics(reg *prometheus.Registry, stats func() webhooks.Stats) {
	counter := func(name, help string, f func(webhooks.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(stats()) })
	}
	gauge := func(name, help string, f func(webhooks.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(stats()) })
	}
	reg.MustRegister(
		counter("payledger_webhook_attempts_total", "Webhook delivery attempts made.", func(s webhooks.Stats) float64 { return float64(s.Attempts) }),
		counter("payledger_webhook_delivered_total", "Webhook deliveries answered 2xx.", func(s webhooks.Stats) float64 { return float64(s.Delivered) }),
		counter("payledger_webhook_failed_total", "Webhook deliveries given up (retries exhausted or target disabled).", func(s webhooks.Stats) float64 { return float64(s.Failed) }),
		gauge("payledger_webhook_in_flight", "Webhook attempts under way.", func(s webhooks.Stats) float64 { return float64(s.InFlight) }),
		gauge("payledger_webhook_due", "Webhook deliveries scheduled or waiting for a host slot.", func(s webhooks.Stats) float64 { return float64(s.Due) }),
		gauge("payledger_webhook_checkpoint", "Last log sequence the webhook dispatcher ingested.", func(s webhooks.Stats) float64 { return float64(s.Checkpoint) }),
	)
}

// registerSchedulerMetrics exposes the expiry scheduler's counters.
func registerSchedulerMetrics(reg *prometheus.Registry, stats func() commands.SchedulerStats) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "payledger_scheduler_expired_total", Help: "Invoices and widgets the expiry scheduler expired.",
		}, func() float64 { return float64(stats().Expired) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "payledger_scheduler_expire_failures_total", Help: "Expiry attempts that failed with an unexpected error (an item that keeps failing is tried once per backoff step, 1 s doubling to 5 min).",
		}, func() float64 { return float64(stats().Failed) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "payledger_scheduler_retrying", Help: "Invoices and widgets whose expiry failed, waiting for their next try.",
		}, func() float64 { return float64(stats().Retrying) }),
	)
}
