// Package testnet serves raw TCP on loopback for tests that need a peer
// net/http cannot play: a backend that answers in pieces, sends bytes past
// its answer, or closes at a chosen moment. Only tests import it.
package testnet

import (
	"bufio"
	"net"
	"strings"
	"testing"
)

// Serve accepts connections on 127.0.0.1 until the test ends and runs
// serve on each in its own goroutine, closing the connection after it.
// It returns the listening address.
func Serve(tb testing.TB, serve func(c net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// ReadHead reads one HTTP message head from br, its blank line included,
// and returns it.
func ReadHead(br *bufio.Reader) (string, error) {
	var head strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return head.String(), err
		}
		head.WriteString(line)
		if line == "\r\n" {
			return head.String(), nil
		}
	}
}
