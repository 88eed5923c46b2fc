package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/accesslog"
	"github.com/rampart-proxy/rampart/internal/pipeline"
)

func accessLines(t *testing.T, ips ...string) []string {
	t.Helper()
	s, err := accesslog.NewSanitizer(accesslog.SanitizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, ip := range ips {
		r := pipeline.NewRecord()
		r.ClientIP, r.XForwardedFor, r.RequestID, r.Path = ip, ip, "r"+string(rune('a'+i)), "/"
		out = append(out, string(s.AppendLine(nil, r)))
		pipeline.Release(r)
	}
	return out
}

func TestLogsPurgeCommand(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.Mkdir(logs, 0o750)
	cfgPath := filepath.Join(dir, "rampart.yaml")
	os.WriteFile(cfgPath, []byte("data_dir: data\nlisteners: [{name: p, listen: \"127.0.0.1:0\"}]\n"+
		"routes: [{name: r, match: {path_prefix: /}, pool: w}]\npools: [{name: w, backends: [{id: a, address: \"127.0.0.1:1\"}]}]\n"+
		"logging: {access_log: {path: logs/access.log}}\n"), 0o600)

	active := accessLines(t, "192.0.2.1", "192.0.2.9", "192.0.2.1")
	backup := accessLines(t, "192.0.2.9", "192.0.2.1", "192.0.2.9", "192.0.2.10")
	os.WriteFile(filepath.Join(logs, "access.log"), []byte(strings.Join(active, "")), 0o640)
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write([]byte(strings.Join(backup, "")))
	zw.Close()
	gzPath := filepath.Join(logs, "access-2026-01-02T03-04-05.000.log.gz")
	os.WriteFile(gzPath, zb.Bytes(), 0o640)

	code, stdout, stderr := runCmd("logs", "purge", "--ip", "192.0.2.1", "-c", cfgPath)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "rotated from "+filepath.Join(logs, "access.log")+", removed 2 of 3 lines\n") ||
		!strings.Contains(stdout, gzPath+": removed 1 of 4 lines\n") ||
		!strings.HasSuffix(stdout, "removed 3 lines of 192.0.2.1 from 2 of 2 files\n") {
		t.Fatalf("output:\n%s", stdout)
	}
	f, _ := os.Open(gzPath)
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(zr)
	f.Close()
	if want := backup[0] + backup[2] + backup[3]; string(got) != want {
		t.Fatalf("gz after purge:\n%s\nwant\n%s", got, want)
	}

	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"logs", "purge", "-c", cfgPath}, 2, "usage: rampart logs"},
		{[]string{"logs", "purge", "--ip", "not-an-ip", "-c", cfgPath}, 2, `--ip "not-an-ip" is not an IP address`},
		{[]string{"logs", "purge", "--ip", "192.0.2.1", "-c", filepath.Join(dir, "none.yaml")}, 1, "cannot read config"},
		{[]string{"logs", "shred"}, 2, `unknown command "shred"`},
	} {
		code, _, stderr := runCmd(c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d %q, want %d and %q", c.args, code, stderr, c.code, c.msg)
		}
	}
	stdoutCfg := filepath.Join(dir, "stdout.yaml")
	os.WriteFile(stdoutCfg, []byte(strings.Replace(readFile(t, cfgPath), "logs/access.log", `"-"`, 1)), 0o600)
	if code, _, stderr := runCmd("logs", "purge", "--ip", "192.0.2.1", "-c", stdoutCfg); code != 1 || !strings.Contains(stderr, "no access log files") {
		t.Errorf("stdout log: exit %d %q", code, stderr)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
