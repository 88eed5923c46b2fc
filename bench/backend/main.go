// Command backend is the load benchmark's origin server: a tiny, fast
// HTTP/1.1 server that answers every request with a fixed 64-byte body over
// keep-alive connections.
//
// It is deliberately hand-rolled (no net/http) so that it costs as little CPU
// as possible: in the benchmark it shares one core with the load generator,
// and any cycle it burns is a cycle the load generator does not get.
//
// Usage: backend -listen 127.0.0.1:18081 [-name b1]
//
// On SIGUSR1 it prints "accepts=N" (connections accepted so far) to stderr,
// which bench/run.sh uses to check that a proxy reuses its upstream
// connections.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "address to listen on (loopback only)")
	name := flag.String("name", "b", "backend name, echoed in the X-Backend header")
	flag.Parse()

	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatalf("backend: bad -listen: %v", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("backend: refusing to listen on non-loopback address %q", host)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("backend: %v", err)
	}
	fmt.Fprintf(os.Stderr, "backend %s listening on %s\n", *name, ln.Addr())

	var accepts atomic.Int64
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			fmt.Fprintf(os.Stderr, "accepts=%d\n", accepts.Load())
		}
	}()

	resp := buildResponse(*name)
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			log.Fatalf("backend: accept: %v", err)
		}
		accepts.Add(1)
		go serve(c, resp)
	}
}

// body is exactly 64 bytes.
const body = "rampart bench backend: 64-byte fixed body for the load test ok.\n"

func buildResponse(name string) []byte {
	if len(body) != 64 {
		panic("body must be 64 bytes")
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	b.WriteString("Content-Type: text/plain\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	b.WriteString("X-Backend: " + name + "\r\n")
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}

var (
	closeResp = []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
)

// serve handles one keep-alive connection. Pipelined requests are answered in
// order; responses are flushed whenever no further request bytes are
// buffered, so a pipelining client gets batched writes.
func serve(c net.Conn, resp []byte) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 4096)
	w := bufio.NewWriterSize(c, 4096)
	for {
		keep, err := readRequest(r)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				w.Write(closeResp)
				w.Flush()
			}
			return
		}
		w.Write(resp)
		if !keep {
			w.Flush()
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

var errBad = errors.New("bad request")

// readRequest consumes one request (request line, headers and a body, of
// a Content-Length or chunked, if any) and reports whether the connection
// stays open.
func readRequest(r *bufio.Reader) (keepAlive bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 && errors.Is(err, io.EOF) {
			return false, io.EOF
		}
		return false, errBad
	}
	// "METHOD SP target SP HTTP/1.x"
	keepAlive = bytes.HasSuffix(bytes.TrimRight(line, "\r\n"), []byte("HTTP/1.1"))
	var clen int64
	chunked := false
	for {
		h, err := r.ReadSlice('\n')
		if err != nil {
			return false, errBad
		}
		if len(h) <= 2 && (len(h) == 1 || h[0] == '\r') {
			break // end of headers
		}
		colon := bytes.IndexByte(h, ':')
		if colon <= 0 {
			return false, errBad
		}
		key := h[:colon]
		val := bytes.TrimSpace(h[colon+1:])
		switch {
		case bytes.EqualFold(key, []byte("Content-Length")):
			n, perr := strconv.ParseInt(string(val), 10, 64)
			if perr != nil || n < 0 {
				return false, errBad
			}
			clen = n
		case bytes.EqualFold(key, []byte("Transfer-Encoding")):
			if !bytes.EqualFold(val, []byte("chunked")) {
				return false, errBad
			}
			chunked = true
		case bytes.EqualFold(key, []byte("Connection")):
			v := strings.ToLower(string(val))
			if strings.Contains(v, "close") {
				keepAlive = false
			} else if strings.Contains(v, "keep-alive") {
				keepAlive = true
			}
		}
	}
	if chunked {
		return keepAlive, discardChunked(r)
	}
	if clen > 0 {
		if _, err := r.Discard(int(clen)); err != nil {
			return false, errBad
		}
	}
	return keepAlive, nil
}

// discardChunked consumes a chunked body: size lines (extensions ignored),
// data and CRLFs, the last chunk and an empty trailer section.
func discardChunked(r *bufio.Reader) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return errBad
		}
		hex := bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(hex, ';'); i >= 0 {
			hex = hex[:i]
		}
		n, perr := strconv.ParseInt(string(bytes.TrimSpace(hex)), 16, 64)
		if perr != nil || n < 0 {
			return errBad
		}
		if n == 0 {
			for { // trailer lines up to the empty one
				t, err := r.ReadSlice('\n')
				if err != nil {
					return errBad
				}
				if len(t) <= 2 {
					return nil
				}
			}
		}
		if _, err := r.Discard(int(n) + 2); err != nil {
			return errBad
		}
	}
}
