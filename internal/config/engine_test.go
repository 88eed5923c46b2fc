package config

import (
	"strings"
	"testing"
)

func TestListenerEngine(t *testing.T) {
	cfg, err := Parse("min.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Listeners[0]; l.Engine != "" || !l.EventLoop() {
		t.Errorf("default: engine %q, EventLoop %v; want event loops for an http listener", l.Engine, l.EventLoop())
	}
	for _, tc := range []struct {
		engine string
		loop   bool
	}{{"eventloop", true}, {"goroutines", false}} {
		doc := strings.Replace(valid, `listen: ":8080"}`, `listen: ":8080", engine: `+tc.engine+`}`, 1)
		cfg, err := Parse("e.yaml", []byte(doc))
		if err != nil {
			t.Fatalf("engine %s: %v", tc.engine, err)
		}
		if got := cfg.Listeners[0].EventLoop(); got != tc.loop {
			t.Errorf("engine %s: EventLoop %v, want %v", tc.engine, got, tc.loop)
		}
	}

	// An https listener runs its connections as goroutines (TLS), whatever
	// the default.
	dir := listenerTLSFiles(t)
	cfg, err = parseTLSListener(t, dir, withBase()...)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listeners[0].EventLoop() {
		t.Error("https listener: EventLoop true")
	}
	cfg, err = parseTLSListener(t, dir, withBase("engine: goroutines")...)
	if err != nil || cfg.Listeners[0].EventLoop() {
		t.Errorf("https listener with engine goroutines: %v", err)
	}
}

func TestListenerEngineMistakes(t *testing.T) {
	_, err := Parse("bad.yaml", []byte(strings.Replace(valid, `listen: ":8080"}`, `listen: ":8080", engine: epoll}`, 1)))
	if want := `bad.yaml:2: listener "public": unknown engine "epoll" (eventloop or goroutines)`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("unknown engine: %v, want %q", err, want)
	}
	dir := listenerTLSFiles(t)
	// tlsBase is lines 5–9: the engine is line 10.
	_, err = parseTLSListener(t, dir, withBase("engine: eventloop")...)
	if want := `rampart.yaml:10: listener "public": engine eventloop serves plaintext (http) listeners only`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("eventloop on https: %v, want %q", err, want)
	}
}
