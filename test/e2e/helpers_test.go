package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rampartBin is the binary built once by TestMain; moduleRoot is where
// go.mod lives.
var rampartBin, moduleRoot string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := findModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	moduleRoot = root
	tmp, err := os.MkdirTemp("", "rampart-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	rampartBin = filepath.Join(tmp, "rampart")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", rampartBin, "./cmd/rampart")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/rampart: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// findModuleRoot asks the go command for the module's go.mod, falling back
// to the path of this package inside the module (test/e2e).
func findModuleRoot() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if gomod := strings.TrimSpace(string(out)); err == nil && gomod != "" && gomod != os.DevNull {
		return filepath.Dir(gomod), nil
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("cannot find the module root: %v", err)
	}
	return root, nil
}

// cleanEnv is the environment for rampart processes: without proxy
// variables (all traffic is loopback) and without RAMPART_ADMIN and
// RAMPART_ADMIN_TOKEN, so every ctl call names its admin URL and token
// explicitly.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "RAMPART_ADMIN", "RAMPART_ADMIN_TOKEN":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// result is what a short-lived rampart command left behind.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// runAsync is run for a command the test waits on later: the result
// (with code -100 and the error in stderr if the command could not run or
// hit the timeout) arrives on the returned channel.
func runAsync(timeout time.Duration, args ...string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, rampartBin, args...)
		cmd.Env = cleanEnv()
		cmd.WaitDelay = 5 * time.Second
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		res := result{stdout: stdout.String(), stderr: stderr.String()}
		var ee *exec.ExitError
		switch {
		case ctx.Err() != nil:
			res.code, res.stderr = -100, res.stderr+fmt.Sprintf("\n(e2e: killed after %s)", timeout)
		case err == nil:
		case errors.As(err, &ee):
			res.code = ee.ExitCode()
		default:
			res.code, res.stderr = -100, err.Error()
		}
		ch <- res
	}()
	return ch
}

// run executes a rampart command that is expected to finish on its own
// (validate, ctl, version, a serve that must refuse to start) and returns
// its output and exit code. The command is killed after timeout.
func run(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, rampartBin, args...)
	cmd.Env = cleanEnv()
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("rampart %s did not finish within %s\n%s", strings.Join(args, " "), timeout, res)
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("rampart %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a running `rampart serve`.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited and been reaped
	code   int           // exit code, valid after done
}

// startServe starts `rampart serve` with args. The process is killed (by
// its PID) in t.Cleanup if the test has not stopped it.
func startServe(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(rampartBin, append([]string{"serve"}, args...)...)
	cmd.Env = cleanEnv()
	cmd.WaitDelay = 5 * time.Second
	p := &proc{t: t, cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rampart serve: %v", err)
	}
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			p.code = 0
		case errors.As(err, &ee):
			p.code = ee.ExitCode() // -1 when killed by a signal
		default:
			p.code = -2
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = cmd.Process.Kill()
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("rampart (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("rampart (pid %d) exit %d\n--- stdout (tail):\n%s\n--- stderr (tail):\n%s",
				cmd.Process.Pid, p.code, tail(p.stdout.String(), 4000), tail(p.stderr.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process.
func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v to pid %d: %v", sig, p.cmd.Process.Pid, err)
	}
}

// kill sends SIGKILL and waits until the process is reaped.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("rampart (pid %d) did not exit within %s", p.cmd.Process.Pid, timeout)
		return 0
	}
}

// waitReady waits until the admin API answers, or fails the test if the
// process exits or the deadline passes. It returns false (without failing)
// when the process exited because an address was taken, so that the caller
// can pick other ports.
func (p *proc) waitReady(adminURL string) bool {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			if strings.Contains(p.stderr.String(), "address already in use") {
				return false
			}
			p.t.Fatalf("rampart exited during start-up with code %d\n%s", p.code, p.stderr.String())
		}
		resp, err := client.Get(adminURL + "/api/v1/status")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("rampart admin API at %s not ready within 15s\n%s", adminURL, p.stderr.String())
	return false
}

// waitStderr waits until the process's stderr contains s.
func (p *proc) waitStderr(s string, timeout time.Duration) {
	p.t.Helper()
	eventually(p.t, timeout, "stderr to contain "+strconv.Quote(s), func() bool {
		return strings.Contains(p.stderr.String(), s)
	})
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client talks to rampart and its backends: never through a proxy, every
// request bounded.
var client = &http.Client{
	Timeout: 10 * time.Second,
	Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     5 * time.Second,
	},
}

// reply is what the demo backends (and the test's own backends) answer.
type reply struct {
	Backend string `json:"backend"`
	Pool    string `json:"pool"`
	Path    string `json:"path"`
	// What the demo backends saw of the proxied request.
	XForwardedFor string `json:"x_forwarded_for"`
	XRequestID    string `json:"x_request_id"`
}

// get sends GET url and returns the status, the decoded JSON reply (zero
// when the body is not JSON) and the response headers.
func get(t *testing.T, url string) (int, reply, http.Header) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	var r reply
	_ = json.Unmarshal(body, &r)
	return resp.StatusCode, r, resp.Header
}

