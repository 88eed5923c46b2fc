package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// doc drops the newline after the opening backquote, so that line 1 of a
// test document is the first line written under it.
func doc(s string) string { return strings.TrimPrefix(s, "\n") }

// valid is the smallest config Parse accepts; the mistake cases below are
// variations of it.
var valid = doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`)

func TestValidMinimalConfig(t *testing.T) {
	cfg, err := Parse("min.yaml", []byte(valid))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := cfg.Admin.Listen; got != "127.0.0.1:9090" {
		t.Errorf("admin.listen default = %q, want 127.0.0.1:9090", got)
	}
	p := cfg.Pool("web")
	if p == nil {
		t.Fatal(`Pool("web") = nil`)
	}
	if p.Algorithm != "round_robin" {
		t.Errorf("algorithm default = %q, want round_robin", p.Algorithm)
	}
	if p.DrainTimeout.D() != 300*time.Second {
		t.Errorf("drain_timeout default = %s, want 5m0s", p.DrainTimeout.D())
	}
	if p.ResponseHeaderTimeout.D() != 60*time.Second {
		t.Errorf("response_header_timeout default = %s, want 1m0s", p.ResponseHeaderTimeout.D())
	}
	if p.Backends[0].Weight != 1 {
		t.Errorf("weight default = %d, want 1", p.Backends[0].Weight)
	}
	if cfg.Listeners[0].Protocol != "http" {
		t.Errorf("protocol default = %q, want http", cfg.Listeners[0].Protocol)
	}
	if cfg.DataDir != "data" || cfg.ShutdownTimeout.D() != 30*time.Second {
		t.Errorf("data_dir, shutdown_timeout defaults = %q, %s", cfg.DataDir, cfg.ShutdownTimeout.D())
	}
}

func TestParseMistakes(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		line int
		msg  string // substring of the problem on line
		n    int    // problems expected in all; 0 means 1
	}{
		{
			name: "unknown top-level key",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
loging:
  access_log: {path: "-"}
`),
			line: 9, msg: `unknown key "loging" in the top level: did you mean "logging"?`,
		},
		{
			name: "unknown key in a listener",
			doc: doc(`
listeners:
  - name: public
    listen: ":8080"
    protcol: http
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 4, msg: `unknown key "protcol" in a listener`,
		},
		{
			name: "unknown key in health_check",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
    health_check:
      path: /healthz
      intervall: 2s
`),
			line: 11, msg: `unknown key "intervall" in health_check`,
		},
		{
			name: "unknown key in a route match",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - name: all
    match: {path: /}
    pool: web
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 5, msg: `unknown key "path" in a route match`,
		},
		{
			name: "unknown key in a backend",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - id: w1
        address: 127.0.0.1:9001
        wieght: 2
`),
			line: 10, msg: `unknown key "wieght" in a backend`,
		},
		{
			name: "duration without unit",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    drain_timeout: 5
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 7, msg: `invalid duration "5"`,
		},
		{
			name: "duration with unknown unit",
			doc: doc(`
shutdown_timeout: 10x
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 1, msg: `invalid duration "10x"`,
		},
		{
			name: "duration that is a list",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
    connect_timeout: [5s]
`),
			line: 9, msg: `wrong type: a duration (e.g. 5s, 500ms, 1h) is expected, not a list`,
		},
		{
			name: "negative duration",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
    connect_timeout: -1s
`),
			line: 9, msg: `duration "-1s" must not be negative`,
		},
		{
			name: "duplicate listener name",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
  - {name: public, listen: ":8081"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 3, msg: `duplicate listener name "public"`,
		},
		{
			name: "duplicate listen address",
			doc: doc(`
listeners:
  - name: public
    listen: ":8080"
  - name: other
    listen: ":8080"
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 5, msg: `listen ":8080" is already used by listener "public"`,
		},
		{
			name: "duplicate pool name",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
  - name: web
    backends:
      - {id: w2, address: 127.0.0.1:9002}
`),
			line: 9, msg: `duplicate pool name "web"`,
		},
		{
			name: "duplicate backend id",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
      - {id: w1, address: 127.0.0.1:9002}
`),
			line: 9, msg: `duplicate backend id "w1"`,
		},
		{
			name: "duplicate route name",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /api/}, pool: web}
  - name: all
    match: {path_prefix: /}
    pool: web
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 5, msg: `duplicate route name "all"`,
		},
		{
			name: "route to an undefined pool",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - name: all
    match: {path_prefix: /}
    pool: wbe
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 6, msg: `route "all" points at pool "wbe", which is not defined`,
		},
		{
			name: "route without a pool",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - name: all
    match: {path_prefix: /}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 4, msg: `route "all" has no pool`,
		},
		{
			name: "unknown algorithm",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    algorithm: least_conn
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 7, msg: `unknown algorithm "least_conn"`,
		},
		{
			name: "backend address without port",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - id: w1
        address: 127.0.0.1
`),
			line: 9, msg: `address "127.0.0.1": not host:port`,
		},
		{
			name: "backend port out of range",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
      - {id: w2, address: "127.0.0.1:70000"}
`),
			line: 9, msg: `port "70000" is not a number between 1 and 65535`,
		},
		{
			name: "backend without host",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: ":9001"}
`),
			line: 8, msg: `missing host`,
		},
		{
			name: "listener port out of range",
			doc: doc(`
listeners:
  - name: public
    listen: ":70000"
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 3, msg: `listen ":70000": port "70000" is not a number between 1 and 65535`,
		},
		{
			name: "weight too high",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    algorithm: weighted_round_robin
    backends:
      - id: w1
        address: 127.0.0.1:9001
        weight: 1001
`),
			line: 11, msg: `weight 1001 must be between 1 and 1000`,
		},
		{
			name: "negative weight",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001, weight: -1}
