package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/acl"
	"github.com/rampart-proxy/rampart/internal/clock"
	"github.com/rampart-proxy/rampart/internal/pipeline"
	"github.com/rampart-proxy/rampart/internal/server/http1"
)

// entry is the first handler of every listener: it opens the request's
// record, establishes who the client is, runs the pipeline stages and, when
// the response is done, hands the record to the access log.
type entry struct {
	srv *Server
	l   *listener
	// pp: the listener reads PROXY protocol headers (see preface); its
	// connections are counted for the client after the header, not here.
	pp bool
}

func (e *entry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// One clock reading for the record's timestamp and timings, the slow
	// client score and the rate limits.
	start := clock.Now()
	t := e.srv.table.Load()
	name := *e.l.name.Load()
	lt := t.listeners[name]
	if lt == nil { // renamed by a reload while this request was accepted
		lt = &listenerSettings{}
	}

	rec := pipeline.NewRecord()
	rec.Timestamp = start
	rec.Listener = name
	rec.LBInstance = t.instance
	rec.Method, rec.Host, rec.Path, rec.Query = r.Method, r.Host, r.URL.Path, r.URL.RawQuery
	rec.Protocol = r.Proto
	rec.UserAgent, rec.Referer = firstValue(r.Header, "User-Agent"), firstValue(r.Header, "Referer")
	var client netip.Addr
	var tf *tlsFacts
	ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	if ci != nil {
		rec.ConnectionReused = ci.requests.Add(1) > 1
		if tf = ci.tls; tf != nil {
			tf.fill(rec)
		}
		client = ci.setClient(rec, lt, r.Header["X-Forwarded-For"])
	}
	// The response carries it too: responseWriter sets it with the status.
	rec.RequestID = requestID(firstValue(r.Header, "X-Request-Id"))
	rec.SlowClientScore = e.srv.slow.score(client, start)
	denied := e.checkACL(rec, client)

	// Every stage from here on finds the record in the request's context:
	// on an HTTP/1 connection in its slot (connContext), which leaves r
	// as it is and gives this request the connection's writer and body
	// wrappers; otherwise in a context of its own.
	ctx, own := pipeline.Attach(r.Context(), rec)
	var rw *responseWriter
	var body *countingBody
	if own && ci != nil {
		rw = &ci.rw
		*rw = responseWriter{ResponseWriter: w, rec: rec, hs: t.headers, acl: e.srv.acl}
	} else {
		rw = &responseWriter{ResponseWriter: w, rec: rec, hs: t.headers, acl: e.srv.acl}
		r = r.WithContext(ctx)
	}
	if tf != nil && lt.hsts != nil {
		rw.hsts = lt.hsts // on every answer of an https listener, refusals too
	}
	if r.Body != nil && r.Body != http.NoBody {
		// Its own for each request, never the connection's: the
		// transport's write loop may still read a body after the handler
		// returned (an answer that came before the body was sent whole).
		body = &countingBody{ReadCloser: r.Body}
		r.Body = body
	}
	defer func() {
		// Runs also when the proxy aborts a response (http.ErrAbortHandler
		// after a cut backend), so cut and failed requests are logged too.
		p := recover()
		if p != nil && rec.Error == "" {
			rec.Error = "aborted"
		}
		e.finish(ctx, rec, rw, body, start)
		if p != nil {
			panic(p)
		}
	}()

	if tf != nil && r.TLS == nil {
		r.TLS = tf.state // HTTP/2 over TLS: net/http served it as h2c
	}
	if denied {
		rec.Error = "blocked"
		pipeline.WriteError(rw, r, http.StatusForbidden)
		return
	}
	if tf.misdirected(r.Host) {
		rec.Error = "misdirected"
		e.srv.metrics.Blocked("tls", "sni_host_mismatch")
		pipeline.WriteError(rw, r, http.StatusMisdirectedRequest)
		return
	}
	// Everything after this point (rate limits, routing, the backend)
	// sees the normalised path (pathnorm.go).
	if why := normalizePath(r.URL, t.allowEncodedSlashes); why != "" {
		rec.Error = "refused: " + string(why)
		e.srv.metrics.Blocked("path", string(why))
		pipeline.WriteError(rw, r, http.StatusBadRequest)
		return
	}
	rec.Path = r.URL.Path
	if tf == nil && strings.HasPrefix(r.URL.Path, acmeChallengePrefix) {
		// ACME HTTP-01: the CA asks an http listener, before any redirect.
		if h := e.srv.acmeHTTP.Load(); h != nil {
			rec.Route = "acme-http-01"
			(*h).ServeHTTP(rw, r)
			return
		}
		if lt.redirect != nil {
			rec.Error = "no_route"
			pipeline.WriteError(rw, r, http.StatusNotFound)
			return
		}
	}
	if lt.redirect != nil && tf == nil {
		e.redirectToHTTPS(rw, r, rec, lt.redirect)
		return
	}
	if t.limits != nil && rec.ACLAction != "allow" && e.rateLimit(t.limits, rw, r, rec, client, start) {
		return
	}
	rt := t.router.match(r.Host, r.URL.Path)
	if (rt == nil || rt.pool == nil) && tf != nil && tf.entry != nil && tf.entry.Pool != "" {
		// The connection's SNI entry names a pool: it serves what no
		// route claims.
		rt = t.sniRoutes[tf.entry.Pool]
	}
	if rt == nil || rt.pool == nil {
		rec.Error = "no_route"
		pipeline.WriteError(rw, r, http.StatusNotFound)
		return
	}
	rec.Route, rec.PoolID, rec.Target = rt.name, rt.pool.Name, rt.pool
	rw.hs = rt.headers
	if rt.maxBody > 0 && (r.ContentLength > rt.maxBody || announcedBody(body) > rt.maxBody) {
		// Refused on the announced size (a Content-Length, or the chunk
		// sizes that came with the head), before a byte of the body is
		// read; the connection closes (WriteError says so) without
		// reading the rest.
		rec.Error = "body_too_large"
		e.srv.metrics.Blocked("request_limits", "max_body_bytes")
		pipeline.WriteError(rw, r, http.StatusRequestEntityTooLarge)
		return
	}
	if body != nil {
		body.setLimit(rt.maxBody) // a chunked body is cut off where it crosses it
	}
	// Stage 5, after the route is known because WAF settings are per
	// route (waf.go); allowlisted clients skip it like the rate limits.
	if t.waf != nil && rec.ACLAction != "allow" {
		refused, rc := e.inspect(t.waf.Policy(rt.name), rw, r, rec, client)
		if refused {
			return
		}
		if rc != nil {
			e.serveInspected(rc, rw, r, rec, client)
			return
		}
	}
	e.srv.proxy.ServeHTTP(rw, r)
}

