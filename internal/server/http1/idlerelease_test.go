package http1

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Keep-alive connections that go idle now and then (the
// write buffer goes back to the pool in BeforeWait), POSTs with
// Expect: 100-continue whose body the handler reads on another goroutine
// (the automatic 100 is written from there), streaming answers that flush
// and keep writing, plain and TLS, with a MinReadRate (writeMetered).
func TestKeepAliveIdleReleaseStress(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Method == http.MethodPost {
			done := make(chan []byte)
			go func() { b, _ := io.ReadAll(r.Body); done <- b }()
			body = <-done
		}
		w.Header().Set("X-Echo", r.URL.Path)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "%s|%d|", r.URL.Path, i)
			w.(http.Flusher).Flush()
		}
		w.Write(body)
	})
	f := newTLSFixture(t)
	for _, mode := range []string{"plain", "tls"} {
		t.Run(mode, func(t *testing.T) {
			opts := []func(*Server){func(s *Server) { s.MinReadRate = 1000 }}
			scheme := "http"
			var client *http.Client
			if mode == "tls" {
				opts = append(opts, withTLS(f))
				scheme = "https"
				client = tlsClient(f.client(), false)
			} else {
				client = &http.Client{Transport: &http.Transport{}, Timeout: testTimeout}
			}
			client.Transport.(*http.Transport).ExpectContinueTimeout = 5 * time.Second
			client.Transport.(*http.Transport).MaxIdleConnsPerHost = 8
			ts := newTestServer(t, h, opts...)
			var wg sync.WaitGroup
			errs := make(chan error, 100)
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					rng := rand.New(rand.NewSource(int64(g)))
					for i := 0; i < 60; i++ {
						path := fmt.Sprintf("/g%d/%d", g, i)
						var req *http.Request
						want := ""
						for j := 0; j < 3; j++ {
							want += fmt.Sprintf("%s|%d|", path, j)
						}
						if rng.Intn(2) == 0 {
							b := strings.Repeat(fmt.Sprintf("%d-%d.", g, i), 1+rng.Intn(2000))
							req, _ = http.NewRequest("POST", scheme+"://localhost"+ts.addr[strings.LastIndexByte(ts.addr, ':'):]+path, strings.NewReader(b))
							req.Header.Set("Expect", "100-continue")
							want += b
						} else {
							req, _ = http.NewRequest("GET", scheme+"://localhost"+ts.addr[strings.LastIndexByte(ts.addr, ':'):]+path, nil)
						}
						res, err := client.Do(req)
						if err != nil {
							errs <- err
							return
						}
						got, err := io.ReadAll(res.Body)
						res.Body.Close()
						if err != nil || !bytes.Equal(got, []byte(want)) || res.Header.Get("X-Echo") != path {
							errs <- fmt.Errorf("%s: %v, got %.80q want %.80q", path, err, got, want)
							return
						}
						if rng.Intn(4) == 0 {
							time.Sleep(time.Duration(rng.Intn(3)) * time.Millisecond)
						}
					}
				}(g)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}
