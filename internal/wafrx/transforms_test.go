package wafrx

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/corazawaf/coraza/v3"
)

// transformSeeds are inputs each model must get right: every trigger
// character, in and around the places decoders and normalisers act on.
var transformSeeds = []string{
	"", " ", "  ", "a", "A b  C", " lead", "trail ", "GET /a/b?c=d&e=f HTTP/1.1",
	"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
	"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
	"https://shop.example.test/products?category=shoes", "/", "//", ".", "..", "./a", "../a", "a/./b",
	"a/../b", "a//b/", "/a/b/", `a\b`, `\\x\..\y`, "a%20b", "a+b", "%", "%zz", "&amp;", "&lt;x&gt;",
	"&para=1", "&#39;", "&#x41;", "&", "a&b", `\x41`, `\u0041`, `a\`, "0x41", "0X41", "/*c*/", "a--b",
	"#x", "<!--x-->", "a;b,c", `c"a't^`, "x (y", "x /y", "x  ,  ;y",
	// base64: whole groups, short last groups, padding, a space or a
	// byte outside the alphabet ending the input.
	"X19fJCRORF9GVU5DJCRfXw==", "ZXZhbCg=", "YWJj", "YWI", "YQ", "Y", "YWJjZA", "YW Jj", "YW=Jj", "YW*Jj", "YW-_Jj", "+/+/", "YWJj\\nZGVm",
}

// TestTransformModels checks every transformation model against Coraza's
// own transformation: for each input the model follows, Coraza must
// produce exactly the model's output. Inputs are the seeds and random
// printable ASCII strings biased towards the characters the
// transformations act on.
func TestTransformModels(t *testing.T) {
	var alphabet []string
	for _, c := range "aZ09 ./\\%+&#;,'\"^()-*<>!x:=?_" {
		alphabet = append(alphabet, string(c))
	}
	inputs := append(slices.Clone(transformSeeds), randomInputs(1, 24, alphabet, func(r *rand.Rand) byte { return byte(0x20 + r.IntN(0x5f)) })...)
	for name, model := range transformModels {
		t.Run(name, func(t *testing.T) { compareWithCoraza(t, name, model, inputs) })
	}
}

// TestBinaryTransformModels checks the models for any bytes against
// Coraza's transformations on random bytes: invalid UTF-8, Unicode
// spaces, and the bytes the transformations act on.
func TestBinaryTransformModels(t *testing.T) {
	pieces := []string{"\xff", "\x80", "\xc2", "\xc2\xa0", "\xe2\x80\xa8", "\xe3\x80\x80", "\x00", "\t", "\n", "\v", "\f", "\r", " ",
		"\x85", "\xc2\x85", "%", "+", "%41", "%u0041", `\`, `\x41`, "/*", "*/", "a", "Z", "0", "é"}
	inputs := randomInputs(3, 16, pieces, func(r *rand.Rand) byte { return byte(r.IntN(256)) })
	for name, model := range binaryModels {
		t.Run(name, func(t *testing.T) { compareWithCoraza(t, name, model, inputs) })
	}
}

// randomInputs returns 3,000 strings (300 under the race detector) of up
// to maxParts parts, each one of pieces or, one time in three, a byte from
// anyByte.
func randomInputs(seed uint64, maxParts int, pieces []string, anyByte func(*rand.Rand) byte) []string {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	n := 3000
	if raceEnabled {
		n = 300
	}
	out := make([]string, 0, n)
	for range n {
		var b strings.Builder
		for range rng.IntN(maxParts) {
			if rng.IntN(3) == 0 {
				b.WriteByte(anyByte(rng))
			} else {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
		}
		out = append(out, b.String())
	}
	return out
}

// compareWithCoraza checks that, for every input model follows, Coraza's
// transformation name gives exactly the model's output, and that the
// model follows at least a tenth of the inputs.
func compareWithCoraza(t *testing.T, name string, model transformModel, inputs []string) {
	waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithDirectives(fmt.Sprintf(
		`SecRuleEngine On
SecRule REQUEST_HEADERS:X-V "@unconditionalMatch" "id:1,phase:1,pass,log,t:none,t:%s,msg:'[%%{MATCHED_VAR}]'"`, name)))
	if err != nil {
		t.Fatal(err)
	}
	followed := 0
	for _, in := range inputs {
		want, ok := model(in)
		if !ok {
			continue
		}
		followed++
		tx := waf.NewTransaction()
		tx.ProcessURI("/", "GET", "HTTP/1.1")
		tx.AddRequestHeader("X-V", in)
		tx.ProcessRequestHeaders()
		mr := tx.MatchedRules()
		if len(mr) != 1 {
			t.Fatalf("%q: %d rules matched", in, len(mr))
		}
		if got := mr[0].Message(); got != "["+want+"]" {
			t.Errorf("%s(%q): Coraza %q, model %q", name, in, got, "["+want+"]")
		}
		tx.Close()
	}
	if followed < len(inputs)/10 {
		t.Errorf("model follows only %d of %d inputs", followed, len(inputs))
	}
}

func TestChainRefusesWhatModelsDoNotCover(t *testing.T) {
	c, ok := newTransformChain([]string{"lowercase"})
	if !ok {
		t.Fatal("lowercase has a model")
	}
	if _, ok := c.apply("caf\u00e9", false, nil); ok {
		t.Error("non-ASCII input followed through lowercase")
	}
	if _, ok := newTransformChain([]string{"base64Decode", "lowercase"}); !ok {
		t.Fatal("base64Decode and lowercase have models")
	}
	c, _ = newTransformChain([]string{"htmlEntityDecode", "lowercase"})
	if _, ok := c.apply("&para;", false, nil); ok {
		t.Error("non-ASCII decoder output followed into the next transformation")
	}
	// Decoded bytes go on only through models exact on any bytes.
	c, _ = newTransformChain([]string{"base64Decode", "lowercase"})
	if _, ok := c.apply("/w==", false, nil); ok { // 0xff
		t.Error("base64-decoded bytes followed into lowercase")
	}
	c, _ = newTransformChain([]string{"base64Decode", "urlDecodeUni", "jsDecode", "removeWhitespace"})
	if out, ok := c.apply("/yAJ", true, nil); !ok || !slices.Equal(out, []string{"/yAJ", "\xff \t", "\xff \t", "\xff \t", "\ufffd"}) {
		t.Errorf("base64 then binary models: %q %v", out, ok)
	}
	if _, ok := c.apply("/ysl", false, nil); ok { // 0xff '+' '%'
		t.Error("decoded bytes with + and %% followed through urlDecodeUni")
	}
	out, ok := (transformChain{}).apply("caf\u00e9", true, nil)
	if !ok || !slices.Equal(out, []string{"caf\u00e9"}) {
		t.Errorf("no transformation: %q %v", out, ok)
	}
}
