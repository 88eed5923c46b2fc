package wafrx

import (
	"regexp"
	"sync"

	"rsc.io/binaryregexp"

	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
)

var registerOnce sync.Once

// prefilters memoises NewPrefilter by pattern for the process: rule
// skipping plans a rule set before Coraza compiles it, and both need the
// same pre-filters (~0.4 s of analysis for CRS).
var prefilters sync.Map // pattern -> *Prefilter (nil stored as (*Prefilter)(nil))

func sharedPrefilter(pattern string) *Prefilter {
	if p, ok := prefilters.Load(pattern); ok {
		return p.(*Prefilter)
	}
	p, _ := prefilters.LoadOrStore(pattern, NewPrefilter(pattern))
	return p.(*Prefilter)
}

// compiledPatterns maps every @rx argument Coraza has handed the operator
// to its regexp: rule skipping checks its own reading of the rule files
// against it, and runs the same regexp.
var compiledPatterns sync.Map

// rejectHook, when set (by tests only), sees every value the pre-filter
// rejected, so tests can check the regexp would not have matched it.
var rejectHook func(re *regexp.Regexp, value string)

// compileHook, when set (by tests only), sees every pattern compiled by the
// operator, flags included, so tests can check the whole CRS pattern set.
var compileHook func(pattern string)

// Register replaces Coraza's @rx operator, process-wide, with the
// pre-filtered one, and adds the action rule skipping (SkipRules) uses. Rules compiled before the call keep the stock operator;
// call it before building the WAF. Calling it again does nothing.
func Register() {
	registerOnce.Do(func() {
		plugins.RegisterOperator("rx", newRx)
		plugins.RegisterAction(skipActionName, newSkipAction)
	})
}

// rx is @rx with a literal pre-filter in front of the regexp.
type rx struct {
	re        *regexp.Regexp
	prefilter *Prefilter // nil: always run the regexp
}

// compiled is what one pattern costs to prepare; shared through Coraza's
// memoizer when the same pattern appears in several rules.
type compiled struct {
	re        *regexp.Regexp
	prefilter *Prefilter
}

func newRx(options plugintypes.OperatorOptions) (plugintypes.Operator, error) {
	// The same flags Coraza's @rx adds: dot matches newline (ModSecurity
	// behaviour) and, unless built with coraza.rule.no_regex_multiline,
	// multi-line anchors.
	pattern := rxFlags + options.Arguments
	if compileHook != nil {
		compileHook(pattern)
	}
	if matchesArbitraryBytes(pattern) {
		// As in Coraza: patterns that must match non-UTF-8 bytes use the
		// byte-oriented engine, on the bare argument. They are rare; no
		// pre-filter.
		return newBinaryRx(options)
	}
	c, err := memoize(options.Memoizer, "wafrx:rx:"+pattern, func() (any, error) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return nil, err
		}
		return &compiled{re: re, prefilter: sharedPrefilter(pattern)}, nil
	})
	if err != nil {
		return nil, err
	}
	cc := c.(*compiled)
	compiledPatterns.Store(options.Arguments, cc.re)
	return &rx{re: cc.re, prefilter: cc.prefilter}, nil
}

func memoize(m plugintypes.Memoizer, key string, fn func() (any, error)) (any, error) {
	if m == nil {
		return fn()
	}
	return m.Do(key, fn)
}

// Evaluate matches like Coraza's @rx: with capture on, TX.0 to TX.8 get the
// whole match and the groups (a group that did not take part gets "").
func (o *rx) Evaluate(tx plugintypes.TransactionState, value string) bool {
	if o.prefilter != nil && !o.prefilter.MayMatch(value) {
		if rejectHook != nil {
			rejectHook(o.re, value)
		}
		return false
	}
	if !tx.Capturing() {
		return o.re.MatchString(value)
	}
	m := o.re.FindStringSubmatchIndex(value)
	if m == nil {
		return false
	}
	for i := 0; i < len(m)/2 && i < 9; i++ {
		if m[2*i] >= 0 {
			tx.CaptureField(i, value[m[2*i]:m[2*i+1]])
		} else {
			tx.CaptureField(i, "")
		}
	}
	return true
}

type binaryRx struct{ re *binaryregexp.Regexp }

func newBinaryRx(options plugintypes.OperatorOptions) (plugintypes.Operator, error) {
	re, err := memoize(options.Memoizer, "wafrx:binrx:"+options.Arguments, func() (any, error) {
		return binaryregexp.Compile(options.Arguments)
	})
	if err != nil {
		return nil, err
	}
	return &binaryRx{re: re.(*binaryregexp.Regexp)}, nil
}

func (o *binaryRx) Evaluate(tx plugintypes.TransactionState, value string) bool {
	if !tx.Capturing() {
		return o.re.MatchString(value)
	}
	m := o.re.FindStringSubmatch(value)
	if len(m) == 0 {
		return false
	}
	for i := 0; i < len(m) && i < 9; i++ {
		tx.CaptureField(i, m[i])
	}
	return true
}
