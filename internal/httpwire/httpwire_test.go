package httpwire

import (
	"bufio"
	"errors"
	"net/http"
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
	if err := ParseFields(hdr, "host: a\nX-Dup: 1\nx-dup: 2\nAccept:  */* \n"); err != nil {
		t.Fatal(err)
	}
	want := http.Header{"Host": {"a"}, "X-Dup": {"1", "2"}, "Accept": {"*/*"}}
	if !reflect.DeepEqual(hdr, want) {
		t.Errorf("got %v, want %v", hdr, want)
	}
	if err := ParseFields(hdr, "Good: 1\n bad\n"); !errors.Is(err, ErrObsFold) {
		t.Errorf("obs-fold: %v", err)
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
