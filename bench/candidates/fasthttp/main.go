// Command fasthttp is the "fasthttp" engine candidate: fasthttp.Server +
// one fasthttp.HostClient per backend, strict round robin over them.
//
// (fasthttp.LBClient would pick the least-loaded client instead of strict
// round robin; strict round robin keeps the comparison with the other
// proxies exact.)
package main

import (
	"io"
	"log"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/rampart-proxy/rampart/bench/candidates/internal/cand"
)

// hopHeaders are removed in both directions (RFC 9110 section 7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func main() {
	cfg := cand.Parse("fasthttp")

	clients := make([]*fasthttp.HostClient, len(cfg.Backends))
	for i, b := range cfg.Backends {
		clients[i] = &fasthttp.HostClient{
			Addr:                          b,
			MaxConns:                      512,
			MaxIdleConnDuration:           90 * time.Second,
			ReadTimeout:                   30 * time.Second,
			WriteTimeout:                  30 * time.Second,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
			NoDefaultUserAgentHeader:      true,
		}
	}

	var next atomic.Uint64
	handler := func(ctx *fasthttp.RequestCtx) {
		req := &ctx.Request
		resp := &ctx.Response
		for _, h := range hopHeaders {
			req.Header.Del(h)
		}
		hc := clients[(next.Add(1)-1)%uint64(len(clients))]
		if err := hc.Do(req, resp); err != nil {
			ctx.ResetBody()
			ctx.SetStatusCode(fasthttp.StatusBadGateway)
			ctx.SetBodyString("bad gateway\n")
			return
		}
		for _, h := range hopHeaders {
			resp.Header.Del(h)
		}
	}

	srv := &fasthttp.Server{
		Handler:                       handler,
		Name:                          "",
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		ReadTimeout:                   120 * time.Second,
		IdleTimeout:                   120 * time.Second,
		Logger:                        log.New(io.Discard, "", 0),
	}
	log.Fatal(srv.ListenAndServe(cfg.Listen))
}
