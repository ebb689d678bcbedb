package api

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the Prometheus collectors of the API (and, if wanted, of the
// log), served at /metrics. Make one with NewMetrics; other components
// register their own collectors on Registry(). A wiring that has no log
// metrics of its own gives OnCommit to boltlog.Options.OnCommit: the log's
// collectors are registered on its first call, so a wiring that counts
// commits itself gets no duplicates.
type Metrics struct {
	registry       *prometheus.Registry
	requests       *prometheus.HistogramVec
	feedWaiting    prometheus.Gauge
	logOnce        sync.Once
	eventsAppended prometheus.Counter
	appends        prometheus.Counter
	commitLatency  prometheus.Histogram
	commitSize     prometheus.Histogram
}

// NewMetrics registers payledger's collectors on reg; nil makes a new
// registry with the Go runtime and process collectors.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &Metrics{
		registry: reg,
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "payledger", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "HTTP request latency by route pattern, method and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "code"}),
		feedWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "payledger", Subsystem: "http", Name: "feed_waiting",
			Help: "Event feed long polls (GET /api/v1/events with wait) parked until the next append.",
		}),
		eventsAppended: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "payledger", Subsystem: "log", Name: "events_appended_total",
			Help: "Events committed to the log.",
		}),
		appends: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "payledger", Subsystem: "log", Name: "appends_total",
			Help: "Appends committed to the log (several share one commit).",
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "payledger", Subsystem: "log", Name: "commit_duration_seconds",
			Help:    "Time to write and fsync one group commit of the log.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		commitSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "payledger", Subsystem: "log", Name: "commit_appends",
			Help:    "Appends per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
	}
	reg.MustRegister(m.requests, m.feedWaiting)
	return m
}

// Registry is where the collectors live; /metrics serves it.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// OnCommit records one group commit of the log; its signature is
// boltlog.Options.OnCommit's.
func (m *Metrics) OnCommit(events, appends int, took time.Duration) {
	m.logOnce.Do(func() {
		m.registry.MustRegister(m.eventsAppended, m.appends, m.commitLatency, m.commitSize)
	})
	m.eventsAppended.Add(float64(events))
	m.appends.Add(float64(appends))
	m.commitLatency.Observe(took.Seconds())
	m.commitSize.Observe(float64(appends))
}

func (m *Metrics) observe(route, method string, code int, took time.Duration) {
	m.requests.WithLabelValues(route, methodLabel(method), strconv.Itoa(code)).Observe(took.Seconds())
}

// methodLabel is a request's method as a label value: the methods payledger
// serves, and "other" for every other one. The client chooses the method,
// and each label value is a series /metrics keeps for good.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return method
	}
	return "other"
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}