`),
			line: 8, msg: `weight -1 must be between 1 and 1000`,
		},
		{
			name: "backend id with a slash",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - address: 127.0.0.1:9001
        id: a/b
`),
			line: 9, msg: `backend id "a/b" must not contain spaces or slashes`,
		},
		{
			name: "pool without backends",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends: []
`),
			line: 6, msg: `pool "web" has no backends`,
		},
		{
			name: "admin listens beyond loopback",
			doc: doc(`
admin:
  listen: 0.0.0.0:9090
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 2, msg: `admin.listen "0.0.0.0:9090" is not a loopback address`,
		},
		{
			name: "admin listen without host",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
admin: {listen: ":9090"}
`),
			line: 9, msg: `admin.listen ":9090": missing host`,
		},
		{
			name: "health_check timeout not below interval",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
    health_check:
      interval: 2s
      timeout: 2s
`),
			line: 11, msg: `health_check.timeout (2s) must be shorter than interval (2s)`,
		},
		{
			name: "health_check default timeout above interval",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
    health_check:
      interval: 1s
`),
			line: 9, msg: `health_check.timeout (2s) must be shorter than interval (1s)`,
		},
		{
			name: "health_check path without slash",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
    health_check:
      path: healthz
`),
			line: 10, msg: `health_check.path "healthz" must start with /`,
		},
		{
			name: "health_check negative threshold",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
    health_check:
      healthy_threshold: 2
      unhealthy_threshold: -3
`),
			line: 11, msg: `health_check thresholds must be 1 or more`,
		},
		{
			name: "outlier_detection with nothing to count",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
    outlier_detection:
      ejection_time: 30s
`),
			line: 9, msg: `outlier_detection needs consecutive_5xx or consecutive_connect_failures`,
		},
		{
			name: "path_prefix without leading slash",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - name: all
    pool: web
    match:
      path_prefix: api/
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 7, msg: `path_prefix "api/" must start with /`,
		},
		{
			name: "wildcard host with two stars",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - name: all
    pool: web
    match:
      host: "*.*.example.com"
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 7, msg: `host "*.*.example.com" is not a host name or a one-label wildcard`,
		},
		{
			name: "wildcard in the middle of a host",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {host: "api.*.com"}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 4, msg: `host "api.*.com" is not a host name`,
		},
		{
			name: "bad trusted_proxies entry",
			doc: doc(`
listeners:
  - name: public
    listen: ":8080"
    trusted_proxies:
      - 10.0.0.0/8
      - 10.0.0.0/33
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 6, msg: `trusted proxy "10.0.0.0/33" is not an IP address or CIDR`,
		},
		{
			name: "invalid hash_key",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    algorithm: consistent_hash
    hash_key: "header:"
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 8, msg: `hash_key "header:": use client_ip or header:NAME`,
		},
		{
			name: "hash_key on a pool that does not hash",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    hash_key: client_ip
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 7, msg: `hash_key only applies to algorithm consistent_hash`,
		},
		{
			name: "access log directory missing",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
logging:
  access_log:
    path: no/such/dir/access.log
`),
			line: 11, msg: `access log directory "no/such/dir" does not exist`,
		},
		{
			name: "unknown protocol",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080", protocol: quic}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 2, msg: `unknown protocol "quic" (http or https)`,
		},
		{
			name: "string where a list is expected",
			doc: doc(`
listeners:
  - name: public
    listen: ":8080"
    trusted_proxies: 10.0.0.1
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 4, msg: "wrong type: a string `10.0.0.1` where a list of strings is expected",
		},
		{
			name: "string where a list of listeners is expected",
			doc: doc(`
listeners: public
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			// The listener list is then empty, which is reported too.
			line: 1, msg: "wrong type: a string `public` where a list of listeners is expected", n: 2,
		},
		{
			name: "mapping where a list of backends is expected",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      id: w1
      address: 127.0.0.1:9001
`),
			// The pool is then also empty, which is reported too.
			line: 8, msg: "wrong type: a mapping where a list of backends is expected", n: 2,
		},
		{
			name: "string where a number is expected",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    retries: many
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 7, msg: "wrong type: a string `many` where a number is expected",
		},
		{
			name: "list where a mapping is expected",
			doc: doc(`
admin: [127.0.0.1:9090]
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 1, msg: "wrong type: a list where admin is expected",
		},
		{
			name: "duplicate key",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
    algorithm: round_robin
    algorithm: least_connections
`),
			line: 10, msg: `mapping key "algorithm" already defined at line 9`,
		},
		{
			name: "duplicate top-level key",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
listeners:
  - {name: other, listen: ":8081"}
`),
			line: 9, msg: `mapping key "listeners" already defined at line 1`,
		},
		{
			// A repeated key must not hide the rest of the file from
			// validation.
			name: "duplicate top-level key and another mistake",
			doc: doc(`
data_dir: a
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    algorithm: fastest
    backends:
      - {id: w1, address: 127.0.0.1:9001}
data_dir: b
`),
			line: 8, msg: `unknown algorithm "fastest"`, n: 2,
		},
		{name: "empty file", doc: "", line: 1, msg: "config is empty"},
		{name: "comments only", doc: "# nothing yet\n\n", line: 1, msg: "config is empty"},
		{name: "document marker only", doc: "---\n", line: 1, msg: "config is empty"},
		{name: "not a mapping", doc: "\n- listeners\n", line: 2, msg: "config must be a mapping"},
		{
			name: "no listeners",
			doc: doc(`
listeners: []
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 1, msg: "at least one listener is required",
		},
		{
			name: "no routes",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 1, msg: "at least one route is required",
		},
		{
			name: "listener without a name",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
  - listen: ":8081"
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 3, msg: "listener has no name",
		},
		{
			name: "syntax error: missing colon",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 3, msg: "could not find expected ':'",
		},
		{
			name: "syntax error: unclosed flow sequence",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends: [{id: w1, address: 127.0.0.1:9001}
`),
			line: 7, msg: "did not find expected ',' or ']'",
		},
		{
			name: "syntax error: key out of line",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
 logging: {}
`),
			line: 9, msg: "did not find expected key",
		},
		{
			name: "syntax error: unterminated quote",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: "/}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			// Reported where the quoted string starts.
			line: 4, msg: "found unexpected end of stream",
		},
		{
			name: "syntax error: tab indentation",
			doc:  "listeners:\n  - {name: public, listen: \":8080\"}\n\troutes: []\n",
			line: 3, msg: "found character that cannot start any token",
		},
		{
			name: "second document",
			doc: valid + doc(`
---
pools:
  - name: api
`),
			line: 9, msg: "a config file holds one YAML document",
		},
		{
			name: "syntax error in a second document",
			doc: valid + doc(`
---
pools: [
`),
			line: 10, msg: "did not find expected node content",
		},
		{
			name: "two routes with the same match",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
  - {name: api, match: {host: "", path_prefix: /}, pool: web}
  - {name: shop, match: {host: Shop.example, path_prefix: /a}, pool: web}
  - {name: shop2, match: {host: shop.example, path_prefix: /a}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 5, msg: `route "api" matches what route "all" matches`, n: 2,
		},
		{
			name: "unknown key in a security section",
			doc: valid + doc(`
security:
  slowloris_protection: {header_timeout_secs: 5}
`),
			line: 10, msg: `unknown key "header_timeout_secs" in security.slowloris_protection`,
		},
		{
			name: "duration out of range",
			doc:  valid + "shutdown_timeout: 100000000h\n",
			line: 9, msg: `duration "100000000h" is too long`,
		},
		{
			name: "rate-limit endpoint without path",
			doc: valid + doc(`
security:
  rate_limits:
    endpoints:
      - {limit: 0, window: 1m}
`),
			line: 12, msg: `endpoint #1 (no path): limit must be 1 or more`, n: 2,
		},
		{
			name: "weight written as 0",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    algorithm: weighted_round_robin
    backends:
      - {id: w1, address: 127.0.0.1:9001}
      - id: w2
        address: 127.0.0.1:9002
        weight: 0
`),
			line: 12, msg: `backend "w2": weight 0 must be between 1 and 1000`,
		},
		{
			name: "listen address that is no IP address",
			doc: doc(`
listeners:
  - {name: public, listen: "256.0.0.1:8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 2, msg: `"256.0.0.1" is not a valid IP address`,
		},
		{
			name: "backend address that is no IP address",
			doc: doc(`
listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 999.1.1.1:9001}
`),
			line: 8, msg: `"999.1.1.1" is not a valid IP address`,
		},
		{
			name: "listener on the admin address",
			doc: doc(`
admin: {listen: "127.0.0.1:9090"}
listeners:
  - {name: public, listen: ":8080"}
  - {name: other, listen: "127.0.0.1:9090"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`),
			line: 4, msg: `listener "other": listen "127.0.0.1:9090" is also admin.listen`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("t.yaml", []byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse accepted the document:\n%s", tc.doc)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with an error")
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error is %T, not Problems: %v", err, err)
			}
			want := tc.n
			if want == 0 {
				want = 1
			}
			if len(ps) != want {
				t.Errorf("got %d problems, want %d:\n%v", len(ps), want, ps)
			}
			found := false
			for _, p := range ps {
				if p.File != "t.yaml" {
					t.Errorf("problem names file %q, want t.yaml: %v", p.File, p)
				}
				if p.Line == tc.line && strings.Contains(p.Msg, tc.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("want t.yaml:%d: ...%s..., got:\n%v", tc.line, tc.msg, ps)
			}
		})
	}
}

