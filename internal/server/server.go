// Package server runs Rampart's listeners: it binds them, builds the
// immutable routing table from a config, swaps it atomically on reload and
// shuts down gracefully.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/accesslog"
	"github.com/rampart-proxy/rampart/internal/acl"
	"github.com/rampart-proxy/rampart/internal/admin"
	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/evloop"
	"github.com/rampart-proxy/rampart/internal/metrics"
	"github.com/rampart-proxy/rampart/internal/pipeline"
	"github.com/rampart-proxy/rampart/internal/proxy"
	"github.com/rampart-proxy/rampart/internal/ratelimit"
	"github.com/rampart-proxy/rampart/internal/server/http1"
	"github.com/rampart-proxy/rampart/internal/tlsterm"
	"github.com/rampart-proxy/rampart/internal/waf"
)

// Server is one running Rampart instance.
type Server struct {
	log   *slog.Logger
	reg   *proxy.Registry
	proxy *proxy.Handler
	audit *audit.Log // lives for the whole process, like reg
	// metrics live for the whole process too: counters survive reloads.
	metrics *metrics.Metrics
	// acl holds the IP lists; dynamic entries and feed data survive reloads.
	acl *acl.ACL
	// conns counts connections per client address (connection guard).
	conns *connLimiter
	// limits holds the rate limiters; client state survives reloads.
	limits *limiters
	// slow scores slow clients (slowclients.go); scores survive reloads.
	slow *slowClients
	// procSys is where the SYN-flood posture is read and applied
	// (/proc/sys; tests point it at a temporary directory).
	procSys string
	// wafCount counts WAF verdicts (waf.go).
	wafCount wafCounters
	// acmeHTTP answers ACME HTTP-01 challenges (SetACMEHTTPHandler).
	acmeHTTP atomic.Pointer[http.Handler]
	// acme obtains the certificates with an acme block (nil: none at
	// start); it lives for the whole process, its state in data_dir/acme.
	acme *tlsterm.ACME

	// table is everything a request reads from the config, replaced as a
	// whole on reload so a request sees one config from start to end.
	table atomic.Pointer[table]

	mu        sync.Mutex // serialises Start, Reload and Shutdown
	cfg       *config.Config
	listeners map[string]*listener // by address
	// draining are listeners a reload removed, still finishing their
	// requests (shutdownListener); Shutdown waits for them too.
	draining map[*listener]struct{}
	admin    *http.Server
	adminLn  net.Listener
	started  time.Time
	stopped  bool
	reloads  atomic.Int64
	// reloadFailures, lastReloadFailed and pendingRestart (under mu): see
	// ReloadFailures and PendingRestart.
	reloadFailures   atomic.Int64
	lastReloadFailed atomic.Bool
	pendingRestart   []string
}

type table struct {
	instance string
	router   *router
	headers  *headerSet // security.headers for answers without a route
	// per-IP connection limits (0: none), read at every accept
	maxConnsPerIP, maxNewPerIP int
	listeners                  map[string]*listenerSettings
	accessLog                  *accesslog.Logger
	limits                     *rlTable // nil: no rate limits configured
	allowEncodedSlashes        bool     // security.request_limits.allow_encoded_slashes
	waf                        *waf.WAF // nil: no route inspects requests
	// sniRoutes serve requests no route matches on connections whose SNI
	// entry names a pool, by pool name.
	sniRoutes map[string]*route
}

type listenerSettings struct {
	trusted trustedProxies
	// hsts is the Strict-Transport-Security value of an https listener
	// with hsts.enabled (nil: none).
	hsts []string
	// redirect is set on an http listener with redirect_to_https.
	redirect *redirectTarget
}

type listener struct {
	// name is read by every request (it selects the listener's settings in
	// the table) and changes when a reload renames the listener.
	name atomic.Pointer[string]
	cfg  config.Listener
	ln   net.Listener
	srv  *http1.Server
	done chan struct{}
	// term is an https listener's TLS, fixed for the socket's life (a
	// reload updates it; a change of protocol waits for a restart).
	term *tlsterm.Terminator
}

// protocol is what the listener serves: "https" when it has TLS.
func (l *listener) protocol() string {
	if l.term != nil {
		return "https"
	}
	return "http"
}

