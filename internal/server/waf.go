package server

import (
	"errors"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rampart-proxy/rampart/internal/acl"
	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/pipeline"
	"github.com/rampart-proxy/rampart/internal/waf"
)

// buildWAF compiles security.waf; nil when no route inspects anything. A
// rule set that does not compile is a config problem, so serve refuses to
// start and a reload keeps the running WAF.
func buildWAF(cfg *config.Config, log *slog.Logger) (*waf.WAF, error) {
	wc, on := cfg.WAFConfig()
	if !on {
		return nil, nil
	}
	w, err := waf.New(wc)
	if err != nil {
		return nil, config.Problems{{File: cfg.File, Line: cfg.Line("security.waf"), Msg: "waf: " + err.Error()}}
	}
	for _, rep := range w.RuleSkipping() {
		if rep.Disabled != "" {
			log.Warn("waf rule skipping off: every CRS rule runs on every request", "rule_set", rep.RuleSet, "reason", rep.Disabled)
		} else {
			attrs := []any{"rule_set", rep.RuleSet, "crs_rules_planned", rep.Candidates, "crs_rules_decided", rep.Gates.Decided, "crs_rules_left_out", rep.Gates.Dropped, "crs_markers_left_out", rep.Gates.Markers, "crs_unread_vars_left_out", len(rep.Gates.Unread), "crs_settings_unset", len(rep.Gates.UnreadSettings)}
			if rep.Gates.MarkersKept != "" {
				attrs = append(attrs, "crs_markers_kept", rep.Gates.MarkersKept)
			}
			if rep.Gates.Disabled != "" {
				attrs = append(attrs, "crs_rules_decided_off", rep.Gates.Disabled)
			}
			log.Info("waf rule skipping on", attrs...)
		}
	}
	return w, nil
}

// wafCounters is rampart_waf_requests_total{action}: requests the WAF
// inspected, by verdict. It lives as long as the process, like every
// counter.
type wafCounters struct {
	pass, detect, block prometheus.Counter
}

func newWAFCounters(reg *prometheus.Registry) wafCounters {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rampart_waf_requests_total",
		Help: "Requests inspected by the WAF, by action (PASS, DETECT, BLOCK).",
	}, []string{"action"})
	reg.MustRegister(vec)
	return wafCounters{
		pass:   vec.WithLabelValues(string(waf.ActionPass)),
		detect: vec.WithLabelValues(string(waf.ActionDetect)),
		block:  vec.WithLabelValues(string(waf.ActionBlock)),
	}
}

func (c wafCounters) count(a waf.Action) {
	switch a {
	case waf.ActionPass:
		c.pass.Inc()
	case waf.ActionDetect:
		c.detect.Inc()
	case waf.ActionBlock:
		c.block.Inc()
	}
}

// inspect is pipeline stage 5 (DESIGN §1): the route's WAF policy scores
// the request; the verdict goes into the record, an attack is reported to
// the offender tracker (DETECT too: the client attacked either way), and
// in BLOCK mode the request is answered here and never reaches a backend.
//
// With response inspection on, a request that passed gets rc, which the
// caller wraps the response writer with (see serveInspected).
func (e *entry) inspect(p *waf.Policy, rw http.ResponseWriter, r *http.Request, rec *pipeline.Record, client netip.Addr) (refused bool, rc *waf.ResponseCheck) {
	if !p.Enabled() {
		return false, nil
	}
	res, rc := p.EvaluateExchange(r)
	rec.WAFAction, rec.WAFRulesMatched = string(res.Action), res.Matched()
	if res.Err != nil {
		// The client's body failed to arrive (or crossed max_body_bytes).
		status := http.StatusBadRequest
		var hs interface{ HTTPStatus() int }
		if errors.As(res.Err, &hs) {
			status = hs.HTTPStatus()
		}
		rec.Error = "body_read_error"
		if status == 499 { // the client left mid-body
			rec.Error = "client_closed"
		}
		if status == http.StatusRequestEntityTooLarge {
			rec.Error = "body_too_large"
			e.srv.metrics.Blocked("request_limits", "max_body_bytes")
		}
		pipeline.WriteError(rw, r, status)
		return true, nil
	}
	e.srv.wafCount.count(res.Action)
	if res.Attack && client.IsValid() {
		e.offense(client, acl.OffenceWAF)
	}
	if res.Action != waf.ActionBlock {
		return false, rc
	}
	reason := "attack"
	switch {
	case res.BadBody:
		reason = "bad_body"
	case !res.Attack:
		reason = "body_too_large"
	}
	rec.Error = "waf_" + reason
	e.srv.metrics.Blocked("waf", reason)
	pipeline.WriteError(rw, r, res.Status)
	return true, nil
}

// serveInspected proxies r with its answer inspected by the outbound
// rules: a BLOCK verdict replaces the answer with a 403 (when it was held
// back, see waf.ResponseWriter); either verdict goes into the record and
// is an offence.
func (e *entry) serveInspected(rc *waf.ResponseCheck, rw http.ResponseWriter, r *http.Request, rec *pipeline.Record, client netip.Addr) {
	defer rc.Close() // also when the proxy aborts the answer
	w := rc.Writer(rw, func(res waf.Result) {
		rec.WAFAction, rec.WAFRulesMatched = string(res.Action), res.Matched()
		if client.IsValid() {
			e.offense(client, acl.OffenceWAF)
		}
		if res.Action == waf.ActionBlock {
			rec.Error = "waf_response"
			e.srv.metrics.Blocked("waf", "response")
		}
	})
	e.srv.proxy.ServeHTTP(w, r)
	w.Finish()
}