// checkACL is pipeline stages 1 and 2 (DESIGN §1): an allowlisted client
// passes and skips the later checks, a blocklisted one (or one the geoip
// rules refuse) is refused. The client is the one established above, so a
// trusted proxy's X-Forwarded-For is honoured and anyone else's is not.
// With a GeoIP database the record gets the client's country and ASN.
func (e *entry) checkACL(rec *pipeline.Record, client netip.Addr) (denied bool) {
	d, geo := e.srv.acl.CheckGeo(client)
	rec.GeoCountry, rec.ASN = geo.Country, geo.ASN
	switch d.Action {
	case acl.ActionAllow:
		rec.ACLAction, rec.ACLSource = "allow", d.Source
	case acl.ActionDeny:
		rec.ACLAction, rec.ACLSource = "deny", d.Source
		e.srv.metrics.Blocked("acl", sourceKind(d.Source))
		return true
	}
	return false
}

// offense counts an offence of client (acl.Offence*) towards a dynamic
// block. The ACL spares every listener's trusted proxies: a request blamed
// on one came without a usable X-Forwarded-For, and blocking the proxy
// would block every client behind it (slow-client scoring spares them too).
func (e *entry) offense(client netip.Addr, kind string) {
	e.srv.acl.Offense(client, kind)
}

