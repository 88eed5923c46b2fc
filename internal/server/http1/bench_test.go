package http1

// BenchmarkServe: keep-alive GETs over loopback against a trivial handler,
// on this engine and on net/http's server, with the same allocation-free
// raw client, so ns/op and allocs/op compare the servers:
//
//	go test -run '^$' -bench BenchmarkServe -benchmem -count 5 ./internal/server/http1/

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

var (
	benchBody   = []byte("hello")
	benchLength = []string{"5"}
	benchReq    = []byte("GET /bench?x=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
)

func benchHandler(w http.ResponseWriter, r *http.Request) {
	w.Header()["Content-Length"] = benchLength
	w.Write(benchBody)
}

func BenchmarkServe(b *testing.B) {
	servers := []struct {
		name  string
		start func(ln net.Listener) (stop func())
	}{
		{"http1", func(ln net.Listener) func() {
			s := &Server{Handler: http.HandlerFunc(benchHandler)}
			go s.Serve(ln)
			return func() { s.Close() }
		}},
		{"net-http", func(ln net.Listener) func() {
			s := &http.Server{Handler: http.HandlerFunc(benchHandler), ReadHeaderTimeout: 10 * time.Second}
			go s.Serve(ln)
			return func() { s.Close() }
		}},
	}
	for _, srv := range servers {
		b.Run(srv.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer srv.start(ln)()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			benchKeepAlive(b, c)
		})
	}
}

// benchRoundTrip writes one request and reads its answer without
// allocating.
// benchKeepAlive measures b.N requests on the keep-alive connection c,
// after one unmeasured request.
func benchKeepAlive(b *testing.B, c net.Conn) {
	b.Helper()
	br := bufio.NewReaderSize(c, 4096)
	body := make([]byte, 64)
	if err := benchRoundTrip(c, br, body); err != nil { // warm up
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := benchRoundTrip(c, br, body); err != nil {
			b.Fatal(err)
		}
	}
}

func benchRoundTrip(c net.Conn, br *bufio.Reader, body []byte) error {
	if _, err := c.Write(benchReq); err != nil {
		return err
	}
	n := -1
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if first {
			if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
				return errors.New("unexpected status line " + string(line))
			}
			first = false
			continue
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n, err = strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return err
			}
		}
	}
	if n != len(benchBody) {
		return errors.New("unexpected framing")
	}
	_, err := io.ReadFull(br, body[:n])
	return err
}

// BenchmarkServeTLS is BenchmarkServe over TLS 1.3 (one handshake, then
// keep-alive requests), on this engine and on net/http's server with the
// same certificate and client; allocs/op count both sides.
//
//	go test -run '^$' -bench BenchmarkServeTLS -benchmem -count 5 ./internal/server/http1/
func BenchmarkServeTLS(b *testing.B) {
	f := newTLSFixture(b)
	servers := []struct {
		name  string
		start func(ln net.Listener) (stop func())
	}{
		{"http1", func(ln net.Listener) func() {
			s := &Server{Handler: http.HandlerFunc(benchHandler), TLSConfig: f.server}
			go s.Serve(ln)
			return func() { s.Close() }
		}},
		{"net-http", func(ln net.Listener) func() {
			cfg := f.server.Clone()
			s := &http.Server{Handler: http.HandlerFunc(benchHandler), ReadHeaderTimeout: 10 * time.Second, TLSConfig: cfg}
			go s.Serve(tls.NewListener(ln, cfg))
			return func() { s.Close() }
		}},
	}
	for _, srv := range servers {
		b.Run(srv.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer srv.start(ln)()
			cc := f.client()
			cc.NextProtos = []string{"http/1.1"}
			c, err := tls.Dial("tcp", ln.Addr().String(), cc)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			benchKeepAlive(b, c)
		})
	}
}
