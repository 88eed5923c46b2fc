// Package waf is pipeline stage 5 (DESIGN §1): the OWASP Core Rule Set v4,
// embedded, run by Coraza v3. It scores each request (headers, and the
// body for JSON, urlencoded, multipart and XML) and says PASS, DETECT (an
// attack, let through because the mode is DETECT) or BLOCK.
//
// A WAF is built once per config and never changed; a reload builds a new
// one, so a reload with rules that do not compile keeps the old WAF.
package waf

import (
	"fmt"
	"github.com/rampart-proxy/rampart/internal/wafrx"
	"io/fs"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/experimental"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"

	"github.com/rampart-proxy/rampart/internal/pipeline"
)

// Mode says what happens to a request scored as an attack.
type Mode string

// Modes.
const (
	ModeDetect Mode = "DETECT" // logged and reported, passed on
	ModeBlock  Mode = "BLOCK"  // answered 403, never reaches a backend
)

// RuleSetCRS is the name of the embedded OWASP Core Rule Set v4.
const RuleSetCRS = "owasp_crs_v4"

// Config is security.waf, with the per-route overrides by route name.
type Config struct {
	Enabled          bool
	Mode             Mode
	ParanoiaLevel    int // 1-4
	AnomalyThreshold int // inbound (and outbound) anomaly score that blocks
	// RuleSets lists the built-in rule sets; only RuleSetCRS exists.
	RuleSets         []string
	CustomRulesFiles []string // SecLang, run before CRS
	// AllowedMethods and AllowedContentTypes override CRS's
	// tx.allowed_methods and tx.allowed_request_content_type; empty keeps
	// CRS's defaults.
	AllowedMethods      []string
	AllowedContentTypes []string
	// MaxBodyInspectBytes is the most of a body that is inspected; a
	// longer body is refused (413) unless RefuseLargeBody is false or the
	// path has a body_size_limit exclusion, in which case its start is
	// inspected and the rest passes unread.
	MaxBodyInspectBytes int64
	PassLargeBody       bool
	// ResponseInspection runs CRS's outbound rules (data leakage, web
	// shells) on answers: headers, and text, HTML, XML and JSON bodies up
	// to MaxBodyInspectBytes, which are held back until inspected.
	ResponseInspection bool
	// NoRuleSkipping turns rule skipping (internal/wafrx) off: every CRS
	// rule is evaluated on every request.
	NoRuleSkipping bool
	Exclusions     []Exclusion
	Routes         map[string]RouteConfig
}

// RouteConfig overrides Config for one route; zero values inherit.
// Exclusions are added to the global ones.
type RouteConfig struct {
	Enabled            *bool
	Mode               Mode
	ParanoiaLevel      int
	AnomalyThreshold   int
	ResponseInspection *bool
	AllowedMethods     []string
	Exclusions         []Exclusion
}

// WAF is a compiled Config.
type WAF struct {
	maxBody      int64
	contentTypes string
	base         *Policy
	routes       map[string]*Policy
	engines      map[engineSettings]coraza.WAF
	custom       []rulesFile
	crs          bool
	noSkipping   bool
	// removed are the rule ids exclusions remove at run time, on any
	// route: paranoia gates they name are left to Coraza.
	removed []wafrx.IDRange
	// skipping is what rule skipping planned, per compiled rule set.
	skipping []wafrx.SkipReport
}

// Policy is how the requests of one route are inspected.
type Policy struct {
	enabled    bool
	mode       Mode
	engine     coraza.WAF
	exclusions []exclusion
	passLarge  bool
	maxBody    int64
	responses  bool // response inspection
}

