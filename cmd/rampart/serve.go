package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/server"
)

// cmdServe runs the load balancer until SIGTERM or SIGINT. SIGHUP reloads
// the config file; a bad file is refused and the running config stays.
func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "rampart.yaml", "config file")
	demo := fs.Bool("demo-backends", false, "also start demo backends on the loopback addresses of the config's pools (quickstart)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// A proxy's live heap is small (buffers, pools, tables) while it
	// allocates steadily per request; the default GOGC=100 would collect
	// many times a second for little gain. 400 trades a few MB of heap for
	// a quarter of the GC work. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "rampart: -log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	if *demo {
		stop, err := startDemoBackends(cfg, log)
		if err != nil {
			fmt.Fprintf(stderr, "rampart: demo backends: %v\n", err)
			return 1
		}
		defer stop()
	}
	srv, err := server.New(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "rampart: %v\n", err)
		return 1
	}
	// Take the signals before anything answers, so that a SIGHUP or SIGTERM
	// sent as soon as the admin API is up is never the default (fatal) one.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	if err := srv.Start(); err != nil {
		printConfigError(stderr, err)
		return 1
	}
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			err := srv.Reload(*path)
			recordSIGHUPReload(srv.Audit(), log, *path, err)
			continue
		}
		// The running config, which a reload through the admin API may
		// have replaced as well as SIGHUP.
		cfg := srv.Config()
		log.Info("shutting down: finishing in-flight requests", "signal", sig.String(), "timeout", cfg.ShutdownTimeout.D().String())
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
		err := srv.Shutdown(ctx)
		cancel()
		if err != nil {
			log.Warn("shutdown timeout: remaining connections closed", "error", err.Error())
		}
		log.Info("stopped")
		return 0
	}
	return 0
}