// admit is the connection guard: a blocklisted peer is closed at accept,
// before a byte is read (or, later, a TLS handshake is spent on it); then
// the per-IP connection limits apply, except to allowlisted peers.
func (e *entry) admit(c net.Conn) bool {
	ap, ok := addrPort(c.RemoteAddr())
	if !ok {
		return true
	}
	d := e.srv.acl.Check(ap.Addr())
	if d.Action == acl.ActionDeny && strings.HasPrefix(d.Source, acl.SourceGeoPrefix) {
		// The country or network of a trusted proxy says nothing about
		// its clients, who are checked by request (X-Forwarded-For).
		if lt := e.srv.table.Load().listeners[*e.l.name.Load()]; lt != nil && lt.trusted.contains(ap.Addr()) {
			d = acl.Decision{}
		}
	}
	if d.Action == acl.ActionDeny {
		e.srv.metrics.Blocked("acl_accept", sourceKind(d.Source))
		e.logAccept(ap, "deny", d.Source, "blocked_at_accept")
		return false
	}
	if e.pp {
		return true // preface checks and counts the client
	}
	// Every admitted connection is counted (allowlisted ones too, so the
	// close hook releases what was counted whatever the lists say by
	// then); the limits are not applied to allowlisted peers.
	t := e.srv.table.Load()
	maxOpen, maxNew := t.maxConnsPerIP, t.maxNewPerIP
	if d.Action == acl.ActionAllow {
		maxOpen, maxNew = 0, 0
	}
	if reason := e.srv.conns.admit(ap.Addr(), maxOpen, maxNew, time.Now()); reason != "" {
		e.srv.metrics.Blocked("conn_limit", reason)
		e.logAccept(ap, "", "", "conn_limit: "+reason)
		return false
	}
	return true
}

// closed is the engine's close hook: it releases what admit counted.
func (e *entry) closed(c net.Conn) {
	if e.pp {
		if pc, ok := c.(*ppConn); ok && pc.counted {
			e.srv.conns.release(pc.client.Addr(), time.Now())
		}
		return
	}
	if ap, ok := addrPort(c.RemoteAddr()); ok {
		e.srv.conns.release(ap.Addr(), time.Now())
	}
}

// logAccept writes the access-log record of a connection refused at accept.
func (e *entry) logAccept(ap netip.AddrPort, action, source, reason string) {
	t := e.srv.table.Load()
	rec := pipeline.NewRecord()
	rec.Timestamp = time.Now()
	rec.Listener = *e.l.name.Load()
	rec.LBInstance = t.instance
	rec.ClientIP, rec.ClientPort = ap.Addr().Unmap().String(), int(ap.Port())
	rec.ACLAction, rec.ACLSource = action, source
	rec.Error = reason
	t.accessLog.Log(rec)
	pipeline.Release(rec)
}

// sourceKind turns a decision source into a metric label of bounded
// cardinality: feed names come from the config, dynamic entry ids do not.
func sourceKind(src string) string {
	if strings.HasPrefix(src, "dynamic:") {
		return "dynamic"
	}
	return src
}

