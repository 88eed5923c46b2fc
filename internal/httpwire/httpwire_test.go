package httpwire

import (
	"bufio"
	"errors"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

func TestSplitField(t *testing.T) {
	cases := []struct {
		line, name, value string
		err               error
	}{
		{"Host: a.example", "Host", "a.example", nil},
		{"X-A:\t v \t", "X-A", "v", nil},
		{"X-Empty:", "X-Empty", "", nil},
		{"content-type: a", "Content-Type", "a", nil},
		{"x-rAmPaRt-iD: 1", "X-Rampart-Id", "1", nil},
		{" folded", "", "", ErrObsFold},
		{"\tfolded", "", "", ErrObsFold},
		{"no colon", "", "", ErrFieldLine},
		{": no name", "", "", ErrFieldLine},
		{"", "", "", ErrFieldLine},
		{"Space : before", "", "", ErrFieldName},
		{"X-A: a\x00b", "", "", ErrFieldValue},
		{"X-A: a\x7fb", "", "", ErrFieldValue},
	}
	for _, c := range cases {
		name, value, err := SplitField(c.line)
		if name != c.name || value != c.value || !errors.Is(err, c.err) {
			t.Errorf("SplitField(%q) = %q, %q, %v; want %q, %q, %v", c.line, name, value, err, c.name, c.value, c.err)
		}
	}
}

func TestParseFields(t *testing.T) {
	hdr := http.Header{"Stale": {"x"}}
	var vals []string
	var memo HeadMemo
	if _, err := ParseFields(hdr, "host: a\nX-Dup: 1\nx-dup: 2\nAccept:  */* \n", &vals, &memo, nil); err != nil {
		t.Fatal(err)
	}
	want := http.Header{"Host": {"a"}, "X-Dup": {"1", "2"}, "Accept": {"*/*"}}
	if !reflect.DeepEqual(hdr, want) {
		t.Errorf("got %v, want %v", hdr, want)
	}
	// A handler appending to a value must not write into its neighbour's
	// slot of the shared backing array.
	hdr["Host"] = append(hdr["Host"], "b")
	if !reflect.DeepEqual(hdr["X-Dup"], []string{"1", "2"}) || !reflect.DeepEqual(hdr["Accept"], []string{"*/*"}) {
		t.Errorf("append to one value changed another: %v", hdr)
	}
	if _, err := ParseFields(hdr, "Good: 1\n bad\n", &vals, &memo, nil); !errors.Is(err, ErrObsFold) {
		t.Errorf("obs-fold: %v", err)
	}
	// Reusing vals and memo: a block that repeats the previous one
	// allocates nothing.
	block := "Host: a\nUser-Agent: b\nAccept: */*\n"
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ParseFields(hdr, block, &vals, &memo, nil); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ParseFields with a reused vals: %v allocations, want 0", n)
	}
	if !reflect.DeepEqual(hdr, http.Header{"Host": {"a"}, "User-Agent": {"b"}, "Accept": {"*/*"}}) {
		t.Errorf("reused vals: got %v", hdr)
	}
}

// ParseFields reports the framing fields a block has, under any spelling
// of their names, and none for a block without them.
func TestParseFieldsSeen(t *testing.T) {
	var vals []string
	var memo HeadMemo
	hdr := http.Header{}
	for _, c := range []struct {
		block string
		want  Fields
	}{
		{"Host: a\nUser-Agent: b\nAccept: */*\n", 0},
		{"", 0},
		{"connection: close\n", FieldConnection},
		{"UPGRADE: websocket\nConnection: upgrade\n", FieldUpgrade | FieldConnection},
		{"Transfer-Encoding: chunked\ncontent-length: 3\n", FieldTransferEncoding | FieldContentLength},
		{"Expect: 100-continue\nTrailer: X\n", FieldExpect},
		{"Content-Lengthy: 1\nX-Connection: 1\n", 0},
	} {
		got, err := ParseFields(hdr, c.block, &vals, &memo, nil)
		if err != nil || got != c.want {
			t.Errorf("ParseFields(%q) = %b, %v; want %b", c.block, got, err, c.want)
		}
	}
}

