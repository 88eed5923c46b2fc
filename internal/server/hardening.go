package server

import (
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/server/http1"
)

// enginePolicy turns security.request_limits and slowloris_protection into
// the HTTP engine's policy (applied on start and on every reload).
func enginePolicy(cfg *config.Config) http1.Policy {
	s := &cfg.Security.SlowlorisProtection
	r := &cfg.Security.RequestLimits
	h2 := &cfg.Security.HTTP2
	return http1.Policy{
		Limits: http1.Limits{
			MaxRequestLineBytes: r.MaxRequestLineBytes,
			MaxHeaderBytes:      r.MaxHeaderBytes,
			MaxHeaders:          r.MaxHeaders,
		},
		ReadHeaderTimeout: config.Seconds(s.HeaderTimeoutSeconds),
		IdleTimeout:       config.Seconds(s.IdleTimeoutSeconds),
		BodyTimeout:       config.Seconds(s.BodyTimeoutSeconds),
		MinBodyRate:       s.MinDataRateBytesPerSecond,
		WriteTimeout:      config.Seconds(s.WriteTimeoutSeconds),
		// min_data_rate applies in both directions: a client must send its
		// body and read its answer at least this fast.
		MinReadRate:    s.MinDataRateBytesPerSecond,
		AllowedMethods: r.AllowedMethods,
		// security.headers on the engine's own refusals (400, 408, 413, 414,
		// 431): the global set (no route is known yet). The engine sends no
		// Server header, so remove_server holds for them by construction.
		RefusalHeaders: cfg.Security.Headers.Add,
		HTTP2: http1.HTTP2Limits{
			MaxConcurrentStreams:      h2.MaxConcurrentStreams,
			MaxHeaderTableSize:        h2.MaxHeaderTableSize,
			MaxReadFrameSize:          h2.MaxReadFrameSize,
			MaxReceiveBufferPerStream: h2.MaxReceiveBufferPerStream,
			MaxResetsPerSecond:        h2.MaxResetsPerSecond,
		},
	}
}

// connLimiter enforces max_connections_per_ip and
// max_new_connections_per_ip_per_second at accept time. Its memory is
// bounded: an address has an entry only while it has open connections or
// opened one within the last second, and each shard sweeps the others out
// as it grows.
type connLimiter struct {
	seed   maphash.Seed
	shards [64]connShard
}

type connShard struct {
	mu    sync.Mutex
	m     map[netip.Addr]*ipConns
	swept time.Time
}

type ipConns struct {
	open   int
	window int64 // unix second of the count below
	fresh  int   // connections opened in that second
}

func newConnLimiter() *connLimiter {
	l := &connLimiter{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = map[netip.Addr]*ipConns{}
	}
	return l
}

// connKey is the address a connection is counted under: an IPv6 client
// by its /64, which one host usually holds whole (rate limits and
// auto-block count it so too; per address, 30 connections from one /64
// passed a limit of 3), an IPv4 one by itself.
func connKey(a netip.Addr) netip.Addr {
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func (l *connLimiter) shard(a netip.Addr) *connShard {
	b := a.As16()
	return &l.shards[maphash.Bytes(l.seed, b[:])%uint64(len(l.shards))]
}

// admit counts a new connection from a, unless it would exceed maxOpen
// open connections or maxNew new ones in this second (0: no limit). It
// returns the reason of a refusal, or "" for admitted.
func (l *connLimiter) admit(a netip.Addr, maxOpen, maxNew int, now time.Time) string {
	a = connKey(a)
	sh := l.shard(a)
	sec := now.Unix()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.m) > 1024 && now.Sub(sh.swept) > time.Second {
		sh.swept = now
		for k, e := range sh.m {
			if e.open == 0 && e.window != sec {
				delete(sh.m, k)
			}
		}
	}
	e := sh.m[a]
	if e == nil {
		e = &ipConns{}
		sh.m[a] = e
	}
	if e.window != sec {
		e.window, e.fresh = sec, 0
	}
	switch {
	case maxOpen > 0 && e.open >= maxOpen:
		return "max_connections_per_ip"
	case maxNew > 0 && e.fresh >= maxNew:
		return "max_new_connections_per_ip_per_second"
	}
	e.open++
	e.fresh++
	return ""
}

// release ends a connection admit counted.
func (l *connLimiter) release(a netip.Addr, now time.Time) {
	a = connKey(a)
	sh := l.shard(a)
	sh.mu.Lock()
	if e := sh.m[a]; e != nil {
		if e.open--; e.open <= 0 && e.window != now.Unix() {
			delete(sh.m, a)
		}
	}
	sh.mu.Unlock()
}

// open returns the connections counted for a (tests).
func (l *connLimiter) open(a netip.Addr) int {
	a = connKey(a)
	sh := l.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[a]; e != nil {
		return e.open
	}
	return 0
}

// addrPort returns a connection address as an unmapped netip.AddrPort,
// without formatting and parsing it for TCP connections.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	}
	ap, err := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err == nil
}

// headerSet is security.headers compiled for one route: the headers to set
// (values shared, never modified) and whether Server is dropped.
type headerSet struct {
	removeServer bool
	set          map[string][]string
	// fields is set as a list: apply runs for every answer, and ranging
	// over a short slice is much cheaper than over a map. block is the
	// same fields serialised, for the HTTP/1 engine (http1.FieldBlock),
	// which also drops Server when removeServer says so.
	fields []setField
	block  *http1.FieldBlock
}

// fieldBlockWriter is the HTTP/1 engine's response writer, which takes
// fields already serialised (http1's AddFieldBlock).
type fieldBlockWriter interface{ AddFieldBlock(*http1.FieldBlock) }

type setField struct {
	key  string
	vals []string
}