// New compiles c. Custom rules that do not compile are reported as
// "FILE:LINE: message".
func New(c Config) (*WAF, error) {
	w := &WAF{noSkipping: c.NoRuleSkipping, maxBody: c.MaxBodyInspectBytes, routes: map[string]*Policy{}, engines: map[engineSettings]coraza.WAF{}}
	if w.maxBody <= 0 {
		w.maxBody = DefaultMaxBodyInspectBytes
	}
	for _, rs := range c.RuleSets {
		if rs != RuleSetCRS {
			return nil, fmt.Errorf("unknown rule set %q (only %s)", rs, RuleSetCRS)
		}
		w.crs = true
	}
	for _, m := range c.AllowedMethods {
		if err := CheckMethod(m); err != nil {
			return nil, err
		}
	}
	for _, rc := range c.Routes {
		for _, m := range rc.AllowedMethods {
			if err := CheckMethod(m); err != nil {
				return nil, err
			}
		}
	}
	for _, ct := range c.AllowedContentTypes {
		if err := CheckContentType(ct); err != nil {
			return nil, err
		}
	}
	if len(c.AllowedContentTypes) > 0 {
		parts := make([]string, len(c.AllowedContentTypes))
		for i, ct := range c.AllowedContentTypes {
			parts[i] = "|" + strings.ToLower(ct) + "|"
		}
		w.contentTypes = strings.Join(parts, " ")
	}
	for _, p := range c.CustomRulesFiles {
		f, err := readRulesFile(p)
		if err != nil {
			return nil, err
		}
		w.custom = append(w.custom, f)
	}
	all := slices.Clone(c.Exclusions)
	for _, rc := range c.Routes {
		all = append(all, rc.Exclusions...)
	}
	if xs, err := compileExclusions(all); err == nil {
		for _, x := range xs {
			for _, id := range x.ids {
				w.removed = append(w.removed, wafrx.IDRange{id, id})
			}
			for _, rg := range x.ranges {
				w.removed = append(w.removed, wafrx.IDRange(rg))
			}
		}
	}
	var err error
	if w.base, err = w.policy(c, RouteConfig{}); err != nil {
		return nil, err
	}
	for name, rc := range c.Routes {
		if w.routes[name], err = w.policy(c, rc); err != nil {
			return nil, fmt.Errorf("route %q: %w", name, err)
		}
	}
	return w, nil
}

// DefaultMaxBodyInspectBytes is max_body_inspect_bytes when not set.
const DefaultMaxBodyInspectBytes = 128 << 10

func (w *WAF) policy(c Config, rc RouteConfig) (*Policy, error) {
	p := &Policy{enabled: c.Enabled, mode: c.Mode, passLarge: c.PassLargeBody, maxBody: w.maxBody, responses: c.ResponseInspection}
	if rc.Enabled != nil {
		p.enabled = *rc.Enabled
	}
	if rc.Mode != "" {
		p.mode = rc.Mode
	}
	if p.mode == "" {
		p.mode = ModeBlock
	}
	if p.mode != ModeBlock && p.mode != ModeDetect {
		return nil, fmt.Errorf("unknown mode %q (DETECT or BLOCK)", p.mode)
	}
	s := engineSettings{paranoia: c.ParanoiaLevel, threshold: c.AnomalyThreshold, responses: c.ResponseInspection}
	if rc.ParanoiaLevel != 0 {
		s.paranoia = rc.ParanoiaLevel
	}
	if rc.AnomalyThreshold != 0 {
		s.threshold = rc.AnomalyThreshold
	}
	if rc.ResponseInspection != nil {
		s.responses = *rc.ResponseInspection
	}
	p.responses = s.responses
	if s.paranoia == 0 {
		s.paranoia = 1
	}
	if s.paranoia < 1 || s.paranoia > 4 {
		return nil, fmt.Errorf("paranoia_level %d is not between 1 and 4", s.paranoia)
	}
	if s.threshold <= 0 {
		s.threshold = 5
	}
	methods := c.AllowedMethods
	if len(rc.AllowedMethods) > 0 {
		methods = rc.AllowedMethods
	}
	s.allowedMethods = strings.Join(methods, " ")
	var err error
	if p.exclusions, err = compileExclusions(slices.Concat(c.Exclusions, rc.Exclusions)); err != nil {
		return nil, err
	}
	if !p.enabled {
		return p, nil
	}
	if p.engine, err = w.engine(s); err != nil {
		return nil, err
	}
	return p, nil
}