// With a hosts slice, Host values go there, every one of them, and not
// into the map.
func TestParseFieldsHosts(t *testing.T) {
	var vals, hosts []string
	var memo HeadMemo
	hdr := http.Header{}
	if _, err := ParseFields(hdr, "host: a\nAccept: x\nHost: b\n", &vals, &memo, &hosts); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(hosts, []string{"a", "b"}) || !reflect.DeepEqual(hdr, http.Header{"Accept": {"x"}}) {
		t.Fatalf("hosts %q, header %v", hosts, hdr)
	}
	if _, err := ParseFields(hdr, "Accept: y\n", &vals, &memo, &hosts); err != nil || len(hosts) != 0 {
		t.Fatalf("hosts %q after a head without Host (err %v)", hosts, err)
	}
}

func TestReadLine(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("abc\r\nde\n"+strings.Repeat("x", 20)+"\r\nA\rB\r\n"), 16)
	var buf []byte
	for _, want := range []int{3, 2} {
		if n, err := ReadLine(br, &buf, 10); n != want || err != nil {
			t.Fatalf("ReadLine = %d, %v; want %d", n, err, want)
		}
	}
	if string(buf) != "abc\nde\n" {
		t.Errorf("buffer %q", buf)
	}
	if _, err := ReadLine(br, &buf, 10); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("long line: %v", err)
	}
	buf = buf[:0]
	if _, err := ReadLine(bufio.NewReader(strings.NewReader("A\rB\r\n")), &buf, 10); !errors.Is(err, ErrBareCR) {
		t.Errorf("bare CR: %v", err)
	}
}

// canonicalCases are names in and out of canonical form, tokens or not.
var canonicalCases = []string{
	"Host", "host", "HOST", "Content-Length", "content-length", "CONTENT-LENGTH",
	"X-Forwarded-For", "x-forwarded-for", "X-FORWARDED-for", "Content-type", "content-Type",
	"User-Agent", "user-agent", "X-Request-Id", "X-Request-ID", "Www-Authenticate", "WWW-Authenticate",
	"-", "--", "-a", "a-", "a--b", "A--B", "a_b", "A_B", "a.b", "X-1a", "X-1A", "1a", "~x", "!x",
	"Te", "TE", "te", "Dnt", "DNT", "Sec-Ch-Ua", "sec-ch-ua", "a", "A", "",
	"has space", "Has Space", "tab\tin", "colon:in", "ünicode", "Caf\xe9", "x\x00y", "x\x7fy",
}

func TestCanonicalKey(t *testing.T) {
	for _, name := range canonicalCases {
		if got, want := CanonicalKey(name), textproto.CanonicalMIMEHeaderKey(name); got != want {
			t.Errorf("CanonicalKey(%q) = %q, textproto says %q", name, got, want)
		}
		if strings.Contains(name, ":") {
			continue // the field's name would end there
		}
		key, _, err := SplitField(name + ": v")
		if ValidToken(name) {
			if want := textproto.CanonicalMIMEHeaderKey(name); err != nil || key != want {
				t.Errorf("SplitField(%q) key = %q, %v; want %q", name+": v", key, err, want)
			}
		} else if err == nil {
			t.Errorf("SplitField(%q) accepted a name that is no token", name+": v")
		}
	}
}

// Every name on the fast path's list is a canonical token.
func TestCommonNames(t *testing.T) {
	for _, name := range []string{"Host", "User-Agent", "X-Request-Id", "Content-Security-Policy", "Etag", "X-Real-Ip"} {
		if !commonName(name) {
			t.Errorf("%q is not on the list", name)
		}
	}
	for c := range 256 {
		for _, name := range []string{"Host", "Etag"} {
			// One byte changed: never on the list unless it is the name.
			b := []byte(name)
			b[1] = byte(c)
			if commonName(string(b)) && string(b) != name {
				t.Errorf("%q taken for a common name", b)
			}
		}
	}
}

func TestCanonicalKeyAllocs(t *testing.T) {
	for _, name := range []string{"Content-Type", "X-Forwarded-For", "Host", "Te"} {
		if n := testing.AllocsPerRun(100, func() { CanonicalKey(name) }); n != 0 {
			t.Errorf("CanonicalKey(%q): %v allocations, want 0", name, n)
		}
	}
}

