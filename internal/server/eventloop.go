package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rampart-proxy/rampart/internal/evloop"
)

// eventLoopHandovers counts the event loops taken over from a connection
// whose handling blocked on something other than its sockets (see
// evloop.Group's watchdog): each one held up that loop's other connections
// for 10–15 ms. A steady rise means something in the request path blocks
// (a slow disk under the access log, a handler waiting for a lock); on a
// machine whose cores are all busy, a loop's thread set aside by the kernel
// for that long counts too.
var eventLoopHandovers = prometheus.NewCounterFunc(prometheus.CounterOpts{
	Name: "rampart_eventloop_handovers_total",
	Help: "Event loops taken over from a connection whose handling blocked for 10 ms or more on something other than its sockets.",
}, func() float64 { return float64(evloop.Handovers()) })
