package tlsterm

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"slices"
	"strconv"
)

// TLS client fingerprints (DESIGN §1: "JA3/JA4"), computed from the
// ClientHello a handshake answered. They name the client's TLS stack, not
// the client: every curl of one version has the same JA4, and a bot that
// claims to be a browser in its User-Agent usually does not have the
// browser's. The access log carries them so detectors and operators can
// group and block by them.
//
// GREASE values (RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa), which clients put
// at random places to keep servers tolerant, are removed everywhere, as
// both specifications require; otherwise a Chrome would have a new
// fingerprint on every connection.

// JA3 returns the JA3 fingerprint of hello: the MD5 of JA3Text, in hex
// (Salesforce's specification).
func JA3(hello *tls.ClientHelloInfo) string {
	sum := md5.Sum(appendJA3(make([]byte, 0, 256), hello))
	return hex.EncodeToString(sum[:])
}

// JA3Text returns the string JA3 hashes:
// SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats,
// each a "-"-separated list of decimal values in the client's order.
//
// The version is the ClientHello's legacy_version, which Go's
// ClientHelloInfo does not expose: a client offering supported_versions
// (every TLS 1.3 client) must send 0x0303 there (RFC 8446 §4.1.2), and for
// the others Go derives SupportedVersions from it, its maximum being it.
func JA3Text(hello *tls.ClientHelloInfo) string {
	return string(appendJA3(make([]byte, 0, 256), hello))
}

const (
	extServerName        = 0x0000
	extALPN              = 0x0010
	extSupportedVersions = 0x002b
)

func appendJA3(b []byte, hello *tls.ClientHelloInfo) []byte {
	b = strconv.AppendUint(b, uint64(legacyVersion(hello)), 10)
	b = append(b, ',')
	b = appendDecimals(b, hello.CipherSuites)
	b = append(b, ',')
	b = appendDecimals(b, hello.Extensions)
	b = append(b, ',')
	first := true
	for _, c := range hello.SupportedCurves {
		if isGREASE(uint16(c)) {
			continue
		}
		if !first {
			b = append(b, '-')
		}
		first = false
		b = strconv.AppendUint(b, uint64(c), 10)
	}
	b = append(b, ',')
	for i, p := range hello.SupportedPoints {
		if i > 0 {
			b = append(b, '-')
		}
		b = strconv.AppendUint(b, uint64(p), 10)
	}
	return b
}

// appendDecimals appends vs without GREASE values, "-"-separated.
func appendDecimals(b []byte, vs []uint16) []byte {
	first := true
	for _, v := range vs {
		if isGREASE(v) {
			continue
		}
		if !first {
			b = append(b, '-')
		}
		first = false
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return b
}

func legacyVersion(hello *tls.ClientHelloInfo) uint16 {
	if slices.Contains(hello.Extensions, extSupportedVersions) {
		return tls.VersionTLS12
	}
	return maxVersion(hello.SupportedVersions)
}

// maxVersion is the highest version offered, GREASE aside; 0 for none.
func maxVersion(vs []uint16) uint16 {
	var m uint16
	for _, v := range vs {
		if !isGREASE(v) && v > m {
			m = v
		}
	}
	return m
}

// isGREASE reports whether v is one of RFC 8701's reserved values.
func isGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}

// JA4 returns the JA4 fingerprint of hello (FoxIO's specification, TLS
// over TCP), e.g. "t13d1516h2_8daaf6152771_e5627efa2ab1": protocol and
// version, SNI present (d) or not (i), counts of ciphers and extensions,
// the first ALPN value's first and last characters; then truncated
// SHA-256 hashes of the sorted ciphers and of the sorted extensions (SNI
// and ALPN left out) followed by the signature algorithms in the client's
// order. Sorting makes it immune to the extension order permutation that
// Chrome applies per connection, which changes its JA3 every time.
func JA4(hello *tls.ClientHelloInfo) string {
	b := make([]byte, 0, 36)
	b = append(b, 't')
	b = append(b, ja4Version(maxVersion(hello.SupportedVersions))...)
	if slices.Contains(hello.Extensions, extServerName) {
		b = append(b, 'd')
	} else {
		b = append(b, 'i')
	}
	ciphers := withoutGREASE(hello.CipherSuites, false)
	exts := withoutGREASE(hello.Extensions, false)
	b = appendCount(b, len(ciphers))
	b = appendCount(b, len(exts))
	b = appendALPN(b, hello)
	b = append(b, '_')

	slices.Sort(ciphers)
	b = appendHash(b, appendHexList(nil, ciphers), len(ciphers) == 0)
	b = append(b, '_')

	sorted := withoutGREASE(hello.Extensions, true)
	slices.Sort(sorted)
	in := appendHexList(make([]byte, 0, 256), sorted)
	sigs := make([]uint16, 0, len(hello.SignatureSchemes))
	for _, s := range hello.SignatureSchemes {
		if !isGREASE(uint16(s)) {
			sigs = append(sigs, uint16(s))
		}
	}
	if len(sigs) > 0 {
		in = append(in, '_')
		in = appendHexList(in, sigs)
	}
	b = appendHash(b, in, len(sorted) == 0)
	return string(b)
}

func ja4Version(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "13"
	case tls.VersionTLS12:
		return "12"
	case tls.VersionTLS11:
		return "11"
	case tls.VersionTLS10:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	}
	return "00"
}

// withoutGREASE copies vs without GREASE values (and, with dropNameALPN,
// without the SNI and ALPN extensions, which JA4's first part covers).
func withoutGREASE(vs []uint16, dropNameALPN bool) []uint16 {
	out := make([]uint16, 0, len(vs))
	for _, v := range vs {
		if isGREASE(v) || (dropNameALPN && (v == extServerName || v == extALPN)) {
			continue
		}
		out = append(out, v)
	}
	return out
}

// appendCount appends n as two digits, 99 at most.
func appendCount(b []byte, n int) []byte {
	n = min(n, 99)
	return append(b, byte('0'+n/10), byte('0'+n%10))
}

// appendALPN appends the first and last characters of the first ALPN
// value ("h2", "h1" for http/1.1), or of its hex form when either is not
// alphanumeric; "00" without one.
func appendALPN(b []byte, hello *tls.ClientHelloInfo) []byte {
	if !slices.Contains(hello.Extensions, extALPN) || len(hello.SupportedProtos) == 0 || hello.SupportedProtos[0] == "" {
		return append(b, "00"...)
	}
	p := hello.SupportedProtos[0]
	first, last := p[0], p[len(p)-1]
	if isAlnum(first) && isAlnum(last) {
		return append(b, first, last)
	}
	const digits = "0123456789abcdef"
	return append(b, digits[first>>4], digits[last&0xf])
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// appendHexList appends vs as 4-digit lower-case hex, comma-separated.
func appendHexList(b []byte, vs []uint16) []byte {
	const digits = "0123456789abcdef"
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, digits[v>>12], digits[v>>8&0xf], digits[v>>4&0xf], digits[v&0xf])
	}
	return b
}

// appendHash appends the first 12 hex digits of in's SHA-256, or twelve
// zeros when the list it stands for is empty (the spec's marker for "no
// values", rather than the hash of nothing).
func appendHash(b, in []byte, empty bool) []byte {
	if empty {
		return append(b, "000000000000"...)
	}
	sum := sha256.Sum256(in)
	return hex.AppendEncode(b, sum[:6])
}