func TestParseReportsEveryMistakeInLineOrder(t *testing.T) {
	src := doc(`
data_dir: data
admin: {listen: "10.0.0.1:9090"}
listeners:
  - {name: public, listen: ":8080", protcol: http}
  - {name: public, listen: ":8081"}
routes:
  - {name: all, match: {path_prefix: /}, pool: nope}
pools:
  - name: web
    algorithm: fastest
    drain_timeout: 30
    backends:
      - {id: w1, address: 127.0.0.1:9001, weight: 5000}
`)
	_, err := Parse("multi.yaml", []byte(src))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse error = %v, want Problems", err)
	}
	want := []struct {
		line int
		msg  string
	}{
		{2, `admin.listen "10.0.0.1:9090" is not a loopback address`},
		{4, `unknown key "protcol" in a listener`},
		{5, `duplicate listener name "public"`},
		{7, `points at pool "nope"`},
		{10, `unknown algorithm "fastest"`},
		{11, `invalid duration "30"`},
		{13, `weight 5000 must be between 1 and 1000`},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(want), ps)
	}
	for i, w := range want {
		if ps[i].Line != w.line || !strings.Contains(ps[i].Msg, w.msg) {
			t.Errorf("problem %d = %v, want multi.yaml:%d: ...%s...", i, ps[i], w.line, w.msg)
		}
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("Error() has %d lines, want %d:\n%s", len(lines), len(want), err)
	}
	for i, l := range lines {
		if l != ps[i].String() {
			t.Errorf("Error() line %d = %q, want %q", i, l, ps[i].String())
		}
	}
	if want := `multi.yaml:2: admin.listen "10.0.0.1:9090" is not a loopback address`; !strings.HasPrefix(lines[0], want) {
		t.Errorf("Error() line 0 = %q, want prefix %q", lines[0], want)
	}
}