// engine returns the compiled rule set for s, building it once.
func (w *WAF) engine(s engineSettings) (coraza.WAF, error) {
	if e, ok := w.engines[s]; ok {
		return e, nil
	}
	setup, custom, crs := w.directives(s, "", nil), "", ""
	for _, f := range w.custom {
		custom += f.text + "\n"
	}
	if w.crs {
		crs = crsInclude
	}
	text := setup + custom + crs
	// Rule skipping (internal/wafrx) goes in front, and CRS comes with
	// its paranoia gates decided; should that be what fails to compile (a
	// custom rule with one of the reserved ids), the rules are compiled
	// as written.
	var e coraza.WAF
	var err error
	fsys := fs.FS(coreruleset.FS)
	prefix, rep := "", wafrx.SkipReport{Disabled: "turned off by rule_skipping: false"}
	skipText := text
	if !w.noSkipping {
		var gates wafrx.GateReport
		if w.crs {
			// CRS's defaults set with Rampart's settings: CRS's
			// initialisation then finds them set and its rules setting
			// them one by one never match, so they are left out.
			defaults := wafrx.CRSDefaults(coreruleset.FS, setup+custom)
			withDefaults := func(omit map[string]bool) string {
				kept := slices.DeleteFunc(slices.Clone(defaults), func(d wafrx.TXDefault) bool { return omit[d.Name] })
				return w.directives(s, wafrx.DefaultsSetvars(kept), omit) + custom + crs
			}
			// Rampart runs the response phases only with response
			// inspection, never the logging phase, and reads the
			// blocking scores (txInt).
			runs, reads := wafrx.RequestPhases, []string{inboundScore}
			if s.responses {
				runs |= wafrx.ResponsePhases
				reads = append(reads, outboundScore)
			}
			skipText = withDefaults(nil)
			fsys, gates = wafrx.ResolveParanoiaGates(coreruleset.FS, skipText, w.removed, runs, reads...)
			// Settings no rule that runs reads are not set at all (one
			// more resolution, without them).
			if len(gates.UnreadSettings) > 0 {
				omit := map[string]bool{}
				for _, name := range gates.UnreadSettings {
					omit[name] = true
				}
				skipText = withDefaults(omit)
				unset := gates.UnreadSettings
				fsys, gates = wafrx.ResolveParanoiaGates(coreruleset.FS, skipText, w.removed, runs, reads...)
				gates.UnreadSettings = unset
			}
		}
		prefix, rep = wafrx.SkipRules(fsys, skipText)
		if rep.Disabled == "" {
			rep.Gates = gates
		}
	}
	if rep.Disabled == "" {
		e, err = coraza.NewWAF(coraza.NewWAFConfig().WithDebugLogger(newQuietLogger()).WithRootFS(fsys).WithDirectives(prefix + skipText))
	}
	if e == nil {
		wafrx.DiscardSkipRules(prefix)
		if rep.Disabled == "" {
			rep = wafrx.SkipReport{Disabled: "rules do not compile with it: " + cleanErr(err)}
		}
		e, err = coraza.NewWAF(coraza.NewWAFConfig().WithDebugLogger(newQuietLogger()).WithRootFS(coreruleset.FS).WithDirectives(text))
	}
	if err != nil {
		// Name the custom rule at fault: each file is checked after
		// the setup and the files before it, with CRS after it.
		before := setup
		for _, f := range w.custom {
			if ferr := f.check(before, crs); ferr != nil {
				return nil, ferr
			}
			before += f.text + "\n"
		}
		return nil, fmt.Errorf("waf rules: %s", cleanErr(err))
	}
	w.engines[s] = e
	rep.RuleSet = fmt.Sprintf("paranoia_level=%d anomaly_threshold=%d response_inspection=%v", s.paranoia, s.threshold, s.responses)
	w.skipping = append(w.skipping, rep)
	return e, nil
}