// New prepares a server for cfg: it loads persisted backend overrides and
// builds pools, but binds nothing until Start.
func New(cfg *config.Config, log *slog.Logger) (*Server, error) {
	reg, err := proxy.NewRegistry(cfg.DataDir, log)
	if err != nil {
		return nil, err
	}
	s := &Server{log: log, reg: reg, proxy: proxy.NewHandler(log), cfg: cfg, listeners: map[string]*listener{}, conns: newConnLimiter()}
	s.metrics = metrics.New(s)
	s.limits = newLimiters(log)
	s.metrics.Registry().MustRegister(adaptiveCollector{s.limits}, redisCollector{s.limits})
	s.slow = newSlowClients(cfg)
	s.metrics.Registry().MustRegister(slowClientCollector{s.slow})
	s.metrics.Registry().MustRegister(eventLoopHandovers)
	s.procSys = "/proc/sys"
	s.wafCount = newWAFCounters(s.metrics.Registry())
	s.metrics.Registry().MustRegister(certCollector{s})
	wf, err := buildWAF(cfg, log)
	if err != nil {
		reg.Close()
		return nil, err
	}
	s.limits.events = s.auditAutomatic
	reg.SetEvents(s.auditAutomatic)
	if s.acl, err = acl.New(cfg, acl.Options{Logger: log, Events: s.auditAutomatic}); err != nil {
		reg.Close()
		return nil, err
	}
	reg.Apply(cfg.Pools)
	al, err := accesslog.Open(cfg.Resolve(cfg.Logging.AccessLog.Path), accesslog.ConfigOptions(cfg.Logging.AccessLog, log))
	if err != nil {
		reg.Close()
		s.acl.Close()
		return nil, fmt.Errorf("access log: %w", err)
	}
	s.table.Store(s.buildTable(cfg, al, wf))
	auditPath, auditKey := cfg.AuditPaths()
	if s.audit, err = audit.Open(audit.Options{Path: auditPath, KeyFile: auditKey, Logger: log}); err != nil {
		reg.Close()
		s.acl.Close()
		al.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) buildTable(cfg *config.Config, al *accesslog.Logger, wf *waf.WAF) *table {
	t := &table{
		waf:           wf,
		instance:      cfg.InstanceName,
		router:        newRouterFor(cfg, s.reg),
		headers:       newHeaderSet(&cfg.Security.Headers, nil),
		maxConnsPerIP: cfg.Security.SlowlorisProtection.MaxConnectionsPerIP,
		maxNewPerIP:   cfg.Security.SlowlorisProtection.MaxNewConnectionsPerIPPerS,
		listeners:     map[string]*listenerSettings{},
		accessLog:     al,
		limits:        s.limits.build(cfg),

		allowEncodedSlashes: cfg.Security.RequestLimits.AllowEncodedSlashes,
	}
	var redirect *redirectTarget
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		ls := &listenerSettings{trusted: newTrustedProxies(l.TrustedProxies)}
		if v := hstsValue(l); v != "" {
			ls.hsts = []string{v}
		}
		if l.Protocol == "http" && l.RedirectToHTTPS {
			if redirect == nil {
				redirect = newRedirectTarget(cfg)
			}
			ls.redirect = redirect
		}
		t.listeners[l.Name] = ls
		for _, sr := range l.SNIRouting {
			pool := sr.Pool
			if sr.Default != nil {
				pool = sr.Default.Pool
			}
			if p := s.reg.Pool(pool); p != nil && t.sniRoutes[pool] == nil {
				if t.sniRoutes == nil {
					t.sniRoutes = map[string]*route{}
				}
				t.sniRoutes[pool] = &route{name: "sni:" + pool, prefix: "/", pool: p, maxBody: cfg.BodyLimit(nil), headers: t.headers}
			}
		}
	}
	return t
}

// Registry returns the pool registry (for the admin API).
func (s *Server) Registry() *proxy.Registry { return s.reg }

// Metrics returns the Prometheus collectors (for the admin API's /metrics).
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// ACL returns the IP lists (for the admin API).
func (s *Server) ACL() *acl.ACL { return s.acl }

// Pools implements metrics.Source.
func (s *Server) Pools() []proxy.PoolStatus { return s.reg.Status() }

// ActiveConnections implements metrics.Source.
func (s *Server) ActiveConnections() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.listeners))
	for _, l := range s.listeners {
		out[*l.name.Load()] += l.srv.ActiveConns()
	}
	return out
}