func TestProblemsError(t *testing.T) {
	ps := Problems{{File: "a.yaml", Line: 3, Msg: "first"}, {File: "a.yaml", Line: 12, Msg: "second"}}
	if got, want := ps.Error(), "a.yaml:3: first\na.yaml:12: second"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	cfg, err := Load(path)
	if cfg != nil || err == nil {
		t.Fatalf("Load(missing) = %v, %v; want nil, problem", cfg, err)
	}
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 {
		t.Fatalf("Load(missing) error = %#v, want one Problem", err)
	}
	if ps[0].File != path {
		t.Errorf("problem file = %q, want %q", ps[0].File, path)
	}
	if !strings.HasPrefix(err.Error(), path+":") || !strings.Contains(ps[0].Msg, "cannot read config") {
		t.Errorf("Error() = %q, want it to name %s and say it cannot be read", err, path)
	}
}

func TestLoadAccessLogRelativeToConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rampart.yaml")
	src := valid + "logging: {access_log: {path: logs/access.log}}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := cfg.Resolve(cfg.Logging.AccessLog.Path), filepath.Join(dir, "logs", "access.log"); got != want {
		t.Errorf("Resolve(access log) = %q, want %q", got, want)
	}
}

func TestLoadQuickstart(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "quickstart.yaml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s):\n%v", path, err)
	}
	if cfg.File != path {
		t.Errorf("File = %q, want %q", cfg.File, path)
	}
	if cfg.Admin.Listen != "127.0.0.1:9090" {
		t.Errorf("admin.listen = %q", cfg.Admin.Listen)
	}
	web, api := cfg.Pool("web"), cfg.Pool("api")
	if web == nil || api == nil {
		t.Fatalf("pools web, api = %v, %v", web, api)
	}
	if web.Algorithm != "round_robin" || api.Algorithm != "least_connections" {
		t.Errorf("algorithms = %q, %q", web.Algorithm, api.Algorithm)
	}
	if web.DrainTimeout.D() != 30*time.Second {
		t.Errorf("web drain_timeout = %s, want 30s (as written)", web.DrainTimeout.D())
	}
	if api.DrainTimeout.D() != DefaultDrainTimeout || DefaultDrainTimeout != 300*time.Second {
		t.Errorf("api drain_timeout = %s, want the 300s default", api.DrainTimeout.D())
	}
	if w := web.Backends[0].Weight; w != 1 {
		t.Errorf("web-1 weight = %d, want the default 1", w)
	}
	if w := api.Backends[0].Weight; w != 2 {
		t.Errorf("api-1 weight = %d, want 2 (as written)", w)
	}
	if api.ConnectTimeout.D() != DefaultConnectTimeout || api.Retries != 1 || api.MaxIdleConnsPerBackend != DefaultMaxIdlePerBE {
		t.Errorf("api defaults: connect_timeout %s, retries %d, max_idle %d", api.ConnectTimeout.D(), api.Retries, api.MaxIdleConnsPerBackend)
	}
	if h := api.HealthCheck; h == nil || h.HealthyThreshold != 2 || h.UnhealthyThreshold != 3 {
		t.Errorf("api health_check thresholds not defaulted: %+v", h)
	}
	if o := web.OutlierDetection; o == nil || o.Consecutive5xx != 5 || o.EjectionTime.D() != 30*time.Second {
		t.Errorf("web outlier_detection = %+v", o)
	}
	if !cfg.Listeners[0].H2C || cfg.Listeners[0].Protocol != "http" {
		t.Errorf("listener = %+v", cfg.Listeners[0])
	}
	if got := cfg.Line("pools[1].backends[0].weight"); got != 33 {
		t.Errorf(`Line("pools[1].backends[0].weight") = %d, want 33`, got)
	}
}

