// Command stdlib is the "stdlib" engine candidate: net/http server +
// httputil.ReverseProxy over a tuned http.Transport, strict round robin over
// the backends.
package main

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/bench/candidates/internal/cand"
)

// bufferPool implements httputil.BufferPool with a sync.Pool of 32 KiB
// buffers (the size ReverseProxy would otherwise allocate per request).
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(v []byte) { b.p.Put(&v) }

func main() {
	cfg := cand.Parse("stdlib")

	targets := make([]*url.URL, len(cfg.Backends))
	for i, b := range cfg.Backends {
		targets[i] = &url.URL{Scheme: "http", Host: b}
	}

	tr := &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		ResponseHeaderTimeout: 30 * time.Second,
		WriteBufferSize:       4096,
		ReadBufferSize:        4096,
	}

	var next atomic.Uint64
	bp := &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := targets[(next.Add(1)-1)%uint64(len(targets))]
			pr.SetURL(t)
			pr.Out.Host = pr.In.Host
		},
		Transport:  tr,
		BufferPool: bp,
		ErrorLog:   log.New(io.Discard, "", 0),
	}

	srv := &http.Server{
		Addr:              cfg.Listen,
		Handler:           rp,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	log.Fatal(srv.ListenAndServe())
}