// AccessLogDropped implements metrics.Source.
func (s *Server) AccessLogDropped() int64 { return s.table.Load().accessLog.Dropped() }

// Reloads implements metrics.Source.
func (s *Server) Reloads() int64 { return s.reloads.Load() }

// ReloadFailures returns the refused reloads so far and whether the last
// reload was refused.
func (s *Server) ReloadFailures() (int64, bool) {
	return s.reloadFailures.Load(), s.lastReloadFailed.Load()
}

// PendingRestart lists the changes of the last applied reload that take
// effect only after a restart (the reload answer carries them).
func (s *Server) PendingRestart() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pendingRestart)
}

// auditAutomatic records an action Rampart took by itself (outlier
// ejection, automatic block, adaptive rate-limit change). The components
// call it on a goroutine of their own, so a request never waits for the
// fsync; such an entry can be lost in a crash, unlike an API call's,
// which is answered only after it is on disk.
func (s *Server) auditAutomatic(ev audit.Event) {
	if s.audit == nil {
		return
	}
	if _, err := s.audit.Append(context.Background(), ev); err != nil {
		s.log.Error("automatic action NOT recorded in the audit trail", "action", ev.Action,
			"resource", ev.Resource.ID, "pool", ev.Resource.Pool, "error", err.Error())
	}
}

// Audit returns the audit trail (for the admin API and automatic actions).
func (s *Server) Audit() *audit.Log { return s.audit }

// Config returns the running config.
func (s *Server) Config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Start binds every listener and serves. A bind failure is reported as a
// config problem at the listener's line, and nothing stays bound.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkSYNPosture(s.cfg); err != nil {
		return err
	}
	bound, err := s.bind(s.cfg, s.cfg.Listeners)
	var ps config.Problems
	errors.As(err, &ps)
	if err == nil {
		if s.acme, err = tlsterm.NewACME(s.cfg, tlsterm.ACMEOptions{Log: s.log}); err != nil {
			ps = append(ps, config.Problem{File: s.cfg.File, Line: s.cfg.Line("listeners"), Msg: err.Error()})
		} else {
			ps = append(ps, s.buildTerminators(s.cfg, bound)...)
		}
	}
	adminLn, aerr := net.Listen("tcp", s.cfg.Admin.Listen)
	if aerr != nil {
		ps = append(ps, config.Problem{File: s.cfg.File, Line: s.cfg.Line("admin.listen"),
			Msg: fmt.Sprintf("admin: cannot listen on %s: %v", s.cfg.Admin.Listen, unwrapSyscall(aerr))})
	}
	if len(ps) > 0 {
		closeUnserved(bound)
		if s.acme != nil {
			s.acme.Close()
			s.acme = nil
		}
		if adminLn != nil {
			adminLn.Close()
		}
		return ps
	}
	for _, l := range bound {
		s.serve(l)
	}
	if s.acme != nil {
		// The listeners answer the CA's challenges from now on: HTTP-01
		// on the http listeners, TLS-ALPN-01 through the Terminators.
		s.SetACMEHTTPHandler(s.acme.HTTPHandler(nil))
		s.acme.Start()
	}
	s.adminLn = adminLn
	// The admin section is read per request and per accepted connection
	// (through Config, so they wait while Start or a reload holds s.mu):
	// tokens, roles, limits and TLS material apply on reload.
	// api.Listener serves TLS 1.2+, requiring client certificates with
	// admin.tls.client_ca_file, when admin.tls is set.
	api := admin.New(s, s.log, admin.Options{
		Config: func() *config.Admin { return &s.Config().Admin },
		// Repeated failures feed the offender API, so a remote guesser
		// ends up on the dynamic blocklist. Loopback is not reported: a
		// blocked 127.0.0.1 would take the local data plane down with it.
		OnAuthFailure: func(ip netip.Addr) {
			if !ip.IsLoopback() {
				s.acl.Offense(ip, acl.OffenceAdminAuth)
			}
		},
	})
	s.admin = &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go s.admin.Serve(api.Listener(adminLn))
	s.log.Info("admin API listening", "address", adminLn.Addr().String(), "tls", s.cfg.Admin.TLS != nil,
		"mtls", s.cfg.Admin.MTLS(), "tokens", len(s.cfg.Admin.Tokens))
	s.started = time.Now()
	return nil
}

