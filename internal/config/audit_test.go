package config

import (
	"path/filepath"
	"testing"
)

func TestAuditPaths(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Parse(filepath.Join(dir, "etc", "rampart.yaml"), []byte("data_dir: ../data\n"+valid))
	if err != nil {
		t.Fatal(err)
	}
	logPath, key := cfg.AuditPaths()
	if want := filepath.Join(dir, "data", "audit", "audit.log"); logPath != want {
		t.Errorf("default audit log %q, want %q", logPath, want)
	}
	if want := filepath.Join(dir, "data", "audit", "audit.key"); key != want {
		t.Errorf("default signing key %q, want %q", key, want)
	}

	cfg, err = Parse(filepath.Join(dir, "etc", "rampart.yaml"), []byte(valid+
		"logging:\n  audit_log: {path: trail/audit.log, signing_key_file: /secrets/audit.key}\n"))
	if err != nil {
		t.Fatal(err)
	}
	logPath, key = cfg.AuditPaths()
	if want := filepath.Join(dir, "etc", "trail", "audit.log"); logPath != want || key != "/secrets/audit.key" {
		t.Errorf("configured audit paths %q %q, want %q relative to the config file and the absolute key path", logPath, key, want)
	}
}

func TestAuditLogMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"stdout", "logging:\n  audit_log:\n    path: \"-\"\n",
			`f.yaml:11: logging.audit_log.path cannot be "-": the audit trail must be a file (omit it for data_dir/audit/audit.log)`},
		{"same file", "logging:\n  audit_log:\n    path: a.log\n    signing_key_file: a.log\n",
			"f.yaml:12: logging.audit_log.signing_key_file must not be the audit log itself"},
		{"unknown key", "logging:\n  audit_log:\n    sign_key: a.key\n",
			`f.yaml:11: unknown key "sign_key" in logging.audit_log (check the spelling; see DESIGN §3)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(valid+tc.yaml))
			ps, ok := err.(Problems)
			if !ok || len(ps) != 1 || ps[0].String() != tc.want {
				t.Fatalf("Parse: %v\nwant exactly: %s", err, tc.want)
			}
		})
	}
}
