package waf

import (
	"fmt"
	"strconv"
	"strings"
)

// engineSettings are what a compiled rule set depends on. Routes that
// share them share one engine (a compiled CRS is a few MB and ~0.1 s to
// build, so one per distinct setting, not one per route).
type engineSettings struct {
	paranoia       int
	threshold      int
	allowedMethods string // space-separated, "" for CRS's default
	responses      bool   // response inspection: the response phases run
}

// directives is the SecLang that configures an engine, before the custom
// rules and CRS. Rampart writes it instead of including
// @coraza.conf-recommended and @crs-setup.conf.example so that every
// setting is one the operator can see in Rampart's config.
func (w *WAF) directives(s engineSettings, moreSetvars string, omit map[string]bool) string {
	var b strings.Builder
	limit := strconv.FormatInt(max(w.maxBody, 1), 10)
	// The engine always runs "On": DETECT and BLOCK differ only in what
	// Rampart does with an interruption, so both modes score the same.
	b.WriteString("SecRuleEngine On\n")
	b.WriteString("SecRequestBodyAccess On\n")
	// Rampart hands Coraza at most max_body_inspect_bytes and decides
	// itself what happens to a longer body (body.go).
	b.WriteString("SecRequestBodyLimit " + limit + "\n")
	b.WriteString("SecRequestBodyInMemoryLimit " + limit + "\n")
	b.WriteString("SecRequestBodyLimitAction ProcessPartial\n")
	b.WriteString("SecRequestBodyJsonDepthLimit 1024\n")
	if s.responses {
		b.WriteString("SecResponseBodyAccess On\n")
		b.WriteString("SecResponseBodyMimeType text/plain text/html text/xml application/xml application/json\n")
		b.WriteString("SecResponseBodyLimit " + limit + "\n")
		b.WriteString("SecResponseBodyLimitAction ProcessPartial\n")
	} else {
		b.WriteString("SecResponseBodyAccess Off\n")
	}
	b.WriteString(`SecDefaultAction "phase:1,log,auditlog,pass"` + "\n")
	b.WriteString(`SecDefaultAction "phase:2,log,auditlog,pass"` + "\n")
	b.WriteString(`SecDefaultAction "phase:3,log,auditlog,pass"` + "\n")
	b.WriteString(`SecDefaultAction "phase:4,log,auditlog,pass"` + "\n")
	// Body processors by Content-Type (as in coraza.conf-recommended);
	// urlencoded and multipart are chosen by Coraza itself.
	b.WriteString(`SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"` + "\n")
	b.WriteString(`SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"` + "\n")
	b.WriteString(`SecRule REQUEST_HEADERS:Content-Type "^application/[a-z0-9.-]+[+]json" "id:200006,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"` + "\n")
	// A body that claims a type but does not parse as it is refused: a
	// backend parsing it leniently would see what the WAF did not.
	b.WriteString(`SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',severity:2"` + "\n")
	b.WriteString(`SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:200003,phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation.'"` + "\n")
	// CRS setup (what crs-setup.conf.example's 900xxx SecActions set),
	// in one SecAction: each one that matches costs Coraza a match record
	// on every request. moreSetvars (CRS's defaults, comma first) go in
	// it too; omit are settings no rule that runs reads.
	p, th := strconv.Itoa(s.paranoia), strconv.Itoa(s.threshold)
	b.WriteString(`SecAction "id:900000,phase:1,pass,t:none,nolog`)
	for _, set := range [][2]string{
		{"blocking_paranoia_level", p}, {"detection_paranoia_level", p},
		{"inbound_anomaly_score_threshold", th}, {"outbound_anomaly_score_threshold", th},
		{"allowed_methods", s.allowedMethods}, {"allowed_request_content_type", w.contentTypes},
		{"crs_setup_version", "4250"},
	} {
		if set[1] != "" && !omit[set[0]] {
			b.WriteString(`,setvar:'tx.` + set[0] + `=` + set[1] + `'`)
		}
	}
	b.WriteString(moreSetvars + `"` + "\n")
	return b.String()
}

// crsInclude loads the embedded CRS v4 (coraza-coreruleset).
const crsInclude = "Include @owasp_crs/*.conf\n"

// CheckMethod and CheckContentType validate allowed_methods and
// allowed_content_types entries: they are written into SecLang, so only
// plain tokens are accepted.
func CheckMethod(m string) error {
	if m == "" || strings.Trim(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ-_") != "" {
		return fmt.Errorf("method %q must be upper-case letters (e.g. GET, POST, PROPFIND)", m)
	}
	return nil
}

// CheckContentType: see CheckMethod.
func CheckContentType(ct string) error {
	mt, sub, ok := strings.Cut(ct, "/")
	valid := func(s string) bool {
		return s != "" && strings.Trim(strings.ToLower(s), "abcdefghijklmnopqrstuvwxyz0123456789.+-_*") == ""
	}
	if !ok || !valid(mt) || !valid(sub) {
		return fmt.Errorf("content type %q is not a media type such as application/json (no parameters)", ct)
	}
	return nil
}