// bind opens sockets for ls; on any failure it closes what it opened.
func (s *Server) bind(cfg *config.Config, ls []config.Listener) ([]*listener, error) {
	var out []*listener
	var ps config.Problems
	for _, lc := range ls {
		i := indexOfListener(cfg, lc.Name)
		ln, err := net.Listen("tcp", lc.Listen)
		if err != nil {
			ps = append(ps, config.Problem{File: cfg.File, Line: cfg.Line(fmt.Sprintf("listeners[%d].listen", i)),
				Msg: fmt.Sprintf("listener %q: cannot listen on %s: %v", lc.Name, lc.Listen, unwrapSyscall(err))})
			continue
		}
		l := &listener{cfg: lc, ln: ln}
		l.name.Store(&lc.Name)
		out = append(out, l)
	}
	if len(ps) > 0 {
		for _, l := range out {
			l.ln.Close()
		}
		return nil, ps
	}
	return out, nil
}

// buildTerminators gives the https listeners among ls their TLS; on any
// problem, what it built is closed again by the caller (closeUnserved).
func (s *Server) buildTerminators(cfg *config.Config, ls []*listener) config.Problems {
	var ps config.Problems
	for _, l := range ls {
		if l.cfg.Protocol != "https" {
			continue
		}
		term, err := s.newTerminator(cfg, l.cfg)
		if err != nil {
			ps = append(ps, terminatorProblem(cfg, l.cfg, err))
			continue
		}
		l.term = term
	}
	return ps
}

// closeUnserved releases bound listeners that never started serving.
func closeUnserved(ls []*listener) {
	for _, l := range ls {
		l.ln.Close()
		if l.term != nil {
			l.term.Close()
		}
	}
}

func indexOfListener(cfg *config.Config, name string) int {
	for i, l := range cfg.Listeners {
		if l.Name == name {
			return i
		}
	}
	return 0
}

func unwrapSyscall(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func (s *Server) serve(l *listener) {
	e := &entry{srv: s, l: l}
	l.srv = &http1.Server{
		Handler:     e,
		Admit:       e.admit,
		OnClose:     e.closed,
		ConnContext: e.connContext,
		OnRefused:   e.refused,
		OnSlow:      e.slowIndicator,
		// A client that left while its request waits for a backend
		// abandons the wait (proxy: 499 client_closed).
		OnClientGone: func(ctx context.Context) { pipeline.ClientGone(ctx) },
		OnHTTP2Error: func(errType string) {
			s.metrics.Blocked("http2", errType)
		},
		H2C: l.cfg.H2C,
		Log: s.log,
	}
	if l.cfg.ProxyProtocol {
		// Fixed for the socket's life: admit and closed count connections
		// one way or the other by it.
		e.pp = true
		l.srv.Preface = e.preface
	}
	if l.term != nil {
		// Fixed too: a reload updates what the Terminator serves through
		// this config's GetConfigForClient.
		l.srv.TLSConfig = l.term.TLSConfig()
		l.srv.OnTLSError = e.tlsFailed
	}
	if l.cfg.EventLoop() {
		// Fixed for the socket's life, like proxy_protocol.
		g, err := evloop.Default()
		if err != nil {
			s.log.Error("event loops unavailable; connections run as goroutines", "listener", l.cfg.Name, "error", err)
		} else {
			l.srv.Loops = g
		}
	}
	// Request limits and timeouts; apply() swaps them on reload.
	l.srv.Configure(listenerPolicy(s.cfg, &l.cfg, l.term != nil))
	l.done = make(chan struct{})
	s.listeners[l.cfg.Listen] = l
	s.log.Info("listening", "listener", l.cfg.Name, "address", l.ln.Addr().String(), "tls", l.term != nil,
		"h2c", l.cfg.H2C, "proxy_protocol", l.cfg.ProxyProtocol, "eventloop", l.srv.Loops != nil)
	go func() {
		defer close(l.done)
		if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http1.ErrServerClosed) {
			s.log.Error("listener stopped", "listener", l.cfg.Name, "error", err)
		}
	}()
}

// AdminAddr returns the bound address of the admin API.
func (s *Server) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}