// refused logs a request the HTTP engine refused before it reached the
// pipeline (malformed, oversized or too slow): it never had a route, a
// request id from the client or a backend.
func (e *entry) refused(ctx context.Context, status int, reason string, req *http1.RefusedRequest) {
	t := e.srv.table.Load()
	rec := pipeline.NewRecord()
	rec.Timestamp = time.Now()
	if req != nil {
		// What the engine had parsed: a refused smuggling attempt's log
		// line names its method, path and host (the sanitiser applies).
		rec.Method, rec.Host = req.Method, req.Host
		rec.Path, rec.Query = refusedTarget(req.Target)
	}
	rec.Listener = *e.l.name.Load()
	rec.LBInstance = t.instance
	if ci, ok := ctx.Value(connInfoKey{}).(*connInfo); ok {
		// Behind a trusted proxy the client is in X-Forwarded-For, as for
		// an accepted request: a refused smuggling attempt is not blamed
		// on the CDN in front.
		var xff []string
		if req != nil {
			xff = req.XForwardedFor
		}
		ci.setClient(rec, t.listeners[*e.l.name.Load()], xff)
		rec.SlowClientScore = e.srv.slow.score(ci.peer.Addr(), rec.Timestamp)
		if ci.tls != nil {
			ci.tls.fill(rec)
		}
	}
	rec.RequestID = requestID("")
	rec.StatusCode = status
	rec.Error = "refused: " + reason
	e.srv.metrics.Blocked("http", reason)
	e.srv.metrics.ObserveRequest(rec) // answered too: requests_total counts it (pool "none")
	t.accessLog.Log(rec)
	pipeline.Release(rec)
}

// setClient fills rec's server and client fields from the connection and,
// for a peer the listener trusts, from its X-Forwarded-For chain; it
// returns the client.
func (ci *connInfo) setClient(rec *pipeline.Record, lt *listenerSettings, xff []string) netip.Addr {
	rec.ServerIP, rec.ServerPort = ci.serverIP, ci.serverPort
	rec.ClientIP, rec.XForwardedFor, rec.ClientPort = ci.peerIP, ci.peerIP, int(ci.peer.Port())
	client := ci.peer.Addr()
	if len(xff) > 0 && lt != nil && len(lt.trusted) > 0 {
		var chain string
		client, chain = lt.trusted.clientIP(client, xff)
		if client != ci.peer.Addr() {
			rec.ClientIP, rec.ClientPort = client.String(), 0
		}
		rec.XForwardedFor = chain
	}
	return client
}