func newHeaderSet(g *config.Headers, route *config.RouteHeaders) *headerSet {
	hs := &headerSet{removeServer: g.RemoveServer == nil || *g.RemoveServer, set: map[string][]string{}}
	for k, v := range g.Add {
		hs.set[http.CanonicalHeaderKey(k)] = []string{v}
	}
	if route != nil {
		for k, v := range route.Add {
			hs.set[http.CanonicalHeaderKey(k)] = []string{v}
		}
	}
	for k, v := range hs.set {
		if v[0] == "" { // "" removes a header set globally
			delete(hs.set, k)
		}
	}
	var lines [][2]string
	for k, v := range hs.set {
		hs.fields = append(hs.fields, setField{k, v})
		lines = append(lines, [2]string{k, v[0]})
	}
	var drop []string
	if hs.removeServer {
		drop = []string{"Server"}
	}
	hs.block = http1.NewFieldBlock(lines, drop...)
	return hs
}

// apply shapes the final answer's headers: Rampart's security headers
// replace the backend's of the same name. On the HTTP/1 engine they go out
// as a serialised block, which the engine writes in place of the map's
// fields of those names (and of Server); elsewhere (HTTP/2, tests) they
// are set in the map.
func (hs *headerSet) apply(w http.ResponseWriter) {
	if hs == nil {
		return
	}
	if fb, ok := w.(fieldBlockWriter); ok {
		fb.AddFieldBlock(hs.block) // it replaces the map's fields of its names
		return
	}
	h := w.Header()
	if hs.removeServer {
		delete(h, "Server")
	}
	for _, f := range hs.fields {
		h[f.key] = f.vals
	}
}

// bodyTooLarge is the error a request body crossing max_body_bytes ends
// with; the proxy answers it with 413.
type bodyTooLarge struct{}

func (bodyTooLarge) Error() string   { return "request body larger than max_body_bytes" }
func (bodyTooLarge) HTTPStatus() int { return http.StatusRequestEntityTooLarge }

var errBodyTooLarge error = bodyTooLarge{}

// Read reads the body, counting it; past a limit it ends the body with
// errBodyTooLarge (a chunked body is cut where it crosses it).
func (b *countingBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	limit, read := b.limit, b.n
	b.mu.Unlock()
	if limit > 0 && read >= limit {
		// One byte more tells "exactly the limit" from "more".
		var one [1]byte
		n, err := b.ReadCloser.Read(one[:])
		if n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if limit > 0 && int64(len(p)) > limit-read {
		p = p[:limit-read]
	}
	n, err := b.ReadCloser.Read(p)
	b.mu.Lock()
	b.n += int64(n)
	b.mu.Unlock()
	return n, err
}

var _ io.Reader = (*countingBody)(nil)

// SYNPosture is the kernel's SYN-flood posture, read from /proc/sys.
type SYNPosture struct {
	SynCookies    int // net.ipv4.tcp_syncookies: 0 off, 1 when the backlog overflows, 2 always; -1 unknown
	MaxSynBacklog int // net.ipv4.tcp_max_syn_backlog; -1 unknown
	Somaxconn     int // net.core.somaxconn (caps every listen backlog, Go's included); -1 unknown
}

// ReadSYNPosture reads the posture; values it cannot read are -1.
func ReadSYNPosture(root string) SYNPosture {
	read := func(p string) int {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			return -1
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return -1
		}
		return n
	}
	return SYNPosture{
		SynCookies:    read("net/ipv4/tcp_syncookies"),
		MaxSynBacklog: read("net/ipv4/tcp_max_syn_backlog"),
		Somaxconn:     read("net/core/somaxconn"),
	}
}

// Problems lists where the kernel contradicts syn_flood_protection.
func (p SYNPosture) Problems(f *config.SynFloodProtection) []string {
	if !f.SYNFloodEnabled() {
		return nil
	}
	var out []string
	if f.SYNCookies() && p.SynCookies == 0 {
		out = append(out, "syn_cookies is true but net.ipv4.tcp_syncookies is 0 (set it to 1)")
	}
	if p.MaxSynBacklog >= 0 && p.MaxSynBacklog < f.MaxSynBacklog {
		out = append(out, fmt.Sprintf("net.ipv4.tcp_max_syn_backlog is %d, below max_syn_backlog %d", p.MaxSynBacklog, f.MaxSynBacklog))
	}
	if p.Somaxconn >= 0 && p.Somaxconn < f.MaxSynBacklog {
		out = append(out, fmt.Sprintf("net.core.somaxconn is %d, below max_syn_backlog %d (it caps the listen backlog)", p.Somaxconn, f.MaxSynBacklog))
	}
	return out
}

// checkSYNPosture warns, or refuses the start with on_mismatch: refuse,
// when the kernel contradicts syn_cookies: true. Backlog shortfalls only
// warn.
func (s *Server) checkSYNPosture(cfg *config.Config) error {
	f := &cfg.Security.SynFloodProtection
	p, err := s.applySYNSysctls(cfg, ReadSYNPosture(s.procSys))
	if err != nil {
		return err
	}
	probs := p.Problems(f)
	for _, m := range probs {
		s.log.Warn("SYN flood posture: "+m, "tcp_syncookies", p.SynCookies, "tcp_max_syn_backlog", p.MaxSynBacklog, "somaxconn", p.Somaxconn)
	}
	if f.OnMismatch == "refuse" && f.SYNFloodEnabled() && f.SYNCookies() && p.SynCookies == 0 {
		return config.Problems{{File: cfg.File, Line: cfg.Line("security.syn_flood_protection.syn_cookies"),
			Msg: "syn_cookies is true but the kernel has net.ipv4.tcp_syncookies = 0, and on_mismatch is refuse"}}
	}
	return nil
}