// Addr returns the bound address of a listener (useful with port 0).
func (s *Server) Addr(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if *l.name.Load() == name {
			return l.ln.Addr().String()
		}
	}
	return ""
}

// Reload loads path and, if it is valid and its new listeners can be bound,
// switches to it. Otherwise the running config stays untouched and the
// problems are returned. In-flight requests finish on the table they
// started with.
func (s *Server) Reload(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		s.log.Error("reload refused: config invalid, keeping the running config", "file", path, "problems", err.Error())
	} else {
		err = s.apply(cfg)
	}
	if err != nil {
		s.reloadFailures.Add(1)
	}
	s.lastReloadFailed.Store(err != nil)
	return err
}

func (s *Server) apply(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fixed config.Problems // settings that only a restart changes
	var pending []string      // changes applied only after a restart, for the answer
	if cfg.DataDir != s.cfg.DataDir {
		fixed = append(fixed, config.Problem{File: cfg.File, Line: cfg.Line("data_dir"),
			Msg: fmt.Sprintf("data_dir cannot change on reload (running with %s); restart Rampart to change it", s.cfg.DataDir)})
	}
	if cfg.Admin.Listen != s.cfg.Admin.Listen {
		fixed = append(fixed, config.Problem{File: cfg.File, Line: cfg.Line("admin.listen"),
			Msg: fmt.Sprintf("admin.listen cannot change on reload (running on %s); restart Rampart to change it", s.cfg.Admin.Listen)})
	}
	if len(fixed) > 0 {
		s.log.Error("reload refused", "problems", fixed.Error())
		return fixed
	}
	if cfg.Logging.AuditLog != s.cfg.Logging.AuditLog {
		err := config.Problems{{File: cfg.File, Line: cfg.Line("logging.audit_log"),
			Msg: "logging.audit_log cannot change on reload (the audit trail is one chain); restart Rampart to change it"}}
		s.log.Error("reload refused", "problems", err.Error())
		return err
	}
	// Listeners are matched by address: a listener whose address is still
	// configured keeps its socket and connections (a rename or a change of
	// trusted_proxies applies at once); new addresses are bound before
	// anything is closed, so a bind failure leaves the old config running.
	var add []config.Listener
	keep := map[string]config.Listener{}
	for _, lc := range cfg.Listeners {
		if old := s.listeners[lc.Listen]; old != nil {
			keep[lc.Listen] = lc
			if old.cfg.H2C != lc.H2C {
				s.log.Warn("h2c change on a running listener applies after restart", "listener", lc.Name)
				pending = append(pending, "listener "+lc.Name+": h2c")
			}
			if old.cfg.EventLoop() != lc.EventLoop() {
				s.log.Warn("engine change on a running listener applies after restart", "listener", lc.Name)
				pending = append(pending, "listener "+lc.Name+": engine")
			}
			if old.cfg.ProxyProtocol != lc.ProxyProtocol {
				s.log.Warn("proxy_protocol change on a running listener applies after restart", "listener", lc.Name)
				pending = append(pending, "listener "+lc.Name+": proxy_protocol")
			}
			if (old.term != nil) != (lc.Protocol == "https") {
				s.log.Warn("protocol change (http/https) on a running listener applies after restart", "listener", lc.Name,
					"serving", old.protocol())
				pending = append(pending, "listener "+lc.Name+": protocol (still "+old.protocol()+")")
			}
			continue
		}
		add = append(add, lc)
	}
	if cfg.Security.HTTP2 != s.cfg.Security.HTTP2 && len(keep) > 0 {
		// A running listener's HTTP/2 server keeps the limits it started
		// with (net/http reads them once); new listeners get the new ones.
		s.log.Warn("security.http2 changes apply to running listeners after restart")
		pending = append(pending, "security.http2")
	}
	var remove []*listener
	for addr, l := range s.listeners {
		if _, ok := keep[addr]; !ok {
			remove = append(remove, l)
		}
	}
	// The WAF is compiled before anything changes: rules that do not
	// compile leave the running WAF (and config) in place.
	wf, err := buildWAF(cfg, s.log)
	if err != nil {
		s.log.Error("reload refused: WAF rules, keeping the running config", "problems", err.Error())
		return err
	}
	bound, err := s.bind(cfg, add)
	if err != nil {
		s.log.Error("reload refused: cannot bind, keeping the running config", "problems", err.Error())
		return err
	}
	// Everything below can still fail: undo takes back what was done so
	// far, so a refused reload leaves the running config as it was.
	var (
		updated []*listener // running https listeners given the new TLS
		al      = s.table.Load().accessLog
		oldAL   = al
	)
	undo := func() {
		closeUnserved(bound)
		if al != oldAL {
			al.Close()
		}
		for _, l := range updated {
			if err := l.term.Update(s.cfg, l.cfg); err != nil {
				s.log.Error("reload: restoring a listener's previous TLS failed", "listener", l.cfg.Name, "error", err.Error())
			}
		}
	}
	// New https listeners get their TLS before anything changes.
	if ps := s.buildTerminators(cfg, bound); len(ps) > 0 {
		undo()
		s.log.Error("reload refused: TLS, keeping the running config", "problems", ps.Error())
		return ps
	}
	// A new logger also for new sanitize/rotation settings on the same
	// path: the old one finishes its lines, and both coordinate on the
	// file through its lock (see accesslog/rotate.go).
	if !cfg.Logging.AccessLog.Equal(s.cfg.Logging.AccessLog) {
		nal, err := accesslog.Open(cfg.Resolve(cfg.Logging.AccessLog.Path), accesslog.ConfigOptions(cfg.Logging.AccessLog, s.log))
		if err != nil {
			undo()
			err = config.Problems{{File: cfg.File, Line: cfg.Line("logging.access_log.path"), Msg: fmt.Sprintf("access log: %v", err)}}
			s.log.Error("reload refused", "problems", err.Error())
			return err
		}
		al = nal
	}
	// Running https listeners: new certificates, SNI table and policy
	// (certificate files are read here; one that does not load refuses
	// the reload).
	for addr, lc := range keep {
		l := s.listeners[addr]
		if l.term == nil || lc.Protocol != "https" {
			continue
		}
		if err := l.term.Update(cfg, lc); err != nil {
			undo()
			ps := config.Problems{terminatorProblem(cfg, lc, err)}
			s.log.Error("reload refused: TLS, keeping the running config", "problems", ps.Error())
			return ps
		}
		updated = append(updated, l)
	}
	if s.acme != nil {
		if err := s.acme.Update(cfg); err != nil {
			undo()
			ps := config.Problems{{File: cfg.File, Line: cfg.Line("listeners"), Msg: err.Error()}}
			s.log.Error("reload refused: ACME, keeping the running config", "problems", ps.Error())
			return ps
		}
	} else if hasACME(cfg) {
		s.log.Warn("acme certificates added by a reload to a config that had none are obtained after a restart")
		pending = append(pending, "acme certificates (none were configured at start)")
	}
	if err := s.acl.Reload(cfg); err != nil {
		undo()
		if s.acme != nil {
			s.acme.Update(s.cfg) // back to what it served
		}
		s.log.Error("reload refused: IP lists", "problems", err.Error())
		return err
	}
	s.reg.Apply(cfg.Pools)
	s.slow.configure(cfg)
	for addr, lc := range keep {
		l := s.listeners[addr]
		l.name.Store(&lc.Name)
		l.cfg = lc
	}
	s.table.Store(s.buildTable(cfg, al, wf))
	for _, l := range remove {
		delete(s.listeners, l.cfg.Listen)
		if s.draining == nil {
			s.draining = map[*listener]struct{}{}
		}
		s.draining[l] = struct{}{}
		go s.shutdownListener(l, cfg.ShutdownTimeout.D())
	}
	for _, l := range bound {
		s.serve(l)
	}
	// New request limits and timeouts apply from the next request, on
	// connections already open too.
	for _, l := range s.listeners {
		l.srv.Configure(listenerPolicy(cfg, &l.cfg, l.term != nil))
	}
	if al != oldAL {
		go func() { time.Sleep(5 * time.Second); oldAL.Close() }()
	}
	s.cfg = cfg
	s.pendingRestart = pending
	s.reloads.Add(1)
	s.log.Info("config reloaded", "file", cfg.File, "listeners", len(cfg.Listeners), "routes", len(cfg.Routes), "pools", len(cfg.Pools))
	return nil
}