// refusedTarget splits a refused request's target into the path and query
// its log line records, as an accepted request's would be: the path
// percent-decoded (the sanitiser masks ";token=" however it was encoded)
// and an absolute form's scheme, userinfo and host left out. A target
// that does not parse keeps its path's valid escapes decoded.
func refusedTarget(target string) (path, query string) {
	if u, err := url.Parse(target); err == nil && u.Opaque == "" {
		return u.Path, u.RawQuery
	}
	path, query, _ = strings.Cut(target, "?")
	if i := strings.Index(path, "://"); i >= 0 { // no userinfo in the log
		path = path[i+3:]
		if j := strings.IndexByte(path, '/'); j >= 0 {
			path = path[j:]
		} else {
			path = "/"
		}
	}
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		if path[i] == '%' && i+2 < len(path) {
			if v, err := strconv.ParseUint(path[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(path[i])
	}
	return b.String(), query
}

// finish completes the record, hands it to the metrics and the access log
// and releases it, after freeing the connection's slot (and with it rw and
// body, when they are the connection's).
func (e *entry) finish(ctx context.Context, rec *pipeline.Record, rw *responseWriter, body *countingBody, start time.Time) {
	switch {
	case rw.status == 0 && rec.TargetStatusCode == http.StatusSwitchingProtocols:
		// An upgrade: the 101 went out on the hijacked connection.
		rec.StatusCode = http.StatusSwitchingProtocols
	case rw.status == 0 && rec.Error == "":
		rec.StatusCode = http.StatusOK // handler wrote nothing: net/http sends 200
	}
	rec.ResponseSizeBytes = rw.written
	if body != nil {
		rec.RequestSizeBytes = body.count()
	}
	if t := rw.tunnel; t != nil {
		rec.RequestSizeBytes += t.in.Load()
		rec.ResponseSizeBytes += t.out.Load()
		if t.blocked.Load() {
			rec.ACLAction, rec.Error = "deny", "blocked_mid_tunnel"
		}
		t.Close() // ends its guard, if the proxy has not closed it
	}
	rec.RequestTimeMs = float64(time.Since(start).Microseconds()) / 1000
	// The answer's header map may still hold idHeader: the HTTP/1 engine
	// writes a head of unknown length and empty body only after the
	// handler returned. The next request's id replaces it once the engine
	// has cleared the map.
	*rw = responseWriter{idHeader: rw.idHeader}
	pipeline.Detach(ctx, rec)
	if rec.Error == "request_body_413" {
		// A streamed body that crossed max_body_bytes on its way to the
		// backend; one announced too large is counted where it is refused.
		e.srv.metrics.Blocked("request_limits", "max_body_bytes")
	}
	e.srv.metrics.ObserveRequest(rec)
	// The log the config names now: a request that outlived a reload
	// which changed the access log goes to the new one (the old one is
	// closed 5 s after the reload, and would drop its line).
	e.srv.table.Load().accessLog.Log(rec)
	pipeline.Release(rec)
}

// firstValue is Header.Get for a key already in canonical form: the
// engines store keys canonical, and Get would check that again per call.
func firstValue(h http.Header, key string) string {
	if vv := h[key]; len(vv) > 0 {
		return vv[0]
	}
	return ""
}

// connInfo is what every request of a connection shares, parsed once per
// connection (http.Server.ConnContext) instead of once per request, and the
// wrappers that the request holding the connection's record slot uses
// (see entry.ServeHTTP), so they are not allocated per request.
type connInfo struct {
	peer       netip.AddrPort // unmapped
	peerIP     string
	serverIP   string
	serverPort int
	tls        *tlsFacts // nil: plaintext
	// requests counts the requests (HTTP/2 streams) the connection has
	// carried, for the access log's connection_reused.
	requests atomic.Uint64

	rw responseWriter
}

type connInfoKey struct{}

// newConnInfo reads a connection's addresses (see entry.connContext, the
// listeners' ConnContext).
func newConnInfo(c net.Conn) *connInfo {
	ci := &connInfo{}
	if ap, ok := addrPort(c.RemoteAddr()); ok {
		ci.peer = ap
		ci.peerIP = ap.Addr().String()
	}
	if ap, ok := addrPort(c.LocalAddr()); ok {
		ci.serverIP, ci.serverPort = ap.Addr().String(), int(ap.Port())
	}
	return ci
}

// responseWriter records status and size. Unwrap lets http.ResponseController
// reach the connection for flushing and for protocol upgrades (WebSocket).
type responseWriter struct {
	http.ResponseWriter
	rec      *pipeline.Record
	hs       *headerSet // security.headers of the route (or the global ones)
	hsts     []string   // Strict-Transport-Security of an https listener
	status   int
	written  int64
	tunnel   *tunnelConn // the client's connection after a protocol switch
	acl      *acl.ACL    // for the tunnel's guard
	idHeader [1]string   // the X-Request-Id value, without a slice allocation
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
		w.rec.StatusCode = code
		w.setRequestID()
		w.hs.apply(w.ResponseWriter)
		w.setHSTS()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
		w.rec.StatusCode = http.StatusOK
		w.setRequestID()
		w.hs.apply(w.ResponseWriter)
		w.setHSTS()
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	if err != nil {
		w.writeFailed(err)
	}
	return n, err
}

// writeFailed records why the answer could not be written whole (the
// first reason only): the client read too slowly or not at all, or left.
// The status in the log is what was sent; the error says it did not end.
func (w *responseWriter) writeFailed(err error) {
	if w.rec.Error != "" {
		return
	}
	if se, ok := errors.AsType[*http1.SlowClientError](err); ok {
		w.rec.Error = se.Indicator // slow_read, write_timeout
		return
	}
	w.rec.Error = "client_write_failed"
}

// setRequestID makes the final answer carry exactly one X-Request-Id,
// Rampart's: the proxy adds a backend's own X-Request-Id beside the one set
// in ServeHTTP, and relaying a 1xx answer (103 Early Hints) clears every
// header set before it.
func (w *responseWriter) setRequestID() {
	if w.rec.RequestID != "" {
		w.idHeader[0] = w.rec.RequestID
		w.ResponseWriter.Header()["X-Request-Id"] = w.idHeader[:]
	}
}

// setHSTS replaces a backend's Strict-Transport-Security with the
// listener's: the policy is Rampart's.
func (w *responseWriter) setHSTS() {
	if w.hsts != nil {
		w.ResponseWriter.Header()["Strict-Transport-Security"] = w.hsts
	}
}

func (w *responseWriter) Flush() { w.FlushError() }

// FlushError is Flush for http.ResponseController; a failed flush is a
// failed write (writeFailed).
func (w *responseWriter) FlushError() error {
	switch f := w.ResponseWriter.(type) {
	case interface{ FlushError() error }:
		err := f.FlushError()
		if err != nil {
			w.writeFailed(err)
		}
		return err
	case http.Flusher:
		f.Flush()
	}
	return nil
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts a request body's bytes and holds it to the route's
// max_body_bytes. It is read by http.Transport's write loop while the
// handler's goroutine sets the limit and, at the end, takes the count:
// mu orders them.
type countingBody struct {
	io.ReadCloser
	mu    sync.Mutex
	n     int64
	limit int64 // max_body_bytes of the route; 0 until routed
}

// announcedBody is what a chunked body's size lines that came with the
// head announce (the HTTP/1 engine's body.Announced), 0 if unknown.
func announcedBody(b *countingBody) int64 {
	if b == nil {
		return 0
	}
	if a, ok := b.ReadCloser.(interface{ Announced() int64 }); ok {
		return a.Announced()
	}
	return 0
}

func (b *countingBody) setLimit(n int64) {
	b.mu.Lock()
	b.limit = n
	b.mu.Unlock()
}

func (b *countingBody) count() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// Request ids are a random per-process prefix, a counter and 32 random bits:
// unique across instances and restarts without a syscall per request, and
// not predictable, so that a client cannot send, as its own, the id the
// next client's request is about to get (two unrelated log lines under one
// id). The random part comes from the runtime's ChaCha8 generator.
var (
	idPrefix  = newIDPrefix()
	idCounter atomic.Uint64
)

func newIDPrefix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// requestID keeps a client-supplied id when it is short and plain (so a
// request can be traced across tiers) and makes one otherwise; an id with
// odd characters could forge log lines or headers downstream.
func requestID(in string) string {
	if in != "" && len(in) <= 128 {
		ok := true
		for i := 0; i < len(in) && ok; i++ {
			c := in[i]
			ok = c == '-' || c == '_' || c == '.' || c == ':' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		}
		if ok {
			return in
		}
	}
	return newRequestID()
}

const hexDigits = "0123456789abcdef"

// maxIDLen is the length of the longest id Rampart makes: the 16 hex
// digits of the prefix, '-', at most 16 of the counter, '-' and 8 random.
const maxIDLen = 42

// idSlab hands out ids cut from one larger string, so that an id costs a
// sixty-fourth of an allocation instead of one. A strings.Builder never
// changes bytes it has already handed out through String, so each id stays
// immutable while the slab fills up behind it.
type idSlab struct{ b strings.Builder }

var idSlabs = sync.Pool{New: func() any { return new(idSlab) }}

func newRequestID() string {
	s := idSlabs.Get().(*idSlab)
	if s.b.Cap()-s.b.Len() < maxIDLen {
		s.b = strings.Builder{}
		s.b.Grow(64 * maxIDLen)
	}
	start := s.b.Len()
	var buf [maxIDLen]byte
	copy(buf[:], idPrefix)
	buf[16] = '-'
	b := strconv.AppendUint(buf[:17], idCounter.Add(1), 16)
	b = append(b, '-')
	for r, i := mathrand.Uint32(), 28; i >= 0; i -= 4 { // 8 hex digits, fixed width
		b = append(b, hexDigits[r>>i&0xf])
	}
	s.b.Write(b)
	id := s.b.String()[start:]
	idSlabs.Put(s)
	return id
}
