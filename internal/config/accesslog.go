package config

import (
	"fmt"
	"regexp"
	"slices"
)

// AccessLogSanitize is logging.access_log.sanitize: what never reaches the
// access log. Authorization, Proxy-Authorization, Cookie and Set-Cookie
// are redacted whatever RedactHeaders says, card numbers are always
// masked and request bodies are never logged; these settings can only add.
type AccessLogSanitize struct {
	// RedactHeaders are headers whose values are logged as [REDACTED]
	// (among logged values: User-Agent, Referer, X-Forwarded-For, Host,
	// X-Request-Id).
	RedactHeaders []string `yaml:"redact_headers"`
	// MaskQueryParams is a regular expression (Go RE2 syntax) matched
	// against query parameter names, also in Referer URLs; the values of
	// those that match are logged as [MASKED]. It adds to
	// DefaultMaskQueryParams, which always applies.
	MaskQueryParams string `yaml:"mask_query_params"`
	// TruncateUserAgent is the longest user_agent logged, in bytes.
	TruncateUserAgent int `yaml:"truncate_user_agent"`
}

// AccessLogRotation is logging.access_log.rotation.
type AccessLogRotation struct {
	MaxSizeMB  int  `yaml:"max_size_mb"` // rotate before the file passes this size
	MaxBackups int  `yaml:"max_backups"` // rotated files kept; 0: no limit
	Compress   bool `yaml:"compress"`    // gzip rotated files
	// MaxAgeDays deletes rotated files older than this many days and
	// rotates the active file daily; 0: no age limit.
	MaxAgeDays int `yaml:"max_age_days"`
}

// Access log defaults (DESIGN §3).
const (
	// DefaultMaskQueryParams is DESIGN §3's password|token|secret|key and
	// the other names credentials travel under in URLs: request
	// signatures (presigned URLs' X-Amz-Signature, X-Amz-Credential),
	// session ids (jsessionid, PHPSESSID, sid), and short names of
	// passwords, JWTs, one-time and OAuth codes.
	DefaultMaskQueryParams   = `(?i)password|token|secret|key|signature|credential|session|sessid|^(pass|passwd|pwd|auth|sig|sid|jwt|otp|code)$`
	DefaultTruncateUserAgent = 256
	MinTruncateUserAgent     = 16
	DefaultMaxSizeMB         = 100
	DefaultMaxBackups        = 10
	maxMaxSizeMB             = 1 << 20 // 1 TiB
	maxMaxAgeDays            = 36500
)

// DefaultRedactHeaders is the default of sanitize.redact_headers.
var DefaultRedactHeaders = []string{"Authorization", "Cookie"}

const (
	alSanitize = "logging.access_log.sanitize"
	alRotation = "logging.access_log.rotation"
)

// accessLogDefaults fills what the file leaves out. A key written with a
// zero value is kept, so that validation can refuse it rather than
// silently replace it.
func (c *Config) accessLogDefaults() {
	a := &c.Logging.AccessLog
	set := func(k string) bool { _, ok := c.lines[k]; return ok }
	if !set(alSanitize + ".redact_headers") {
		a.Sanitize.RedactHeaders = slices.Clone(DefaultRedactHeaders)
	}
	if !set(alSanitize + ".mask_query_params") {
		a.Sanitize.MaskQueryParams = DefaultMaskQueryParams
	}
	if !set(alSanitize + ".truncate_user_agent") {
		a.Sanitize.TruncateUserAgent = DefaultTruncateUserAgent
	}
	if !set(alRotation + ".max_size_mb") {
		a.Rotation.MaxSizeMB = DefaultMaxSizeMB
	}
	if !set(alRotation + ".max_backups") {
		a.Rotation.MaxBackups = DefaultMaxBackups
	}
	if !set(alRotation + ".compress") {
		a.Rotation.Compress = true
	}
}

func (v *validator) accessLog() {
	a := v.cfg.Logging.AccessLog
	_, hasSanitize := v.cfg.lines[alSanitize]
	_, hasRotation := v.cfg.lines[alRotation]
	switch {
	case a.Path == "" && (hasSanitize || hasRotation):
		k := alSanitize
		if !hasSanitize {
			k = alRotation
		}
		v.add(k, "%s is set but the access log is off (no logging.access_log.path)", k)
	case a.Path == "-" && hasRotation:
		v.add(alRotation, "logging.access_log.rotation does not apply to stdout (path \"-\"); remove it or log to a file")
	}

	s := a.Sanitize
	for i, h := range s.RedactHeaders {
		if !isToken(h) {
			v.add(fmt.Sprintf("%s.redact_headers[%d]", alSanitize, i), "sanitize.redact_headers: %q is not a header name", h)
		}
	}
	if s.MaskQueryParams == "" {
		v.add(alSanitize+".mask_query_params", "sanitize.mask_query_params must not be empty (default %q); use \".\" to mask every query parameter", DefaultMaskQueryParams)
	} else if _, err := regexp.Compile(s.MaskQueryParams); err != nil {
		v.add(alSanitize+".mask_query_params", "sanitize.mask_query_params %q is not a valid regular expression: %v", s.MaskQueryParams, err)
	}
	if s.TruncateUserAgent < MinTruncateUserAgent {
		v.add(alSanitize+".truncate_user_agent", "sanitize.truncate_user_agent must be at least %d (bytes), got %d", MinTruncateUserAgent, s.TruncateUserAgent)
	}

	r := a.Rotation
	if r.MaxSizeMB < 1 || r.MaxSizeMB > maxMaxSizeMB {
		v.add(alRotation+".max_size_mb", "rotation.max_size_mb must be between 1 and %d, got %d", maxMaxSizeMB, r.MaxSizeMB)
	}
	if r.MaxBackups < 0 {
		v.add(alRotation+".max_backups", "rotation.max_backups must be 0 (no limit) or more, got %d", r.MaxBackups)
	}
	if r.MaxAgeDays < 0 || r.MaxAgeDays > maxMaxAgeDays {
		v.add(alRotation+".max_age_days", "rotation.max_age_days must be between 0 (no limit) and %d, got %d", maxMaxAgeDays, r.MaxAgeDays)
	}
}

// isToken reports whether s is an HTTP field name (RFC 9110 token).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') {
			continue
		}
		switch c {
		case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
			continue
		}
		return false
	}
	return true
}

// Equal reports whether two access log settings are the same.
func (a AccessLog) Equal(b AccessLog) bool {
	return a.Path == b.Path && slices.Equal(a.Sanitize.RedactHeaders, b.Sanitize.RedactHeaders) &&
		a.Sanitize.MaskQueryParams == b.Sanitize.MaskQueryParams &&
		a.Sanitize.TruncateUserAgent == b.Sanitize.TruncateUserAgent && a.Rotation == b.Rotation
}