func (s *Server) shutdownListener(l *listener, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		l.srv.Close()
	}
	s.mu.Lock()
	delete(s.draining, l)
	stopped := s.stopped // Shutdown closes the terminator
	s.mu.Unlock()
	if l.term != nil && !stopped {
		l.term.Close()
	}
	s.log.Info("listener closed", "listener", l.cfg.Name)
}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil // a second call (tests, signal races) has nothing left to do
	}
	s.stopped = true
	ls := make([]*listener, 0, len(s.listeners)+len(s.draining))
	for _, l := range s.listeners {
		ls = append(ls, l)
	}
	// Listeners a reload removed still serve their last requests: they
	// get the same grace, and their cut requests the same log lines.
	for l := range s.draining {
		ls = append(ls, l)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	var firstErr error
	var emu sync.Mutex
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.srv.Shutdown(ctx); err != nil {
				l.srv.Close()
				emu.Lock()
				firstErr = err
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		// The grace period is over and the clients' connections are
		// closed; handlers still waiting on a backend are cut loose and
		// given a moment to finish, so that each request gets its access
		// log line (error backend_cut) before the log is closed.
		s.reg.CutInFlight()
		wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		for _, l := range ls {
			l.srv.Wait(wctx)
		}
		cancel()
	}
	for _, l := range ls {
		if l.term != nil {
			l.term.Close()
		}
	}
	if s.acme != nil {
		s.acme.Close()
	}
	if s.admin != nil {
		s.admin.Close()
	}
	s.reg.Close()
	s.table.Load().accessLog.Close()
	s.audit.Close()
	s.acl.Close()
	s.limits.close()
	return firstErr
}