// FuzzCanonicalKey: the fast path never disagrees with textproto.
func FuzzCanonicalKey(f *testing.F) {
	for _, name := range canonicalCases {
		f.Add(name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := CanonicalKey(name), textproto.CanonicalMIMEHeaderKey(name); got != want {
			t.Errorf("CanonicalKey(%q) = %q, textproto says %q", name, got, want)
		}
	})
}

// WriteField writes the same bytes whether the line fits in the buffer or
// has to go out in pieces.
func TestWriteField(t *testing.T) {
	for _, size := range []int{16, 4096} {
		var out strings.Builder
		bw := bufio.NewWriterSize(&out, size)
		WriteField(bw, "Content-Type", "text/plain")
		WriteField(bw, "X-Long", strings.Repeat("v", 40))
		WriteField(bw, "E", "")
		bw.Flush()
		want := "Content-Type: text/plain\r\nX-Long: " + strings.Repeat("v", 40) + "\r\nE: \r\n"
		if out.String() != want {
			t.Errorf("buffer %d: wrote %q, want %q", size, out.String(), want)
		}
	}
}

// HeadMemo's strings are copies: a block parsed from a View of a buffer
// stays as it was when the buffer is overwritten with the next head, and
// only fields that changed are copied again.
func TestHeadMemoOutlivesTheBuffer(t *testing.T) {
	var memo HeadMemo
	var vals []string
	buf := []byte("GET /a HTTP/1.1\nHost: one\nX-Long-Name: first\n")
	line := memo.Line(View(buf[:15]))
	hdr := http.Header{}
	if _, err := ParseFields(hdr, View(buf[16:]), &vals, &memo, nil); err != nil {
		t.Fatal(err)
	}
	host := hdr["Host"][0]
	copy(buf, "PUT /b HTTP/1.1\nHost: two\nX-Long-Name: other\n")
	if line != "GET /a HTTP/1.1" || host != "one" || hdr["X-Long-Name"][0] != "first" {
		t.Fatalf("strings changed with the buffer: %q %q %v", line, host, hdr)
	}
	hdr2 := http.Header{}
	if _, err := ParseFields(hdr2, View(buf[16:]), &vals, &memo, nil); err != nil {
		t.Fatal(err)
	}
	if memo.Line(View(buf[:15])) != "PUT /b HTTP/1.1" || hdr2["Host"][0] != "two" || hdr2["X-Long-Name"][0] != "other" {
		t.Fatalf("second head read as %v", hdr2)
	}
	if n := testing.AllocsPerRun(50, func() { memo.Field(0, "Host", View(buf[22:25])) }); n != 0 {
		t.Errorf("a repeated field: %v allocations, want 0", n)
	}
}

// ValidValue's word-at-a-time check agrees with the byte-by-byte rule for
// every byte at every position of values of every length up to 40.
func TestValidValueWords(t *testing.T) {
	for n := 0; n <= 40; n++ {
		for pos := 0; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				b := []byte(strings.Repeat("a", n))
				b[pos] = byte(c)
				s := string(b)
				if got, want := ValidValue(s), validBytes(s); got != want {
					t.Fatalf("ValidValue(%q) = %v, want %v", s, got, want)
				}
			}
		}
	}
	// Two bad bytes, and obs-text beside a control character.
	for _, s := range []string{"\x80\x7f", "\xff\x00aaaaaaa", "aaaaaaa\t\x1f", "\t\t\t\t\t\t\t\t\t", "\x80\x80\x80\x80\x80\x80\x80\x80\r"} {
		if got, want := ValidValue(s), validBytes(s); got != want {
			t.Fatalf("ValidValue(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzValidValue(f *testing.F) {
	f.Add("text/plain; charset=utf-8")
	f.Add("a\tb\x7fc")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidValue(s), validBytes(s); got != want {
			t.Fatalf("ValidValue(%q) = %v, want %v", s, got, want)
		}
	})
}

// HasCRLF finds a CR or LF at any position of values of every length up
// to 40, and nothing in values without one.
func TestHasCRLFWords(t *testing.T) {
	slow := func(s string) bool { return strings.ContainsAny(s, "\r\n") }
	for n := 0; n <= 40; n++ {
		for pos := 0; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				b := []byte(strings.Repeat("a", n))
				b[pos] = byte(c)
				if s := string(b); HasCRLF(s) != slow(s) {
					t.Fatalf("HasCRLF(%q) = %v", s, HasCRLF(s))
				}
			}
		}
	}
}
