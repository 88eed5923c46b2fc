package http1

import (
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// bodyStatus answers with the status a body error asks for (as Rampart's
// proxy does), or 200 with the body's length.
func bodyStatus(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		w.WriteHeader(hs.HTTPStatus())
		return
	}
	io.WriteString(w, strings.Repeat("x", len(b)))
}

// An HTTP/2 stream whose announced body never comes, or comes too slowly,
// is answered 408 at the body timeout or after a rate window without data,
// as on HTTP/1, and reported as a slow client; one that sends its body is
// served.
func TestH2CBodyLimits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pol       Policy
		indicator string
	}{
		{"body timeout", Policy{BodyTimeout: 300 * time.Millisecond}, BodyTimeout},
		{"minimum rate", Policy{MinBodyRate: 1000, RateWindow: 300 * time.Millisecond}, SlowBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sl slowLog
			ts := newTestServer(t, http.HandlerFunc(bodyStatus), func(s *Server) {
				s.H2C = true
				sl.hook(s)
				s.Configure(tc.pol)
			})
			cl := h2cClient()
			defer cl.CloseIdleConnections()
			pr, pw := io.Pipe() // a body that never comes
			defer pw.Close()
			req, _ := http.NewRequest(http.MethodPost, "http://"+ts.addr+"/", pr)
			req.ContentLength = 1000
			start := time.Now()
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout || resp.ProtoMajor != 2 {
				t.Fatalf("stream without its body: %s %d, want HTTP/2 408", resp.Proto, resp.StatusCode)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("408 after %v", d)
			}
			waitFor(t, "indicator "+tc.indicator, func() bool { return sl.has(tc.indicator) })

			resp, err = cl.Post("http://"+ts.addr+"/", "text/plain", strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "xxxxx" {
				t.Fatalf("stream with its body: %d %q", resp.StatusCode, body)
			}
		})
	}
}

// An HTTP/2 answer that cannot be written within WriteTimeout (the client
// keeps its flow-control window shut) is cut: the stream is reset and the
// handler's write fails, reported as a slow client; a stream that waits
// for its backend longer than WriteTimeout before writing is not cut.
func TestH2CWriteTimeout(t *testing.T) {
	var sl slowLog
	wrote := make(chan error, 1)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/late" {
			time.Sleep(600 * time.Millisecond) // the backend takes its time
			io.WriteString(w, "late")
			return
		}
		_, err := w.Write(make([]byte, 256<<10))
		if err == nil {
			err = http.NewResponseController(w).Flush()
		}
		wrote <- err
	}), func(s *Server) {
		s.H2C = true
		sl.hook(s)
		s.Configure(Policy{WriteTimeout: 300 * time.Millisecond})
	})
	cl := h2cClient()
	defer cl.CloseIdleConnections()
	resp, err := cl.Get("http://" + ts.addr + "/late")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "late" {
		t.Fatalf("slow backend, quick client: %q", body)
	}

	_, fr := dialH2(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	hdr := []byte{0x82, 0x86, 0x84, 0x41, 0x01, 'a'} // GET http / host a (HPACK)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr, EndStream: true, EndHeaders: true})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no reset of the stream with a shut window: %v", err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == 1 {
			break
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			fr.WriteSettingsAck()
		}
	}
	select {
	case err := <-wrote:
		if se, ok := errors.AsType[*SlowClientError](err); !ok || se.Indicator != WriteTimeout {
			t.Fatalf("the handler's write with the window shut: %v, want a write_timeout SlowClientError", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("the handler's write still blocked")
	}
	waitFor(t, "indicator "+WriteTimeout, func() bool { return sl.has(WriteTimeout) })
}

// Slow read over HTTP/2: a client that opens its flow-control window a
// little at a time, fast enough for every write to finish well within the
// write timeout but below the minimum read rate, gets its stream reset;
// the handler's write fails with the slow_read SlowClientError and the
// client is reported as a slow reader, as on HTTP/1. A client reading at
// speed gets the whole answer.
func TestH2CMinReadRate(t *testing.T) {
	var sl slowLog
	done := make(chan error, 1)
	ts := newTestServer(t, bigAnswer(16<<20, done), sl.hook, func(s *Server) {
		s.H2C = true
		s.MinReadRate = 40000
		s.RateWindow = 400 * time.Millisecond
		s.WriteTimeout = 5 * time.Second
	})
	const credit = 1000 // bytes of window every 50 ms: about 20 KB/s, half the minimum
	_, fr := dialH2(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: credit})
	// The reader acknowledges SETTINGS while the loop below writes.
	var wmu sync.Mutex
	hdr := []byte{0x82, 0x86, 0x84, 0x41, 0x01, 'a'} // GET http / host a (HPACK)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr, EndStream: true, EndHeaders: true})
	reset := make(chan http2.ErrCode, 1)
	go func() {
		defer close(reset)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				reset <- f.ErrCode
				return
			case *http2.SettingsFrame:
				if !f.IsAck() {
					wmu.Lock()
					fr.WriteSettingsAck()
					wmu.Unlock()
				}
			}
		}
	}()
	start := time.Now()
	var code http2.ErrCode
	ok := false
	for i := 0; i < 200 && !ok; i++ { // at most 10 s
		select {
		case code, ok = <-reset:
			if !ok {
				t.Fatal("the connection ended without a reset of the slow reader's stream")
			}
		case <-time.After(50 * time.Millisecond):
			wmu.Lock()
			fr.WriteWindowUpdate(1, credit)
			fr.WriteWindowUpdate(0, credit)
			wmu.Unlock()
		}
	}
	if !ok {
		t.Fatalf("slow reader's stream not reset after %v", time.Since(start))
	}
	t.Logf("stream reset (%v) after %v", code, time.Since(start))
	if err := recv(t, done); err != errSlowRead {
		t.Fatalf("the handler's write to the slow reader: %v, want the slow_read SlowClientError", err)
	}
	if !sl.has(SlowRead) || sl.has(WriteTimeout) {
		t.Fatalf("indicators %v, want slow_read", sl.list())
	}

	cl := h2cClient()
	defer cl.CloseIdleConnections()
	resp, err := cl.Get("http://" + ts.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 16<<20 || recv(t, done) != nil {
		t.Fatalf("fast reader got %d bytes, %v", n, err)
	}
}

