package config

import (
	"slices"
	"strings"
	"testing"
)

func TestAccessLogDefaults(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(valid+"logging: {access_log: {path: access.log}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Logging.AccessLog
	if !slices.Equal(a.Sanitize.RedactHeaders, []string{"Authorization", "Cookie"}) ||
		a.Sanitize.MaskQueryParams != `(?i)password|token|secret|key|signature|credential|session|sessid|^(pass|passwd|pwd|auth|sig|sid|jwt|otp|code)$` || a.Sanitize.TruncateUserAgent != 256 {
		t.Errorf("sanitize defaults %+v", a.Sanitize)
	}
	if a.Rotation != (AccessLogRotation{MaxSizeMB: 100, MaxBackups: 10, Compress: true, MaxAgeDays: 0}) {
		t.Errorf("rotation defaults %+v", a.Rotation)
	}
}

func TestAccessLogSettings(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(valid+doc(`
logging:
  access_log:
    path: access.log
    sanitize:
      redact_headers: [Authorization, Cookie, X-Api-Key, Referer]
      mask_query_params: "(?i)^(sig|session)$"
      truncate_user_agent: 64
    rotation: {max_size_mb: 5, max_backups: 0, compress: false, max_age_days: 30}
`)))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Logging.AccessLog
	if !slices.Equal(a.Sanitize.RedactHeaders, []string{"Authorization", "Cookie", "X-Api-Key", "Referer"}) ||
		a.Sanitize.MaskQueryParams != "(?i)^(sig|session)$" || a.Sanitize.TruncateUserAgent != 64 {
		t.Errorf("sanitize %+v", a.Sanitize)
	}
	// Explicit zero values are kept, not replaced by defaults.
	if a.Rotation != (AccessLogRotation{MaxSizeMB: 5, MaxBackups: 0, Compress: false, MaxAgeDays: 30}) {
		t.Errorf("rotation %+v", a.Rotation)
	}
	b := a
	b.Sanitize.RedactHeaders = slices.Clone(a.Sanitize.RedactHeaders)
	if !a.Equal(b) {
		t.Error("Equal(copy) = false")
	}
	b.Sanitize.RedactHeaders[3] = "User-Agent"
	if a.Equal(b) {
		t.Error("Equal after a redact_headers change = true")
	}
}

func TestAccessLogMistakes(t *testing.T) {
	// valid is 8 lines: "logging:" is line 9, "access_log:" 10, "path:" 11.
	const head = "logging:\n  access_log:\n    path: access.log\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"invalid regexp", head + "    sanitize:\n      mask_query_params: \"(token\"\n",
			[]string{"f.yaml:13: sanitize.mask_query_params \"(token\" is not a valid regular expression: error parsing regexp: missing closing ): `(token`"}},
		{"empty regexp", head + "    sanitize: {mask_query_params: \"\"}\n",
			[]string{`f.yaml:12: sanitize.mask_query_params must not be empty (default "` + DefaultMaskQueryParams + `"); use "." to mask every query parameter`}},
		{"short user agent", head + "    sanitize:\n      truncate_user_agent: 15\n",
			[]string{"f.yaml:13: sanitize.truncate_user_agent must be at least 16 (bytes), got 15"}},
		{"zero user agent", head + "    sanitize:\n      truncate_user_agent: 0\n",
			[]string{"f.yaml:13: sanitize.truncate_user_agent must be at least 16 (bytes), got 0"}},
		{"bad header name", head + "    sanitize:\n      redact_headers:\n        - Authorization\n        - \"X Api Key\"\n",
			[]string{`f.yaml:15: sanitize.redact_headers: "X Api Key" is not a header name`}},
		{"negative sizes", head + "    rotation:\n      max_size_mb: -1\n      max_backups: -2\n      max_age_days: -3\n",
			[]string{"f.yaml:13: rotation.max_size_mb must be between 1 and 1048576, got -1",
				"f.yaml:14: rotation.max_backups must be 0 (no limit) or more, got -2",
				"f.yaml:15: rotation.max_age_days must be between 0 (no limit) and 36500, got -3"}},
		{"zero size", head + "    rotation: {max_size_mb: 0}\n",
			[]string{"f.yaml:12: rotation.max_size_mb must be between 1 and 1048576, got 0"}},
		{"wrong type", head + "    rotation:\n      compress: maybe\n",
			[]string{"f.yaml:13: wrong type: a string `maybe` where true/false is expected"}},
		{"unknown key", head + "    rotation:\n      max_files: 3\n",
			[]string{`f.yaml:13: unknown key "max_files" in logging.access_log.rotation (check the spelling; see DESIGN §3)`}},
		{"unknown sanitize key", head + "    sanitize:\n      mask_headers: [X]\n",
			[]string{`f.yaml:13: unknown key "mask_headers" in logging.access_log.sanitize (check the spelling; see DESIGN §3)`}},
		{"rotation on stdout", "logging:\n  access_log:\n    path: \"-\"\n    rotation: {max_backups: 3}\n",
			[]string{`f.yaml:12: logging.access_log.rotation does not apply to stdout (path "-"); remove it or log to a file`}},
		{"sanitize without a log", "logging:\n  access_log:\n    sanitize: {truncate_user_agent: 64}\n",
			[]string{"f.yaml:11: logging.access_log.sanitize is set but the access log is off (no logging.access_log.path)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(valid+tc.yaml))
			ps, ok := err.(Problems)
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if !ok || !slices.Equal(got, tc.want) {
				t.Fatalf("Parse:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
