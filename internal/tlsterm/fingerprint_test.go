package tlsterm

import (
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hexList parses "1301,1302,..." into values.
func hexList(t *testing.T, s string) []uint16 {
	t.Helper()
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(f, 16, 16)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, uint16(v))
	}
	return out
}

// specHello is the ClientHello of the JA4 specification's worked example
// (FoxIO, technical_details/JA4.md): its raw lists, in the client's order.
func specHello(t *testing.T) *tls.ClientHelloInfo {
	var sigs []tls.SignatureScheme
	for _, v := range hexList(t, "0403,0804,0401,0503,0805,0501,0806,0601") {
		sigs = append(sigs, tls.SignatureScheme(v))
	}
	return &tls.ClientHelloInfo{
		CipherSuites:      hexList(t, "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035"),
		Extensions:        hexList(t, "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015"),
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
		SupportedProtos:   []string{"h2", "http/1.1"},
		SignatureSchemes:  sigs,
		ServerName:        "example.com",
	}
}

func TestJA4SpecExample(t *testing.T) {
	if got, want := JA4(specHello(t)), "t13d1516h2_8daaf6152771_e5627efa2ab1"; got != want {
		t.Fatalf("JA4 = %s, want the specification's %s", got, want)
	}
}

// A ClientHello from a browser, with its JA3 string, JA3 and JA4 as a
// public fingerprinting service reported them (JA3's version field is the
// legacy 771 although the client speaks TLS 1.3).
func TestJA3AndJA4BrowserHello(t *testing.T) {
	dec := func(s string) []uint16 {
		var out []uint16
		for _, f := range strings.Split(s, "-") {
			v, err := strconv.ParseUint(f, 10, 16)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, uint16(v))
		}
		return out
	}
	var curves []tls.CurveID
	for _, v := range dec("4588-29-23-24") {
		curves = append(curves, tls.CurveID(v))
	}
	var sigs []tls.SignatureScheme
	for _, v := range hexList(t, "0403,0804,0401,0503,0805,0501,0806,0601") {
		sigs = append(sigs, tls.SignatureScheme(v))
	}
	h := &tls.ClientHelloInfo{
		CipherSuites:      dec("4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53"),
		Extensions:        dec("45-51-16-65037-23-17613-0-11-10-43-65281-35-18-5-13-27"),
		SupportedCurves:   curves,
		SupportedPoints:   []uint8{0},
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
		SupportedProtos:   []string{"h2", "http/1.1"},
		SignatureSchemes:  sigs,
	}
	wantText := "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53," +
		"45-51-16-65037-23-17613-0-11-10-43-65281-35-18-5-13-27,4588-29-23-24,0"
	if got := JA3Text(h); got != wantText {
		t.Fatalf("JA3Text =\n%s\nwant\n%s", got, wantText)
	}
	if got := JA3(h); got != "98487aa16281980e7d1120d399efb6a4" {
		t.Errorf("JA3 = %s", got)
	}
	if got := JA4(h); got != "t13d1516h2_8daaf6152771_d8a2da3f94cd" {
		t.Errorf("JA4 = %s", got)
	}
}

// GREASE values anywhere (ciphers, extensions, groups, versions,
// signature algorithms) change neither fingerprint.
func TestFingerprintsIgnoreGREASE(t *testing.T) {
	plain := specHello(t)
	plain.SupportedCurves = []tls.CurveID{tls.X25519, tls.CurveP256}
	plain.SupportedPoints = []uint8{0}
	g := *plain
	g.CipherSuites = append([]uint16{0x1a1a}, plain.CipherSuites...)
	g.Extensions = append([]uint16{0x2a2a}, plain.Extensions...)
	g.Extensions = append(g.Extensions, 0xfafa)
	g.SupportedCurves = append([]tls.CurveID{0x3a3a}, plain.SupportedCurves...)
	g.SupportedVersions = append([]uint16{0x4a4a}, plain.SupportedVersions...)
	g.SignatureSchemes = append([]tls.SignatureScheme{0x5a5a}, plain.SignatureSchemes...)
	if a, b := JA4(plain), JA4(&g); a != b {
		t.Errorf("JA4 with GREASE %s, without %s", b, a)
	}
	if a, b := JA3Text(plain), JA3Text(&g); a != b {
		t.Errorf("JA3 with GREASE %s, without %s", b, a)
	}
	// Values that merely look alike are not GREASE.
	for _, v := range []uint16{0x0a0b, 0x1a2a, 0x0a00, 0xaaaa} {
		if isGREASE(v) != (v == 0xaaaa) {
			t.Errorf("isGREASE(%#04x) = %v", v, isGREASE(v))
		}
	}
}

