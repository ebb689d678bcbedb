// Package stream carries payledger's committed events out of the node over
// NATS JetStream: an embedded or external NATS connection, the one stream that
// holds every event, the relay that publishes the bbolt log to it exactly once
// and in order, readers that restore a log from it, and durable consumers for
// projections and webhook workers in other processes.
//
// The bbolt log is the source of truth and the outbox. Stream sequence N holds
// log sequence N: the relay publishes every event with the expected last
// stream sequence set to its own sequence minus one, so JetStream refuses
// anything out of place and no event is ever stored twice or out of order.
// docs/streams.md describes the subjects and the message schema.
package stream
