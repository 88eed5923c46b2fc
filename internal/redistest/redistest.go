// Package redistest runs a real redis-server (the Debian package, which
// scripts/test.sh installs) for tests of distributed rate limits: on a
// free loopback port or a unix socket in the test's temp directory,
// without persistence, stopped by its PID. Only tests import it.
package redistest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Server is one redis-server process; Stop and Start can cycle it on the
// same address.
type Server struct {
	tb      testing.TB
	Network string // "tcp" or "unix"
	Addr    string // 127.0.0.1:PORT or the socket's path
	args    []string
	logPath string      // redis-server's output, in the temp directory
	tls     *tls.Config // StartTLS: how this package's own probes connect
	cmd     *exec.Cmd
	waited  chan struct{}
}

// Start runs redis-server on a free loopback TCP port (unix: false) or on
// a unix socket in a temp directory, and stops it when the test ends. The
// test is skipped, saying so, only when redis-server is not installed.
func Start(tb testing.TB, unix bool) *Server {
	tb.Helper()
	return start(tb, unix, nil, "", "")
}

// StartTLS runs redis-server with TLS only, on a free loopback port, with
// the server certificate and key in the PEM files certFile and keyFile;
// caFile (PEM) is what its own probes trust. Clients need no certificate.
func StartTLS(tb testing.TB, certFile, keyFile, caFile string) *Server {
	tb.Helper()
	ca, err := os.ReadFile(caFile)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return start(tb, false, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, certFile, keyFile)
}

func start(tb testing.TB, unix bool, tlsCfg *tls.Config, certFile, keyFile string) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skip("redis-server is not installed (scripts/test.sh installs the Debian package redis-server)")
	}
	dir := tb.TempDir()
	s := &Server{tb: tb, logPath: filepath.Join(dir, "redis.log"), tls: tlsCfg}
	args := []string{"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning"}
	if unix {
		s.Network, s.Addr = "unix", filepath.Join(dir, "redis.sock")
		args = append(args, "--port", "0", "--unixsocket", s.Addr, "--unixsocketperm", "700")
	} else {
		s.Network, s.Addr = "tcp", "127.0.0.1:"+strconv.Itoa(freePort(tb))
		_, port, _ := net.SplitHostPort(s.Addr)
		args = append(args, "--bind", "127.0.0.1")
		if tlsCfg != nil {
			// redis-server wants a CA file even when it asks clients for
			// no certificate: its own certificate serves.
			args = append(args, "--port", "0", "--tls-port", port, "--tls-cert-file", certFile, "--tls-key-file", keyFile,
				"--tls-ca-cert-file", certFile, "--tls-auth-clients", "no")
		} else {
			args = append(args, "--port", port)
		}
	}
	s.args = append([]string{bin}, args...)
	s.Start()
	tb.Cleanup(s.Stop)
	return s
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start (re)starts the server on its address and waits until it answers
// PING.
func (s *Server) Start() {
	s.tb.Helper()
	if s.cmd != nil {
		s.tb.Fatal("redistest: already running")
	}
	cmd := exec.Command(s.args[0], s.args[1:]...)
	if f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
		defer f.Close() // the child has its own copy
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("redis-server: %v", err)
	}
	s.cmd, s.waited = cmd, make(chan struct{})
	go func(ch chan struct{}) { cmd.Wait(); close(ch) }(s.waited)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := s.ping(); err == nil {
			return
		} else if time.Now().After(deadline) {
			s.Stop()
			s.tb.Fatalf("redis-server on %s did not answer: %v", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (by its PID) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	select {
	case <-s.waited:
	case <-time.After(10 * time.Second):
		s.tb.Errorf("redis-server pid %d did not exit", s.cmd.Process.Pid)
	}
	s.cmd = nil
}

func (s *Server) dial() (net.Conn, error) {
	d := &net.Dialer{Timeout: time.Second}
	if s.tls != nil {
		return tls.DialWithDialer(d, s.Network, s.Addr, s.tls)
	}
	return d.Dial(s.Network, s.Addr)
}

func (s *Server) ping() error {
	c, err := s.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Do sends one command (inline protocol) and returns the first reply line,
// for assertions on keys.
func (s *Server) Do(cmd string) string {
	s.tb.Helper()
	c, err := s.dial()
	if err != nil {
		s.tb.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		s.tb.Fatal(err)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		s.tb.Fatal(err)
	}
	if len(line) > 0 && line[0] == '$' && line != "$-1\r\n" {
		v, err := r.ReadString('\n')
		if err != nil {
			s.tb.Fatal(err)
		}
		return v[:len(v)-2]
	}
	return line[:len(line)-2]
}
