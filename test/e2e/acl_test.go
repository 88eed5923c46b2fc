package e2e

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// getAs sends GET / to base from the loopback source address src and
// returns the raw answer ("" when the connection was closed unanswered).
func getAs(t *testing.T, base, src string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(c)
	return string(b)
}

// An acknowledged dynamic block holds across kill -9 and a restart.
func TestDynamicBlockSurvivesKill9(t *testing.T) {
	t.Parallel()
	inst := quickstart(t)
	const src = "127.0.0.3"
	if ans := getAs(t, inst.base, src); !strings.HasPrefix(ans, "HTTP/1.1 200 ") {
		t.Fatalf("before the block: %q", ans)
	}
	res := inst.mustCtl(t, "block", "add", "--ip", src, "--reason", "e2e test", "--ttl", "1h")
	if !strings.Contains(res.stdout, src+"/32") {
		t.Fatalf("block add printed %s", res)
	}
	if ans := getAs(t, inst.base, src); ans != "" {
		t.Fatalf("blocked peer was answered: %q", ans)
	}
	inst.kill()
	if !inst.start() {
		t.Fatal("restart failed")
	}
	if ans := getAs(t, inst.base, src); ans != "" {
		t.Fatalf("after kill -9 and restart the blocked peer was answered: %q", ans)
	}
	if ans := getAs(t, inst.base, "127.0.0.1"); !strings.HasPrefix(ans, "HTTP/1.1 200 ") {
		t.Fatalf("other peers after restart: %q", ans)
	}
	res = inst.mustCtl(t, "block", "list", "--contains", src)
	if !strings.Contains(res.stdout, "e2e test") {
		t.Fatalf("block list: %s", res)
	}
	inst.mustCtl(t, "block", "remove", src)
	if ans := getAs(t, inst.base, src); !strings.HasPrefix(ans, "HTTP/1.1 200 ") {
		t.Fatalf("after remove: %q", ans)
	}
	res = inst.ctl(t, "block", "add", "--cidr", "0.0.0.0/0")
	if res.code != 1 || !strings.Contains(res.stderr, "allow_broad") {
		t.Errorf("blocking everything without --allow-broad: want exit 1 naming allow_broad\n%s", res)
	}
}