// Hostile anchors must neither hang the loader nor take it down: a
// self-referencing anchor used to send the line indexer into endless
// recursion.
func TestParseHostileAliases(t *testing.T) {
	docs := []string{
		"a: &a [*a]\n",
		"listeners: &a [*a]\n",
		"pools: &p\n  - name: x\n    backends: *p\n",
		"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
		strings.Repeat("a:\n ", 2000) + "b\n",
	}
	for _, d := range docs {
		type result struct {
			cfg *Config
			err error
		}
		done := make(chan result, 1)
		go func() {
			cfg, err := Parse("t.yaml", []byte(d))
			done <- result{cfg, err}
		}()
		select {
		case r := <-done:
			checkParseResult(t, r.cfg, r.err)
			if r.err == nil {
				t.Errorf("Parse accepted %q", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Parse(%.40q...) did not return", d)
		}
	}
}

// checkParseResult is the contract FuzzParse checks: a config and no
// error, or no config and Problems that each point at a line and say
// something.
func checkParseResult(t *testing.T, cfg *Config, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if cfg != nil {
		t.Fatalf("Parse returned a config and an error: %v", err)
	}
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("Parse error is %T, not Problems: %v", err, err)
	}
	if len(ps) == 0 {
		t.Fatalf("Parse returned empty Problems")
	}
	for _, p := range ps {
		if p.Line < 0 || p.Msg == "" {
			t.Fatalf("bad problem %#v", p)
		}
	}
}

func TestLoadDataDirIsAFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "state"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(path, []byte("data_dir: state\n"+valid), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Line != 1 || !strings.Contains(ps[0].Msg, `data_dir "state" is a file, not a directory`) {
		t.Fatalf("Load with data_dir naming a file: %v, want one problem at line 1", err)
	}
}

func TestWeightDefaultsToOne(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.Pools[0].Backends[0].Weight; w != 1 {
		t.Fatalf("weight of a backend written without one = %d, want 1", w)
	}
}

func TestNearestKey(t *testing.T) {
	keys := []string{"listeners", "logging", "routes", "pools", "crl_file"}
	for key, want := range map[string]string{
		"listners": "listeners", "loging": "logging", "rotes": "routes", "pool": "pools",
		"ca_file": "", "backends": "", "xyz": "",
	} {
		if got := nearestKey(key, keys); got != want {
			t.Errorf("nearestKey(%q) = %q, want %q", key, got, want)
		}
	}
}
