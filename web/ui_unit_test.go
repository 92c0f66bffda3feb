package web

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"builds/app"
)

func TestParseSearch(t *testing.T) {
	tests := []struct {
		name  string
		query string
		want  []app.SearchTerm
		err   string
	}{
		{"empty", "  ", nil, ""},
		{"free text", "hello world", []app.SearchTerm{{Value: "hello"}, {Value: "world"}}, ""},
		{"quoted", `"hello world"`, []app.SearchTerm{{Value: "hello world"}}, ""},
		{"keys", "status:FAILED image:bsd tags:sr.ht", []app.SearchTerm{
			{Key: "status", Value: "failed"}, {Key: "image", Value: "bsd"}, {Key: "tags", Value: "sr.ht"}}, ""},
		{"negation", "!status:success !wip", []app.SearchTerm{{Key: "status", Value: "success", Negate: true}, {Value: "wip", Negate: true}}, ""},
		{"quoted value", `tags:"a b"`, []app.SearchTerm{{Key: "tags", Value: "a b"}}, ""},
		{"quoted key is text", `"status:x"`, []app.SearchTerm{{Value: "status:x"}}, ""},
		{"quoted bang is text", `"!x"`, []app.SearchTerm{{Value: "!x"}}, ""},
		{"unknown key", "owner:bob", nil, "Invalid search key 'owner'"},
		{"bad status", "status:done", nil, "Invalid status: 'done'"},
		{"empty status", "status:", nil, "Invalid status: ''"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSearch(tt.query)
			if tt.err != "" {
				if app.ErrorMessage(err) != tt.err || app.ErrorCode(err) != app.EINVALID {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("parseSearch(%q) = %+v, %v; want %+v", tt.query, got, err, tt.want)
			}
		})
	}
}

func TestANSI(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain escaped", `a <b> & "c"`, `a &lt;b&gt; &amp; &#34;c&#34;`},
		{"colour", "\x1b[31mred\x1b[0m plain", `<span class="f1">red</span> plain`},
		{"bold bright", "\x1b[1;32mok", `<span class="f10 b">ok</span>`},
		{"256 colour", "\x1b[38;5;208mo", `<span class="f208">o</span>`},
		{"true colour", "\x1b[38;2;255;0;0mr", `<span class="f196">r</span>`},
		{"background", "\x1b[41;97mx\x1b[49my", `<span class="f15 g1">x</span><span class="f15">y</span>`},
		{"other CSI dropped", "\x1b[2K\x1b[1Gdone", "done"},
		{"OSC hyperlink dropped", "\x1b]8;;http://x\x1b\\link\x1b]8;;\x07", "link"},
		{"carriage return", "10%\r50%\r100%", "100%"},
		{"trailing carriage return", "Updating files:  30% (1388/4581)\rUpdating files: 100% (4581/4581)\r", "Updating files: 100% (4581/4581)"},
		{"colour before CR kept", "\x1b[33m10%\r100%", `<span class="f3">100%</span>`},
		{"control chars", "a\x00b\x07c\td", "abc\td"},
		{"escape in text cannot open a tag", "\x1b[31m<script>", `<span class="f1">&lt;script&gt;</span>`},
		{"link", "see https://example.org/a?b=1&c=2.", `see <a href="https://example.org/a?b=1&amp;c=2" rel="nofollow noopener noreferrer">https://example.org/a?b=1&amp;c=2</a>.`},
		{"truncated escape", "x\x1b[", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			st := newANSIState()
			st.renderLine(&b, tt.in)
			if b.String() != tt.want {
				t.Errorf("render %q = %q, want %q", tt.in, b.String(), tt.want)
			}
		})
	}
	// State carries over lines, as in a terminal.
	var b strings.Builder
	st := newANSIState()
	st.renderLine(&b, "\x1b[32mgreen")
	b.Reset()
	st.renderLine(&b, "still")
	if b.String() != `<span class="f2">still</span>` {
		t.Errorf("second line %q", b.String())
	}
	if css := string(ansiStylesheet()); !strings.Contains(css, ".log .f196{color:#ff0000}") || !strings.Contains(css, ".log .g255{") {
		t.Error("stylesheet lacks the 256-colour classes")
	}
}

