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
// for the rest of the body skipped its read and waited (until the review's
// fix: an RDHUP makes the readiness sticky): the client got its answer only
// when a timeout ended the wait, or never without one.

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
	e := startEnv(t, withEngine(rawPool(addr), engine)+revNoRateLimit)
	e.client.Timeout = 3 * time.Second // a stalled answer fails, not hangs
	slow := 0
	for i := range 10 {
		r, err := doRequest(e.client, "GET", e.url("web", "/x"), "", nil, nil)
		if err != nil {
			t.Errorf("request %d: %v", i, err)
			slow++
			continue
		}
		if r.status != 200 || r.body != "close-delimited body" {
			slow++
			t.Errorf("request %d: %d %q", i, r.status, r.body)
		}
	}
	if slow > 0 {
		t.Errorf("%d of 10 close-delimited answers stalled", slow)
	}
}

// withEngine sets engine on the first listener of cfg (rawPool's).
func withEngine(cfg, engine string) string {
	return strings.Replace(cfg, `listen: "127.0.0.1:0"}`, `listen: "127.0.0.1:0", engine: `+engine+`}`, 1)
}
