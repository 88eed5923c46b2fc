package http1

// Two fuzzers:
//
//   - FuzzReadRequest serves arbitrary bytes on an in-memory connection
//     through the whole engine (Serve, parser, framing, bodies, responses)
//     and checks that it neither panics nor hangs, that every request the
//     handler sees keeps the engine's invariants, and that what it writes
//     back is a well-formed sequence of answers, one per request served
//     plus at most one refusal.
//   - FuzzDifferential parses the same bytes with the engine and with
//     net/http's http.ReadRequest. The engine may refuse more than net/http,
//     never less: for anything it accepts, net/http must accept it too and
//     agree on method, target, URL, version, host, header fields, framing,
//     body and where the next request starts.
//
// Run: go test -run '^$' -fuzz FuzzReadRequest -fuzztime 60s ./internal/server/http1/

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/httpwire"
)

// acceptedSeeds are requests the engine serves.
var acceptedSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /p?q=1 HTTP/1.1\r\nHost: a.example:8080\r\nX-A: b\r\nx-a: c\r\n\r\n",
	"GET /a%2Fb/%7Ec%20d?x=%2F HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://a.example/x?y HTTP/1.1\r\nHost: other.example\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /lf HTTP/1.1\nHost: a\nX-A: b\n\n",
	"\r\nGET /le HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello worldGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5;ext=1\r\nhello\r\n6;a;b=\"c d\"\r\n world\r\n0\r\nX-T: t\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD / HTTP/1.0\r\n\r\n",
	"HEAD / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\nConnection: close\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}

func addSeeds(f *testing.F) {
	for _, s := range acceptedSeeds {
		f.Add([]byte(s))
	}
	for _, c := range refusalCases {
		f.Add([]byte(c.req))
	}
}

// memConn is a connection whose client sent data and then closed its side.
type memConn struct {
	in     *bytes.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	closed chan struct{}
	once   sync.Once

	// What the handler saw, in order.
	methods    []string
	violations []string
}

func newMemConn(data []byte) *memConn {
	return &memConn{in: bytes.NewReader(data), closed: make(chan struct{})}
}

func (c *memConn) Read(p []byte) (int, error) { return c.in.Read(p) }
func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}
func (c *memConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

type memConnKey struct{}

var fuzzServer = sync.OnceValue(func() *chanListener {
	ln := &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
	s := &Server{
		Handler: http.HandlerFunc(fuzzHandler),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, memConnKey{}, c)
		},
		Log: slog.New(slog.DiscardHandler),
	}
	go s.Serve(ln)
	return ln
})

// fuzzHandler checks what the engine promises about every request it lets
// through, reads the body and answers in one of the framings.
func fuzzHandler(w http.ResponseWriter, r *http.Request) {
	mc := r.Context().Value(memConnKey{}).(*memConn)
	bad := func(format string, args ...any) {
		mc.violations = append(mc.violations, fmt.Sprintf(format, args...))
	}
	mc.methods = append(mc.methods, r.Method)
	if !httpwire.ValidToken(r.Method) || r.Method == http.MethodConnect {
		bad("method %q", r.Method)
	}
	if r.Proto != "HTTP/1.1" && r.Proto != "HTTP/1.0" || r.ProtoMajor != 1 || r.Proto[7] != byte('0'+r.ProtoMinor) {
		bad("proto %q %d.%d", r.Proto, r.ProtoMajor, r.ProtoMinor)
	}
	if r.RequestURI == "" || !validTarget(r.RequestURI) {
		bad("target %q", r.RequestURI)
	}
	if !validHost(r.Host) {
		bad("host %q", r.Host)
	}
	for k, vv := range r.Header {
		if !httpwire.ValidToken(k) || k != textproto.CanonicalMIMEHeaderKey(k) || len(vv) == 0 {
			bad("header name %q", k)
		}
		for _, v := range vv {
			if !httpwire.ValidValue(v) || v != httpwire.TrimOWS(v) {
				bad("header value %q", v)
			}
		}
	}
	for _, k := range []string{"Host", "Transfer-Encoding"} {
		if _, ok := r.Header[k]; ok {
			bad("%s in the header map", k)
		}
	}
	if cl := r.Header["Content-Length"]; len(cl) > 1 || r.TransferEncoding != nil && (len(cl) > 0 || r.ContentLength != -1) {
		bad("framing: CL %q TE %q length %d", cl, r.TransferEncoding, r.ContentLength)
	}
	n, err := io.Copy(io.Discard, r.Body)
	if err == nil && r.ContentLength >= 0 && n != r.ContentLength {
		bad("read %d body bytes of %d", n, r.ContentLength)
	}
	if len(r.URL.Path)%2 == 0 {
		w.Header().Set("Content-Length", "2")
	}
	io.WriteString(w, "ok")
}