// Status is the instance summary for GET /api/v1/status.
type Status struct {
	Instance  string             `json:"instance"`
	Config    string             `json:"config_file"`
	Started   time.Time          `json:"started_at"`
	Uptime    string             `json:"uptime"`
	Reloads   int64              `json:"reloads"`
	Listeners []ListenerStatus   `json:"listeners"`
	Pools     []proxy.PoolStatus `json:"pools"`
	AccessLog map[string]any     `json:"access_log"`
	// RateLimits shows adaptive mode's state and the Redis store of
	// distributed limits when they are configured.
	RateLimits *RateLimitStatus `json:"rate_limits,omitempty"`
}

// RateLimitStatus is the rate limiting part of Status.
type RateLimitStatus struct {
	Adaptive *ratelimit.AdaptiveStatus `json:"adaptive,omitempty"`
	Redis    *RedisStatus              `json:"redis,omitempty"` // distributed limits' store
}

// ListenerStatus is one listener in Status.
type ListenerStatus struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	Protocol string `json:"protocol"` // what it serves (a protocol change waits for a restart)
	H2C      bool   `json:"h2c"`
	// Engine is how its connections wait: "eventloop" or "goroutines"
	// (what runs: an engine change waits for a restart).
	Engine string `json:"engine"`
}

// Status describes the running instance.
func (s *Server) Status() Status {
	s.mu.Lock()
	st := Status{Instance: s.cfg.InstanceName, Config: s.cfg.File, Started: s.started,
		Uptime: time.Since(s.started).Round(time.Second).String(), Reloads: s.reloads.Load()}
	for _, lc := range s.cfg.Listeners {
		if l := s.listeners[lc.Listen]; l != nil {
			engine := config.EngineGoroutines
			if l.srv.Loops != nil {
				engine = config.EngineEventLoop
			}
			// What runs: an h2c or engine change waits for a restart.
			st.Listeners = append(st.Listeners, ListenerStatus{Name: lc.Name, Address: l.ln.Addr().String(), Protocol: l.protocol(), H2C: l.srv.H2C, Engine: engine})
		}
	}
	s.mu.Unlock()
	st.Pools = s.reg.Status()
	st.AccessLog = map[string]any{"dropped_lines": s.table.Load().accessLog.Dropped()}
	if a, rs := s.limits.adaptiveStatus(), s.limits.redisStatus(); a != nil || rs != nil {
		st.RateLimits = &RateLimitStatus{Adaptive: a, Redis: rs}
	}
	return st
}

// StatusJSON implements admin.Instance.
func (s *Server) StatusJSON() any { return s.Status() }

// ReloadConfig re-reads the file the running config came from.
func (s *Server) ReloadConfig() error { return s.Reload(s.Config().File) }