func TestJA4Edges(t *testing.T) {
	h := specHello(t)
	h.Extensions = []uint16{0x000d} // no SNI, no ALPN extension
	h.SupportedProtos = nil
	h.SupportedVersions = []uint16{tls.VersionTLS12, tls.VersionTLS11}
	got := JA4(h)
	if !strings.HasPrefix(got, "t12i150100_") {
		t.Errorf("JA4 = %s, want t12i150100_ (TLS 1.2, IP, 15 ciphers, 1 extension, no ALPN)", got)
	}
	h.CipherSuites = nil
	h.Extensions = []uint16{0x0000, 0x0010}
	h.SupportedProtos = []string{"\xab\xcd"}
	h.SignatureSchemes = nil
	if got := JA4(h); got != "t12d0002ad_000000000000_000000000000" {
		t.Errorf("JA4 = %s, want t12d0002ad_000000000000_000000000000", got)
	}
	h.SupportedProtos = []string{"0\xab\xcd1"}
	if got := JA4(h)[8:10]; got != "01" {
		t.Errorf("ALPN part %q, want 01 (hex form's first and last digits)", got)
	}
}

// captureHello runs a handshake of a Go client configured by cc against a
// server that records the ClientHello and refuses it.
func captureHello(t *testing.T, cc *tls.Config) *tls.ClientHelloInfo {
	t.Helper()
	cs, ss := net.Pipe()
	defer cs.Close()
	defer ss.Close()
	cs.SetDeadline(time.Now().Add(5 * time.Second))
	ss.SetDeadline(time.Now().Add(5 * time.Second))
	got := make(chan *tls.ClientHelloInfo, 1)
	stop := errors.New("captured")
	srv := tls.Server(ss, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		got <- h
		return nil, stop
	}})
	go tls.Client(cs, cc).Handshake()
	if err := srv.Handshake(); !errors.Is(err, stop) {
		t.Fatalf("server handshake: %v", err)
	}
	return <-got
}

var ja4Format = regexp.MustCompile(`^t1[0-3][di][0-9]{4}(h2|h1|00)_[0-9a-f]{12}_[0-9a-f]{12}$`)

// Go's own client: the fingerprints have the right shape, are the same on
// every connection, and tell apart clients configured differently.
func TestFingerprintsOfGoClient(t *testing.T) {
	cfg := func() *tls.Config {
		return &tls.Config{ServerName: "api.example.com", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true}
	}
	h1 := captureHello(t, cfg())
	h2 := captureHello(t, cfg())
	ja4, ja3 := JA4(h1), JA3(h1)
	if !ja4Format.MatchString(ja4) {
		t.Fatalf("JA4 %q has not the JA4 format", ja4)
	}
	if !strings.HasPrefix(ja4, "t13d") || ja4[8:10] != "h2" {
		t.Errorf("JA4 %q: want TLS 1.3, SNI present, ALPN h2", ja4)
	}
	if len(ja3) != 32 {
		t.Errorf("JA3 %q is not an MD5 in hex", ja3)
	}
	if text := JA3Text(h1); !strings.HasPrefix(text, "771,") || hex.EncodeToString(md5sum(text)) != ja3 {
		t.Errorf("JA3 text %q (hash %s)", text, ja3)
	}
	if JA4(h2) != ja4 || JA3(h2) != ja3 {
		t.Errorf("second connection: JA4 %s JA3 %s, first %s %s", JA4(h2), JA3(h2), ja4, ja3)
	}
	old := cfg()
	old.MaxVersion = tls.VersionTLS12
	old.NextProtos = []string{"http/1.1"}
	old.ServerName = ""
	h3 := captureHello(t, old)
	if got := JA4(h3); !strings.HasPrefix(got, "t12i") || got[8:10] != "h1" || got == ja4 {
		t.Errorf("TLS 1.2 client without SNI: JA4 %s", got)
	}
}

func md5sum(s string) []byte {
	sum := md5.Sum([]byte(s))
	return sum[:]
}