func FuzzReadRequest(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ln := fuzzServer()
		mc := newMemConn(data)
		select {
		case ln.ch <- mc:
		case <-time.After(5 * time.Second):
			t.Fatal("server not accepting")
		}
		select {
		case <-mc.closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("connection not closed: hang on %q", data)
		}
		// After the close the serving goroutine no longer touches mc.
		mc.mu.Lock()
		out := append([]byte(nil), mc.out.Bytes()...)
		mc.mu.Unlock()
		if len(mc.violations) > 0 {
			t.Fatalf("input %q: %s", data, strings.Join(mc.violations, "; "))
		}
		checkAnswers(t, data, out, mc.methods)
	})
}

// checkAnswers parses the server's output: one answer per request the
// handler saw (interim 1xx aside), then at most one refusal, nothing else.
func checkAnswers(t *testing.T, in, out []byte, methods []string) {
	br := bufio.NewReader(bytes.NewReader(out))
	finals := 0
	var last *http.Response
	for {
		if _, err := br.Peek(1); err == io.EOF {
			break
		}
		method := http.MethodGet
		if finals < len(methods) {
			method = methods[finals]
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("input %q: output %q does not parse: %v", in, out, err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatalf("input %q: output %q: body: %v", in, out, err)
		}
		if resp.StatusCode < 200 {
			continue
		}
		finals++
		last = resp
	}
	switch finals {
	case len(methods):
	case len(methods) + 1:
		if last.StatusCode < 400 || !last.Close {
			t.Fatalf("input %q: last answer %d (close %v) is not a refusal", in, last.StatusCode, last.Close)
		}
	default:
		t.Fatalf("input %q: %d answers for %d requests served: %q", in, finals, len(methods), out)
	}
}

// engineParse reads one request with the engine's parser and framing, as
// readRequest does, and reads its body.
func engineParse(data []byte) (r *http.Request, body []byte, bodyErr error, consumed int, err error) {
	in := bytes.NewReader(data)
	br := bufio.NewReaderSize(in, 4096)
	c := &conn{srv: &Server{}, br: br, bw: bufio.NewWriter(io.Discard)}
	c.head.hdr = make(http.Header)
	c.resp.c = c
	lim := DefaultLimits
	lineEnd, err := c.head.readHead(br, &lim)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	r = &c.req
	r.URL = &c.url
	if err := c.head.parse(r, lineEnd); err != nil {
		return nil, nil, nil, 0, err
	}
	if err := frame(r, c); err != nil {
		return nil, nil, nil, 0, err
	}
	body, bodyErr = io.ReadAll(r.Body)
	return r, body, bodyErr, len(data) - in.Len() - br.Buffered(), nil
}

func FuzzDifferential(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		res := make(chan error, 1)
		go func() { res <- differential(data) }()
		select {
		case err := <-res:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("hang on %q", data)
		}
	})
}

