package waf

import "strconv"

// Action is what the WAF stage did with a request; it is the access log's
// waf_action.
type Action string

// Actions. A request is PASS when inspected and not scored as an attack,
// DETECT when it would have been blocked but the mode is DETECT, BLOCK
// when it was refused. An empty action means the WAF did not inspect it
// (off for the route).
const (
	ActionNone   Action = ""
	ActionPass   Action = "PASS"
	ActionDetect Action = "DETECT"
	ActionBlock  Action = "BLOCK"
)

// Result is the verdict on one request.
type Result struct {
	Action Action
	// Status is the answer to send when Action is BLOCK: 403, 413 for a
	// body over max_body_inspect_bytes that is refused, 400 for a body
	// that does not parse as its Content-Type says.
	Status int
	// RuleIDs are the rules that matched and log (CRS detection rules,
	// the anomaly evaluation, custom rules), in the order they matched.
	RuleIDs []int
	// Score is CRS's inbound anomaly score (blocking paranoia level).
	Score int
	// BodyTooLarge: the body went past max_body_inspect_bytes.
	BodyTooLarge bool
	// BadBody: the body does not parse (JSON, XML, form) as its
	// Content-Type says.
	BadBody bool
	// Attack: the rules scored the request as an attack (what the
	// offender tracker is told), as opposed to a body that was too large
	// or does not parse.
	Attack bool
	// Err is a failure to read the body from the client (Action PASS,
	// nothing was decided); its HTTPStatus, when it has one, is the
	// answer.
	Err error
}

// Matched returns the record's waf_rules_matched: the rule ids followed by
// "anomaly_score=N" when any rule matched.
func (r Result) Matched() []string {
	if len(r.RuleIDs) == 0 && r.Score == 0 {
		return nil
	}
	out := make([]string, 0, len(r.RuleIDs)+1)
	for _, id := range r.RuleIDs {
		out = append(out, strconv.Itoa(id))
	}
	return append(out, "anomaly_score="+strconv.Itoa(r.Score))
}
