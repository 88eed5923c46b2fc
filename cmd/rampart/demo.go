package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

// startDemoBackends serves a tiny HTTP backend on every loopback backend
// address of the config, so the quickstart runs with nothing else
// installed. Each answers with its own id, which makes the balancing visible
// with curl. Only loopback addresses are served: the demo must never bind a
// public interface.
func startDemoBackends(cfg *config.Config, log *slog.Logger) (stop func(), err error) {
	var servers []*http.Server
	stop = func() {
		for _, s := range servers {
			s.Close()
		}
	}
	seen := map[string]bool{}
	for _, p := range cfg.Pools {
		for _, b := range p.Backends {
			host, _, _ := net.SplitHostPort(b.Address)
			ip, perr := netip.ParseAddr(host)
			if seen[b.Address] || perr != nil || !ip.IsLoopback() {
				continue
			}
			seen[b.Address] = true
			ln, lerr := net.Listen("tcp", b.Address)
			if lerr != nil {
				stop()
				return nil, fmt.Errorf("backend %s (%s): %w", b.ID, b.Address, lerr)
			}
			s := &http.Server{Handler: demoHandler(p.Name, b.ID), ReadHeaderTimeout: 5 * time.Second}
			servers = append(servers, s)
			go s.Serve(ln)
			log.Info("demo backend", "pool", p.Name, "backend", b.ID, "address", b.Address)
		}
	}
	return stop, nil
}

func demoHandler(pool, id string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"backend":           id,
			"pool":              pool,
			"method":            r.Method,
			"path":              r.URL.Path,
			"x_forwarded_for":   r.Header.Get("X-Forwarded-For"),
			"x_forwarded_proto": r.Header.Get("X-Forwarded-Proto"),
			"x_request_id":      r.Header.Get("X-Request-Id"),
		})
	})
	return mux
}