// differential compares the engine with http.ReadRequest on data.
func differential(data []byte) error {
	r, body, bodyErr, consumed, err := engineParse(data)
	if err != nil {
		return nil // the engine may refuse more than net/http
	}
	// Documented normalisation: one empty line before the request line
	// is skipped (RFC 9112 §2.2); net/http's server skips CR/LF only
	// after a POST, http.ReadRequest never.
	skip := 0
	if bytes.HasPrefix(data, []byte("\r\n")) {
		skip = 2
	} else if bytes.HasPrefix(data, []byte("\n")) {
		skip = 1
	}
	in := bytes.NewReader(data[skip:])
	br := bufio.NewReaderSize(in, 4096)
	std, err := http.ReadRequest(br)
	if err != nil {
		return fmt.Errorf("engine accepts what net/http refuses (%v):\n%q", err, data)
	}
	type view struct {
		Method, RequestURI, Proto string
		ProtoMajor, ProtoMinor    int
		Host                      string
		URL                       string
		ContentLength             int64
		TransferEncoding          []string
		Close                     bool
	}
	see := func(r *http.Request) view {
		return view{r.Method, r.RequestURI, r.Proto, r.ProtoMajor, r.ProtoMinor, r.Host,
			fmt.Sprintf("%#v", *r.URL), r.ContentLength, r.TransferEncoding, r.Close}
	}
	if std.URL.Scheme != "" && std.URL.Path == "" {
		std.URL.Path = "/" // the engine's normalisation (RFC 9112 §3.2.2)
	}
	if e, s := see(r), see(std); !reflect.DeepEqual(e, s) {
		return fmt.Errorf("input %q:\nengine  %+v\nnet/http %+v", data, e, s)
	}
	// Header fields, after net/http's own normalisations: its server
	// drops Host from the map (the engine does too; ReadRequest does
	// not), it adds Cache-Control for Pragma: no-cache, and it moves a
	// chunked request's Trailer field to r.Trailer. The engine drops
	// fields with an underscore in their name (nginx's default), and
	// ignores an HTTP/1.0 request's Upgrade.
	eh, sh := r.Header.Clone(), std.Header.Clone()
	delete(sh, "Host")
	for k := range sh {
		if strings.IndexByte(k, '_') >= 0 || (k == "Upgrade" && std.ProtoMinor == 0) {
			delete(sh, k)
		}
	}
	if _, ok := eh["Cache-Control"]; !ok && eh.Get("Pragma") == "no-cache" {
		delete(sh, "Cache-Control")
	}
	if r.TransferEncoding != nil {
		delete(eh, "Trailer")
	}
	if len(eh) != len(sh) || (len(eh) > 0 && !reflect.DeepEqual(eh, sh)) {
		return fmt.Errorf("input %q:\nengine header  %q\nnet/http header %q", data, eh, sh)
	}
	// The body, and where the next request starts.
	stdBody, stdErr := io.ReadAll(std.Body)
	if bodyErr != nil {
		return nil
	}
	if stdErr != nil {
		return fmt.Errorf("input %q: engine read body %q, net/http failed: %v", data, body, stdErr)
	}
	if !bytes.Equal(body, stdBody) {
		return fmt.Errorf("input %q: body engine %q, net/http %q", data, body, stdBody)
	}
	if stdConsumed := skip + len(data[skip:]) - in.Len() - br.Buffered(); stdConsumed != consumed {
		return fmt.Errorf("input %q: the next request starts at %d for the engine, %d for net/http", data, consumed, stdConsumed)
	}
	return nil
}

// The seeds pass through both fuzz bodies in ordinary test runs; this also
// checks that the accepted seeds really are accepted.
func TestAcceptedSeedsParse(t *testing.T) {
	for _, s := range acceptedSeeds {
		if strings.HasPrefix(s, "PRI ") {
			continue
		}
		if _, _, _, _, err := engineParse([]byte(s)); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
	for _, c := range refusalCases {
		_, _, _, _, err := engineParse([]byte(c.req))
		var pe *parseError
		if !errors.As(err, &pe) || pe.status != c.status {
			t.Errorf("%s: %v, want %d", c.name, err, c.status)
		}
	}
}