func TestMarkdown(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"paragraphs", "a\nb\n\nc", "<p>a\nb</p>\n<p>c</p>\n"},
		{"emphasis", "**bold** and *it* and _it_ snake_case_name", "<p><strong>bold</strong> and <em>it</em> and <em>it</em> snake_case_name</p>\n"},
		{"code", "run `make <all>`", "<p>run <code>make &lt;all&gt;</code></p>\n"},
		{"link", "[docs](https://x.org/a)", `<p><a href="https://x.org/a" rel="nofollow noopener noreferrer">docs</a></p>` + "\n"},
		{"relative link", "[#4](/~u/job/4)", `<p><a href="/~u/job/4" rel="nofollow noopener noreferrer">#4</a></p>` + "\n"},
		{"javascript link refused", "[x](javascript:alert(1))", "<p>[x](javascript:alert(1))</p>\n"},
		{"protocol-relative refused", "[x](//evil.org)", "<p>[x](//evil.org)</p>\n"},
		{"data link refused", "[x](data:text/html,hi)", "<p>[x](data:text/html,hi)</p>\n"},
		{"raw html escaped", "<img src=x onerror=alert(1)>", "<p>&lt;img src=x onerror=alert(1)&gt;</p>\n"},
		{"attribute breakout", `[a](https://x.org/"onmouseover="alert(1))`, `<p><a href="https://x.org/&#34;onmouseover=&#34;alert(1" rel="nofollow noopener noreferrer">a</a>)</p>` + "\n"},
		{"bare url", "see https://x.org/p.", `<p>see <a href="https://x.org/p" rel="nofollow noopener noreferrer">https://x.org/p</a>.</p>` + "\n"},
		{"list", "- one\n- **two**", "<ul><li>one</li><li><strong>two</strong></li></ul>\n"},
		{"ordered list", "1. a\n2. b", "<ol><li>a</li><li>b</li></ol>\n"},
		{"fenced code", "```\n<x>\n```", "<pre><code>&lt;x&gt;\n</code></pre>\n"},
		{"heading", "# Title", "<p><strong>Title</strong></p>\n"},
		{"quote", "> said", "<blockquote>said</blockquote>\n"},
		{"escape", `\*not em\*`, "<p>*not em*</p>\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(renderMarkdown(tt.in)); got != tt.want {
				t.Errorf("renderMarkdown(%q) =\n%q\nwant\n%q", tt.in, got, tt.want)
			}
		})
	}
}

func TestLogCursor(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "log")
	os.WriteFile(p, []byte("one\ntwo\nthr"), 0o640)
	c, err := newLogCursor(p, "setup", 0)
	if err != nil {
		t.Fatal(err)
	}
	html, _ := c.next(1<<20, false)
	if strings.Count(html, `class="l"`) != 2 || strings.Contains(html, "thr") || c.offset != 8 {
		t.Fatalf("incomplete read: offset %d %q", c.offset, html)
	}
	if html, _ := c.next(1<<20, false); html != "" {
		t.Fatalf("partial line sent early: %q", html)
	}
	html, _ = c.next(1<<20, true)
	if !strings.Contains(html, `id="setup-3"`) || !strings.Contains(html, ">thr<") {
		t.Fatalf("complete read: %q", html)
	}
	// Resuming mid-file numbers lines from there; a stale offset past the
	// end starts at the end.
	c, _ = newLogCursor(p, "setup", 4)
	if c.line != 1 {
		t.Errorf("line at offset 4 = %d, want 1", c.line)
	}
	if c, _ = newLogCursor(p, "setup", 1000); c.offset != 11 || c.line != 2 {
		t.Errorf("stale offset: at %d line %d", c.offset, c.line)
	}
	// A missing log is empty, not an error.
	c, err = newLogCursor(filepath.Join(dir, "none"), "task-x", 0)
	if html, _ := c.next(100, true); err != nil || html != "" {
		t.Errorf("missing log: %v %q", err, html)
	}
	// Tail: starts on a line boundary, counting skipped lines.
	var b strings.Builder
	for i := 0; i < 100; i++ {
		b.WriteString("0123456789\n")
	}
	os.WriteFile(p, []byte(b.String()), 0o640)
	c, skipped, err := tailLogCursor(p, "setup", 105)
	if err != nil || skipped != 1001 || c.line != 91 {
		t.Errorf("tail: skipped %d, line %d, %v", skipped, c.line, err)
	}
}

func TestResubmitNote(t *testing.T) {
	long := strings.Repeat("x", app.MaxNoteSize)
	tests := []struct{ name, in, want string }{
		{"empty", "", defaultNote},
		{"single line", "nightly", "nightly (resubmitted)"},
		{"already marked", "nightly (resubmitted)", "nightly (resubmitted)"},
		{"multi-line kept", "a\nb", "a\nb"},
		{"shortened to fit", long, long[:app.MaxNoteSize-len(" (resubmitted)")] + " (resubmitted)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resubmitNote(tt.in); got != tt.want || len(got) > app.MaxNoteSize {
				t.Errorf("resubmitNote(%.20q) = %.40q", tt.in, got)
			}
		})
	}
}

func TestBadgeSVG(t *testing.T) {
	svg := badgeSVG(`<my & "site">`, "success")
	if !strings.Contains(svg, "&lt;my &amp; &#34;site&#34;&gt;") || strings.Contains(svg, "<my") || !strings.Contains(svg, "#4c1") {
		t.Errorf("badge: %s", svg)
	}
}

// BenchmarkLogRender measures turning log bytes into HTML lines (ANSI
// colours, escaping, anchors), the work behind every page view and event.
func BenchmarkLogRender(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < 1<<20; i++ {
		sb.WriteString("\x1b[36m[#42]\x1b[0m 2026/01/02 15:04:05 compiling pkg/module")
		sb.WriteString(strings.Repeat("x", i%40))
		sb.WriteString(" <ok> \x1b[1;32mPASS\x1b[0m https://example.org/build/42\n")
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c := &logCursor{anchor: "task-build", ansi: newANSIState()}
		_ = c.render(data)
	}
}
