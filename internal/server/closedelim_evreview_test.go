package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/testnet"
)

// A backend answer whose body ends with the connection (no length, as an
// HTTP/1.0 backend or a Connection: close one sends it). The answer and the
// backend's FIN arrive together; on the event loop, the read that takes the
// answer is short (SetDrained), the FIN brings no further event, and the read
// for the rest of the body skips its read and waits: the client gets its
// answer only when a timeout ends the wait (or never, without one).
func TestEvreviewCloseDelimitedAnswerOnLoop(t *testing.T) {
	addr := testnet.Serve(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		time.Sleep(2 * time.Millisecond) // the proxy waits for the answer by then
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclose-delimited body")
	})
	for _, engine := range []string{"goroutines", "eventloop"} {
		t.Run(engine, func(t *testing.T) { closeDelimited(t, addr, engine) })
	}
}

func closeDelimited(t *testing.T, addr, engine string) {
	cfg := strings.Replace(rawPool(addr), `listen: "127.0.0.1:0"}`, `listen: "127.0.0.1:0", engine: `+engine+`}`, 1)
	e := startEnv(t, cfg+revNoRateLimit)
	e.client.Timeout = 3 * time.Second
	slow := 0
	for i := range 10 {
		start := time.Now()
		r, err := doRequest(e.client, "GET", e.url("web", "/x"), "", nil, nil)
		if err != nil {
			t.Errorf("request %d: %v after %v", i, err, time.Since(start).Round(time.Millisecond))
			slow++
			continue
		}
		if d := time.Since(start); r.status != 200 || r.body != "close-delimited body" || d > time.Second {
			slow++
			t.Errorf("request %d: %d %q after %v", i, r.status, r.body, d.Round(time.Millisecond))
		}
	}
	if slow > 0 {
		t.Errorf("%d of 10 close-delimited answers stalled", slow)
	}
}
