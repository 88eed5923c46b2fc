// Package pipeline holds the per-request record that every stage writes its
// verdict into, and the plumbing that carries it through a request.
//
// One record per request travels from accept to the access log: stages never
// log on their own, they fill fields here and the access log, metrics and
// detectors read the finished record.
package pipeline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Record is everything Rampart decided and observed about one request. Field
// names follow the access-log fields of DESIGN §5.
type Record struct {
	Timestamp time.Time `json:"timestamp"`
	RequestID string    `json:"request_id"`

	ClientIP      string `json:"client_ip"`
	ClientPort    int    `json:"client_port"`
	ServerIP      string `json:"server_ip"`
	ServerPort    int    `json:"server_port"`
	Listener      string `json:"listener"`
	LBInstance    string `json:"lb_instance"`
	XForwardedFor string `json:"x_forwarded_for"`

	Method    string `json:"method"`
	Host      string `json:"host"`
	Path      string `json:"path"`
	Query     string `json:"query"`
	Protocol  string `json:"protocol"`
	UserAgent string `json:"user_agent"`
	Referer   string `json:"referer"`

	StatusCode        int     `json:"status_code"`
	RequestSizeBytes  int64   `json:"request_size_bytes"`
	ResponseSizeBytes int64   `json:"response_size_bytes"`
	RequestTimeMs     float64 `json:"request_time_ms"`

	Route         string `json:"route"`
	PoolID        string `json:"pool_id"`
	BackendServer string `json:"backend_server"`
	BackendID     string `json:"backend_id"`
	Attempts      int    `json:"attempts"`
	// UpstreamTimeMs and TargetProcessingTimeMs are -1 when no backend
	// answered, as in AWS ALB logs, so "no answer" is not confused with "fast".
	UpstreamTimeMs         float64 `json:"upstream_time_ms"`
	TargetStatusCode       int     `json:"target_status_code"`
	TargetProcessingTimeMs float64 `json:"target_processing_time_ms"`

	// ACLAction is "allow" or "deny" when an IP list decided, and
	// ACLSource which one: static:blocklist, feed:NAME, dynamic:ID.
	ACLAction string `json:"acl_action,omitempty"`
	ACLSource string `json:"acl_source,omitempty"`

	// TLS and security-stage facts of DESIGN §5. Stages that do not exist
	// yet leave them empty; the access log writes them anyway so that its
	// schema does not change when they land. On an https listener:
	// SSLProtocol "TLSv1.3", SSLCipher the suite's IANA name, JA3 and JA4
	// the client's fingerprints (tlsterm/fingerprint.go), SNI the server
	// name the client asked for, TLSResumed whether the connection resumed
	// an earlier session (no full handshake).
	SSLProtocol      string   `json:"ssl_protocol"`
	SSLCipher        string   `json:"ssl_cipher"`
	SNI              string   `json:"sni"`
	TLSResumed       bool     `json:"tls_resumed"`
	JA3              string   `json:"ja3"`
	JA4              string   `json:"ja4"`
	ConnectionReused bool     `json:"connection_reused"`
	RateLimited      bool     `json:"rate_limited"`
	WAFAction        string   `json:"waf_action"`
	WAFRulesMatched  []string `json:"waf_rules_matched"`
	GeoCountry       string   `json:"geo_country"`
	ASN              int      `json:"asn"`
	RateLimitTier    string   `json:"rate_limit_tier,omitempty"`
	// SlowClientScore is the client's slow-client score when the request
	// arrived (slowloris_protection.slow_client_*; 0: none).
	SlowClientScore float64 `json:"slow_client_score"`

	// Error is a short machine-readable reason when Rampart answered itself
	// (no_route, no_backend, backend_unreachable, backend_timeout, ...).
	Error string `json:"error"`

	// Target is the router's decision for the proxy stage (a *proxy.Pool).
	// It rides on the record so a request carries one context value.
	Target any `json:"-"`
}

var recordPool = sync.Pool{New: func() any { return new(Record) }}

// NewRecord returns a zeroed record from a pool; Release gives it back once
// every reader (the access log) is done with it.
func NewRecord() *Record {
	r := recordPool.Get().(*Record)
	r.UpstreamTimeMs = -1
	r.TargetProcessingTimeMs = -1
	return r
}

// Release returns r to the pool; r must not be used afterwards.
func Release(r *Record) {
	*r = Record{}
	recordPool.Put(r)
}

type recordKey struct{}

// WithRecord returns ctx carrying rec.
func WithRecord(ctx context.Context, rec *Record) context.Context {
	return context.WithValue(ctx, recordKey{}, rec)
}

// A slot carries the record of the request a connection is serving, in
// the connection's context: on a connection that serves one request at a
// time (HTTP/1) a request then needs neither a context of its own nor the
// copy of the http.Request that setting it takes.
type slot struct {
	rec atomic.Pointer[Record]
	// wait is the backend wait of that request, if any (clientgone.go).
	wait atomic.Pointer[Wait]
	// abandoning is held while a wait is abandoned, and by DoneWaiting:
	// once DoneWaiting returns, no abandon of that wait is still under way.
	abandoning sync.Mutex
}

// WithSlot returns a connection's context with an empty record slot.
func WithSlot(ctx context.Context) context.Context {
	return context.WithValue(ctx, recordKey{}, new(slot))
}

// Attach makes rec the record of the request whose context is ctx. If
// ctx carries a free slot (see WithSlot), rec takes it and ctx is returned
// as it is, with ok true: the caller has the connection to itself until
// Detach. Otherwise (no slot, or HTTP/2 streams of one connection running
// at once) the result is WithRecord(ctx, rec).
func Attach(ctx context.Context, rec *Record) (_ context.Context, ok bool) {
	if s, isSlot := ctx.Value(recordKey{}).(*slot); isSlot && s.rec.CompareAndSwap(nil, rec) {
		return ctx, true
	}
	return WithRecord(ctx, rec), false
}

// Detach frees the slot of ctx if rec holds it (Attach reported ok). It
// must come before rec is released.
func Detach(ctx context.Context, rec *Record) {
	if s, ok := ctx.Value(recordKey{}).(*slot); ok {
		s.rec.CompareAndSwap(rec, nil)
	}
}

// FromContext returns the request's record. It never returns nil, so stages
// tested alone need no setup; a record made here is simply not logged.
func FromContext(ctx context.Context) *Record {
	switch v := ctx.Value(recordKey{}).(type) {
	case *Record:
		return v
	case *slot:
		if r := v.rec.Load(); r != nil {
			return r
		}
	}
	return &Record{UpstreamTimeMs: -1, TargetProcessingTimeMs: -1}
}