// RuleSkipping reports, per compiled rule set, how many CRS rules are
// decided per request by rule skipping (internal/wafrx), or why it is off.
func (w *WAF) RuleSkipping() []wafrx.SkipReport {
	if w == nil {
		return nil
	}
	return w.skipping
}

// Policy returns the policy of a route (the global one for routes
// without a waf section). A nil WAF has a nil policy, which inspects
// nothing.
func (w *WAF) Policy(route string) *Policy {
	if w == nil {
		return nil
	}
	if p, ok := w.routes[route]; ok {
		return p
	}
	return w.base
}

// Evaluate runs the global policy on r; see Policy.Evaluate. It is the
// entry point for regression suites (the CRS tests).
func (w *WAF) Evaluate(r *http.Request) Result { return w.Policy("").Evaluate(r) }

// Enabled reports whether the policy inspects requests.
func (p *Policy) Enabled() bool { return p != nil && p.enabled }

// Mode is the policy's mode.
func (p *Policy) Mode() Mode { return p.mode }

// Evaluate inspects r: its request line, headers and, for the content
// types CRS parses, up to max_body_inspect_bytes of its body. A body it
// reads is put back in front of the unread rest, so the backend gets the
// body unchanged and streaming continues past what was inspected.
func (p *Policy) Evaluate(r *http.Request) Result {
	res, tx := p.evaluate(r)
	if tx != nil {
		tx.Close()
	}
	return res
}

// EvaluateExchange is Evaluate that, when response inspection is on and
// the request passed, also returns what inspects the answer (the request's
// transaction, kept open); nil otherwise.
func (p *Policy) EvaluateExchange(r *http.Request) (Result, *ResponseCheck) {
	res, tx := p.evaluate(r)
	if tx == nil {
		return res, nil
	}
	if !p.responses || res.Action != ActionPass || res.Err != nil {
		tx.Close()
		return res, nil
	}
	return res, &ResponseCheck{tx: tx, p: p, r: r}
}

// evaluate returns the verdict and the transaction, which the caller
// closes.
func (p *Policy) evaluate(r *http.Request) (Result, types.Transaction) {
	if !p.Enabled() {
		return Result{}, nil
	}
	id := pipeline.FromContext(r.Context()).RequestID
	if id == "" {
		id = "-"
	}
	var tx types.Transaction
	if wo, ok := p.engine.(experimental.WAFWithOptions); ok {
		tx = wo.NewTransactionWithOptions(experimental.Options{ID: id, Context: r.Context()})
	} else {
		tx = p.engine.NewTransaction()
	}

	passLarge := p.passLarge
	if len(p.exclusions) > 0 {
		rm, _ := tx.(ruleRemover)
		for i := range p.exclusions {
			x := &p.exclusions[i]
			if !x.matches(r.URL.Path) {
				continue
			}
			passLarge = passLarge || x.bodyPass
			if rm == nil {
				continue
			}
			for _, id := range x.ids {
				rm.RemoveRuleByID(id)
			}
			for _, rg := range x.ranges {
				rm.RemoveRuleByIDRange(rg[0], rg[1])
			}
		}
	}

	client, cport := splitHostPort(r.RemoteAddr)
	tx.ProcessConnection(client, cport, "", 0)
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	tx.ProcessURI(uri, r.Method, r.Proto)
	host := r.Host
	if host != "" {
		tx.AddRequestHeader("Host", host)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		tx.SetServerName(host)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			if k == "Content-Type" {
				v = canonicalMediaType(v)
			}
			tx.AddRequestHeader(k, v)
		}
	}
	// net/http and Rampart's engine move the framing field out of the map
	// (into r.TransferEncoding); CRS looks for it (920180: a POST needs a
	// Content-Length or a Transfer-Encoding), so it is given back.
	for _, te := range r.TransferEncoding {
		tx.AddRequestHeader("Transfer-Encoding", te)
	}
	if it := tx.ProcessRequestHeaders(); it != nil {
		return p.verdict(tx, it, Result{}), tx
	}
	var res Result
	tooLarge := false
	if tx.IsRequestBodyAccessible() && r.Body != nil && r.Body != http.NoBody && inspectable(r.Header.Get("Content-Type")) {
		var err error
		tooLarge, err = p.feedBody(tx, r)
		if err != nil {
			return Result{Action: ActionPass, Err: err}, tx
		}
		if tooLarge && !passLarge {
			res.BodyTooLarge = true
			if p.mode == ModeBlock {
				res.Action, res.Status = ActionBlock, http.StatusRequestEntityTooLarge
				return res, tx
			}
		}
	}
	it, err := tx.ProcessRequestBody()
	if err != nil {
		return Result{Action: ActionPass, Err: err}, tx
	}
	if tooLarge && it != nil && it.Status == http.StatusBadRequest && !isJSON(r.Header.Get("Content-Type")) {
		// A body passed on over the limit was inspected up to it, and the
		// cut-off start of an XML body does not parse: that is no reason
		// to refuse what body_limit_action lets pass. (A JSON body's start
		// was made whole by closeJSONPrefix: if it fails, it is malformed.)
		it = nil
	}
	return p.verdict(tx, it, res), tx
}