// spread sends n GETs to url, requires every one to succeed and counts the
// answering backends.
func spread(t *testing.T, url string, n int) map[string]int {
	t.Helper()
	hits := map[string]int{}
	for i := 0; i < n; i++ {
		code, r, _ := get(t, url)
		if code != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200 (after %v)", url, code, hits)
		}
		hits[r.Backend]++
	}
	return hits
}

// portsMu and handedOut keep one test process from handing the same port to
// two parallel tests.
var (
	portsMu   sync.Mutex
	handedOut = map[int]bool{}
)

// freePorts returns n distinct loopback ports that were free a moment ago:
// each is found by listening on port 0; all are held until all are found.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		lns = append(lns, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		if handedOut[port] {
			continue
		}
		handedOut[port] = true
		ports = append(ports, port)
	}
	return ports
}

// instance is a running rampart with the addresses the test needs.
type instance struct {
	*proc
	owner    *testing.T
	cfgPath  string
	dir      string // temp dir: config in dir/etc, data in dir/data
	base     string // http://127.0.0.1:PORT of the public listener
	adminURL string
	ports    map[int]int // quickstart port → port used here
}

var loopbackPortRE = regexp.MustCompile(`127\.0\.0\.1:(\d+)`)

// writeQuickstart copies examples/quickstart.yaml to dir/etc/quickstart.yaml
// with every loopback port replaced by a free one, and returns the path and
// the port mapping. data_dir stays as written (../data), so the state lands
// in dir/data because it resolves relative to the config file.
func writeQuickstart(t *testing.T, dir string) (string, map[int]int) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(moduleRoot, "examples", "quickstart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var orig []int
	seen := map[int]bool{}
	for _, m := range loopbackPortRE.FindAllStringSubmatch(string(src), -1) {
		port, _ := strconv.Atoi(m[1])
		if !seen[port] {
			seen[port] = true
			orig = append(orig, port)
		}
	}
	free := freePorts(t, len(orig))
	mapping := map[int]int{}
	for i, port := range orig {
		mapping[port] = free[i]
	}
	out := loopbackPortRE.ReplaceAllStringFunc(string(src), func(s string) string {
		port, _ := strconv.Atoi(strings.TrimPrefix(s, "127.0.0.1:"))
		return "127.0.0.1:" + strconv.Itoa(mapping[port])
	})
	if !strings.Contains(out, "data_dir: ../data") {
		t.Fatalf("examples/quickstart.yaml no longer has data_dir: ../data; update the e2e test\n%s", out)
	}
	etc := filepath.Join(dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(etc, "quickstart.yaml")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, mapping
}

// quickstart runs the quickstart with its demo backends on free ports. It
// retries with other ports if one was taken between choosing and binding.
func quickstart(t *testing.T) *instance {
	t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		dir := t.TempDir()
		path, ports := writeQuickstart(t, dir)
		inst := &instance{owner: t, cfgPath: path, dir: dir, ports: ports,
			base:     fmt.Sprintf("http://127.0.0.1:%d", ports[8080]),
			adminURL: fmt.Sprintf("http://127.0.0.1:%d", ports[9090])}
		if inst.start() {
			return inst
		}
		t.Logf("a port was taken during start-up; retrying with other ports")
	}
	t.Fatal("could not start the quickstart on free ports")
	return nil
}

// start runs serve on the instance's config (again, after a kill) and
// waits for it to be ready.
func (inst *instance) start() bool {
	inst.proc = startServe(inst.owner, "-c", inst.cfgPath, "--demo-backends")
	return inst.waitReady(inst.adminURL)
}

// ctl runs `rampart ctl --admin URL args...`.
func (inst *instance) ctl(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, 30*time.Second, append([]string{"ctl", "--admin", inst.adminURL}, args...)...)
}

// mustCtl is ctl that requires exit 0.
func (inst *instance) mustCtl(t *testing.T, args ...string) result {
	t.Helper()
	res := inst.ctl(t, args...)
	if res.code != 0 {
		t.Fatalf("rampart ctl %s: %s", strings.Join(args, " "), res)
	}
	return res
}

// poolStatus is the JSON of `ctl backend list --pool P`.
type poolStatus struct {
	Name     string `json:"name"`
	Backends []struct {
		ID      string `json:"id"`
		Address string `json:"address"`
		State   string `json:"state"`
		Source  string `json:"source"`
	} `json:"backends"`
}

func (inst *instance) listPool(t *testing.T, pool string) (poolStatus, string) {
	t.Helper()
	res := inst.mustCtl(t, "backend", "list", "--pool", pool)
	var ps poolStatus
	if err := json.Unmarshal([]byte(res.stdout), &ps); err != nil {
		t.Fatalf("ctl backend list --pool %s: not JSON: %v\n%s", pool, err, res.stdout)
	}
	return ps, res.stdout
}

func (ps poolStatus) state(id string) (string, bool) {
	for _, b := range ps.Backends {
		if b.ID == id {
			return b.State, true
		}
	}
	return "", false
}

// lineOf returns the 1-based line of the first line in the file that
// contains s (after start, if given), failing the test if none does.
func lineOf(t *testing.T, path, s string, after ...string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seenAfter := len(after) == 0
	for i, l := range strings.Split(string(data), "\n") {
		if !seenAfter {
			seenAfter = strings.Contains(l, after[0])
			continue
		}
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line containing %q", path, s)
	return 0
}

// writeFile writes content to path, failing the test on error.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