// A header block must end within the header timeout and in at most
// maxContinuations CONTINUATION frames: empty CONTINUATION frames (which
// net/http's byte limit never sees) get GOAWAY and a close, and so does a
// block left open, reported as a slow header; a block split in two is
// served.
func TestH2CHeaderBlockLimits(t *testing.T) {
	var sl slowLog
	var mu sync.Mutex
	var reasons []string
	ts := newTestServer(t, nil, func(s *Server) {
		s.H2C = true
		sl.hook(s)
		s.OnHTTP2Error = func(e string) {
			mu.Lock()
			reasons = append(reasons, e)
			mu.Unlock()
		}
		s.Configure(Policy{ReadHeaderTimeout: 300 * time.Millisecond})
	})
	counted := func(reason string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(reasons, reason)
	}
	hdr := []byte{0x82, 0x86, 0x84, 0x41, 0x01, 'a'} // GET http / host a (HPACK)
	dial := func() (net.Conn, *http2.Framer) { return dialH2(t, ts.addr) }
	// untilEnd reads frames until the connection ends; it returns whether
	// a HEADERS answer came, and the GOAWAY's code if one did.
	untilEnd := func(fr *http2.Framer) (answered bool, goAway http2.ErrCode) {
		goAway = 0xffff
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return answered, goAway
			}
			switch f := f.(type) {
			case *http2.HeadersFrame:
				answered = true
				return answered, goAway
			case *http2.GoAwayFrame:
				goAway = f.ErrCode
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			}
		}
	}

	_, fr := dial()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr[:3], EndStream: true})
	fr.WriteContinuation(1, true, hdr[3:])
	if answered, _ := untilEnd(fr); !answered {
		t.Fatal("a header block in two frames was not answered")
	}

	_, fr = dial()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr[:3], EndStream: true})
	for range 200 {
		if fr.WriteContinuation(1, false, nil) != nil {
			break
		}
	}
	if answered, code := untilEnd(fr); answered || code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("empty CONTINUATION flood: answered %v, GOAWAY %v; want GOAWAY ENHANCE_YOUR_CALM", answered, code)
	}
	waitFor(t, "continuation_flood counted", func() bool { return counted("continuation_flood") })

	start := time.Now()
	_, fr = dial()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr[:3], EndStream: true})
	if answered, code := untilEnd(fr); answered || code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("header block left open: answered %v, GOAWAY %v", answered, code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("header block left open closed after %v, want about the 300ms header timeout", d)
	}
	waitFor(t, "header_timeout counted", func() bool { return counted("header_timeout") && sl.has(SlowHeader) })
}

// dialH2 opens a raw HTTP/2 connection to addr (h2c prior knowledge) and
// sends the client's SETTINGS; the test's end closes it.
func dialH2(t *testing.T, addr string, settings ...http2.Setting) (net.Conn, *http2.Framer) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings(settings...)
	return c, fr
}

// A stream the HTTP/2 server resets for an error (a WINDOW_UPDATE of 0 on
// the stream) is counted by net/http's report of it; a connection it ends
// for an error (the same on the connection, a PROTOCOL_ERROR) is counted
// by its GOAWAY's code, once (net/http's own report of the connection
// error is not counted beside it); a graceful GOAWAY (NO_ERROR) is not.
func TestH2CServerGoAwayCounted(t *testing.T) {
	var mu sync.Mutex
	var reasons []string
	ts := newTestServer(t, nil, func(s *Server) {
		s.H2C = true
		s.OnHTTP2Error = func(e string) {
			mu.Lock()
			reasons = append(reasons, e)
			mu.Unlock()
		}
	})
	_, fr := dialH2(t, ts.addr)
	fr.AllowIllegalWrites = true
	hdr := []byte{0x82, 0x86, 0x84, 0x41, 0x01, 'a'} // GET http / host a (HPACK)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr, EndHeaders: true})
	fr.WriteWindowUpdate(1, 0)
	waitFor(t, "the stream's error counted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(reasons, "frame_windowupdate_zero_inc_stream")
	})
	fr.WriteWindowUpdate(0, 0)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("GOAWAY %v, want PROTOCOL_ERROR", g.ErrCode)
			}
			break
		}
	}
	waitFor(t, "goaway_PROTOCOL_ERROR counted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(reasons, "goaway_PROTOCOL_ERROR")
	})
	mu.Lock()
	defer mu.Unlock()
	if len(reasons) != 2 {
		t.Fatalf("one reset stream and one refused connection counted as %v", reasons)
	}
}
