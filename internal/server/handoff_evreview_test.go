package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/testnet"
)

// Streamed uploads that the backend answers before it has read them (so the
// sender may still be flushing, handOff, while the task reattaches and
// serves the next GETs on the same client connection), many times.
func TestEvreviewEarlyAnswerUploadThenGets(t *testing.T) {
	addr := testnet.Serve(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body := "ok " + req.Method
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
			// Then take the body, slowly.
			buf := make([]byte, 16<<10)
			for {
				n, err := req.Body.Read(buf)
				if n > 0 {
					time.Sleep(50 * time.Microsecond)
				}
				if err != nil {
					break
				}
			}
		}
	})
	for _, engine := range []string{"goroutines", "eventloop"} {
		t.Run(engine, func(t *testing.T) { earlyAnswerUploads(t, addr, engine) })
	}
}

func earlyAnswerUploads(t *testing.T, addr, engine string) {
	// The rounds reconnect after every closed one, faster than the default
	// guard on new connections per address allows.
	e := startEnv(t, withEngine(rawPool(addr), engine)+"security: {slowloris_protection: {body_timeout_seconds: 60, min_data_rate_bytes_per_second: 0, max_new_connections_per_ip_per_second: 0}}\n")
	c, err := net.Dial("tcp", e.srv.Addr("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	upload := strings.Repeat("u", 600<<10)
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < 40 && time.Now().Before(deadline); i++ {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "POST /u%d HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", i, len(upload), upload)
		for j := range 3 {
			fmt.Fprintf(c, "GET /g%d-%d HTTP/1.1\r\nHost: a\r\n\r\n", i, j)
		}
		for j := range 4 {
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				t.Fatalf("round %d answer %d: %v (last log: %v)", i, j, err, lastLogLine(t, e, 1))
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Errorf("round %d answer %d: %d", i, j, res.StatusCode)
			}
			if res.Close {
				c.Close()
				c, err = net.Dial("tcp", e.srv.Addr("web"))
				if err != nil {
					t.Fatal(err)
				}
				br = bufio.NewReader(c)
				break
			}
		}
	}
}