// verdict turns the transaction's state into a Result.
func (p *Policy) verdict(tx types.Transaction, it *types.Interruption, res Result) Result {
	for _, mr := range tx.MatchedRules() {
		// Only rules that log: the rest is setup and flow control.
		if l, ok := mr.(interface{ Log() bool }); ok && !l.Log() || mr.Message() == "" {
			continue
		}
		if id := mr.Rule().ID(); !slices.Contains(res.RuleIDs, id) {
			res.RuleIDs = append(res.RuleIDs, id)
		}
	}
	res.Score = txInt(tx, inboundScore)
	switch {
	case it != nil && it.Status == http.StatusBadRequest:
		// A body that does not parse (CRS 200002): refused, but a client's
		// mistake, not an attack (no offence towards a block).
		res.Status, res.BadBody = it.Status, true
	case it != nil:
		res.Attack = true
		res.Status = http.StatusForbidden
	case res.BodyTooLarge:
		res.Status = http.StatusRequestEntityTooLarge
	default:
		res.Action = ActionPass
		return res
	}
	res.Action = ActionBlock
	if p.mode == ModeDetect {
		res.Action = ActionDetect
	}
	return res
}

// The TX variables Rampart reads: CRS's anomaly scores at the blocking
// paranoia level.
const (
	inboundScore  = "blocking_inbound_anomaly_score"
	outboundScore = "blocking_outbound_anomaly_score"
)

// txInt reads a numeric TX variable (CRS's anomaly scores).
func txInt(tx types.Transaction, name string) int {
	if tv, ok := tx.(interface {
		Variables() plugintypes.TransactionVariables
	}); ok {
		if v := tv.Variables().TX().Get(name); len(v) > 0 {
			n, _ := strconv.Atoi(v[0])
			return n
		}
	}
	return 0
}

func splitHostPort(a string) (string, int) {
	h, ps, err := net.SplitHostPort(a)
	if err != nil {
		return a, 0
	}
	port, _ := strconv.Atoi(ps)
	return h, port
}

// Every WAF Rampart builds uses the pre-filtered @rx (internal/wafrx):
// the same matches as Coraza's, proven on the CRS regression suite, for
// about three quarters of the CPU. It must be registered before the first
// rule is compiled.
func init() { wafrx.Register() }
