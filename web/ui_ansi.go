package web

import (
	"fmt"
	"html"
	"regexp"
	"strconv"
	"strings"
)

// Build logs carry ANSI escape sequences (colours from compilers, test
// runners, apt). ansiState turns the SGR ("m") sequences into <span>s with
// classes from ansiStylesheet, drops every other escape and control
// character, and HTML-escapes all text. Colours are classes, never inline
// styles, so the pages need no 'unsafe-inline' in their CSP.

type ansiState struct {
	fg, bg                          int // -1 = default, else 0-255
	bold, dim, italic, under, blink bool
	reverse                         bool
}

func newANSIState() ansiState { return ansiState{fg: -1, bg: -1} }

// classes returns the span classes for the state, "" for plain text.
func (s *ansiState) classes() string {
	fg, bg := s.fg, s.bg
	if s.reverse {
		fg, bg = bg, fg
		if fg < 0 {
			fg = 0
		}
		if bg < 0 {
			bg = 7
		}
	}
	if s.bold && fg >= 0 && fg < 8 {
		fg += 8 // bold dark colours render bright, as terminals do
	}
	var c []string
	if fg >= 0 {
		c = append(c, "f"+strconv.Itoa(fg))
	}
	if bg >= 0 {
		c = append(c, "g"+strconv.Itoa(bg))
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{s.bold, "b"}, {s.dim, "d"}, {s.italic, "i"}, {s.under, "u"}} {
		if f.on {
			c = append(c, f.name)
		}
	}
	return strings.Join(c, " ")
}

// renderLine writes one log line (without its newline) as HTML. A
// carriage return starts the line over, as on a terminal, so a progress
// line ("10%\r50%\r100%") shows its last state: the last segment with
// something in it (a trailing "\r" does not blank the line); colour
// changes before it still count.
func (s *ansiState) renderLine(b *strings.Builder, line string) {
	segs := strings.Split(line, "\r")
	last := len(segs) - 1
	for last > 0 && segs[last] == "" {
		last--
	}
	for _, seg := range segs[:last] {
		s.scan(nil, seg)
	}
	s.scan(b, segs[last])
}

// scan parses text, writing HTML to b (nil: only track the state). Runs
// of printable text are written as slices of text, without copying.
func (s *ansiState) scan(b *strings.Builder, text string) {
	start := 0
	flush := func(end int) {
		if b == nil || end <= start {
			return
		}
		cls := s.classes()
		if cls != "" {
			b.WriteString(`<span class="`)
			b.WriteString(cls)
			b.WriteString(`">`)
		}
		writeLinkified(b, text[start:end])
		if cls != "" {
			b.WriteString("</span>")
		}
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == '\t' || c >= 0x20 && c != 0x7f {
			continue
		}
		flush(i) // the run ends at an escape or a dropped control byte
		if c == 0x1b {
			n, params, final := parseEscape(text[i:])
			if final == 'm' {
				s.apply(params)
			}
			i += n - 1
		}
		start = i + 1
	}
	flush(len(text))
}

// parseEscape measures the escape sequence at the start of s (s[0] is
// ESC). It returns its length and, for CSI sequences, the parameters and
// final byte (0 otherwise).
func parseEscape(s string) (n int, params string, final byte) {
	if len(s) < 2 {
		return len(s), "", 0
	}
	switch s[1] {
	case '[': // CSI: parameters, intermediates, one final byte
		j := 2
		for j < len(s) && s[j] >= 0x30 && s[j] <= 0x3f {
			j++
		}
		p := s[2:j]
		for j < len(s) && s[j] >= 0x20 && s[j] <= 0x2f {
			j++
		}
		if j < len(s) && s[j] >= 0x40 && s[j] <= 0x7e {
			return j + 1, p, s[j]
		}
		return j, "", 0
	case ']', 'P', '_', '^': // OSC and other strings: up to BEL or ESC \
		for j := 2; j < len(s); j++ {
			if s[j] == 0x07 {
				return j + 1, "", 0
			}
			if s[j] == 0x1b && j+1 < len(s) && s[j+1] == '\\' {
				return j + 2, "", 0
			}
		}
		return len(s), "", 0
	case '(', ')', '*', '+', '#', '%': // charset selection: one more byte
		if len(s) >= 3 {
			return 3, "", 0
		}
		return len(s), "", 0
	}
	return 2, "", 0
}

// apply interprets SGR parameters such as "1;31" or "38;5;208".
func (s *ansiState) apply(params string) {
	if params == "" {
		*s = newANSIState()
		return
	}
	ps := strings.FieldsFunc(params, func(r rune) bool { return r == ';' || r == ':' })
	num := func(i int) int {
		if i >= len(ps) {
			return -1
		}
		n, err := strconv.Atoi(ps[i])
		if err != nil {
			return -1
		}
		return n
	}
	for i := 0; i < len(ps); i++ {
		switch p := num(i); {
		case p == 0:
			*s = newANSIState()
		case p == 1:
			s.bold = true
		case p == 2:
			s.dim = true
		case p == 3:
			s.italic = true
		case p == 4:
			s.under = true
		case p == 7:
			s.reverse = true
		case p == 22:
			s.bold, s.dim = false, false
		case p == 23:
			s.italic = false
		case p == 24:
			s.under = false
		case p == 27:
			s.reverse = false
		case p >= 30 && p <= 37:
			s.fg = p - 30
		case p == 39:
			s.fg = -1
		case p >= 40 && p <= 47:
			s.bg = p - 40
		case p == 49:
			s.bg = -1
		case p >= 90 && p <= 97:
			s.fg = p - 90 + 8
		case p >= 100 && p <= 107:
			s.bg = p - 100 + 8
		case p == 38 || p == 48:
			c, used := extendedColour(num, i+1)
			i += used
			if c >= 0 {
				if p == 38 {
					s.fg = c
				} else {
					s.bg = c
				}
			}
		}
	}
}

// extendedColour reads "5;n" or "2;r;g;b" at i and returns a 256-colour
// index (true colour is mapped to the nearest cube entry) and how many
// parameters it used.
func extendedColour(num func(int) int, i int) (colour, used int) {
	switch num(i) {
	case 5:
		n := num(i + 1)
		if n < 0 || n > 255 {
			return -1, 2
		}
		return n, 2
	case 2:
		r, g, b := num(i+1), num(i+2), num(i+3)
		if r < 0 || g < 0 || b < 0 || r > 255 || g > 255 || b > 255 {
			return -1, 4
		}
		return 16 + 36*cubeIndex(r) + 6*cubeIndex(g) + cubeIndex(b), 4
	}
	return -1, 1
}

// cubeLevels are the channel values of the 6x6x6 part of the 256 palette.
var cubeLevels = [6]int{0, 95, 135, 175, 215, 255}

func cubeIndex(v int) int {
	best := 0
	for i, l := range cubeLevels {
		if abs(v-l) < abs(v-cubeLevels[best]) {
			best = i
		}
	}
	return best
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// basePalette is the first 16 colours, tuned to read on the dark log
// background.
var basePalette = [16]string{
	"#3b3b3b", "#e06c6c", "#7fc46e", "#d7b95b", "#6ea0e6", "#c27ad6", "#5ec2c2", "#d0d0d0",
	"#7a7a7a", "#ff8f8f", "#a5e39a", "#f5dc84", "#9cc2ff", "#e0a3f0", "#8ee6e6", "#ffffff",
}

// ansiStylesheet generates the CSS classes for all 256 colours.
func ansiStylesheet() []byte {
	var b strings.Builder
	b.WriteString("/* ANSI colours for build logs (generated). */\n")
	for n := 0; n < 256; n++ {
		c := paletteColour(n)
		fmt.Fprintf(&b, ".log .f%d{color:%s}.log .g%d{background-color:%s}\n", n, c, n, c)
	}
	b.WriteString(".log .b{font-weight:bold}.log .d{opacity:.7}.log .i{font-style:italic}.log .u{text-decoration:underline}\n")
	return []byte(b.String())
}

func paletteColour(n int) string {
	switch {
	case n < 16:
		return basePalette[n]
	case n < 232:
		n -= 16
		return fmt.Sprintf("#%02x%02x%02x", cubeLevels[n/36], cubeLevels[n/6%6], cubeLevels[n%6])
	}
	g := 8 + (n-232)*10
	return fmt.Sprintf("#%02x%02x%02x", g, g, g)
}

// urlRE finds links in log text; trailing punctuation is trimmed after.
var urlRE = regexp.MustCompile(`https?://[^\s<>"'\x60]+`)

// writeLinkified escapes text and turns http(s) URLs into links.
func writeLinkified(b *strings.Builder, text string) {
	if !strings.Contains(text, "://") {
		writeEscaped(b, text)
		return
	}
	last := 0
	for _, m := range urlRE.FindAllStringIndex(text, -1) {
		end := m[1]
		for end > m[0] && strings.ContainsRune(".,;:!?)]}'", rune(text[end-1])) {
			end--
		}
		if end-m[0] <= len("https://") {
			continue
		}
		writeEscaped(b, text[last:m[0]])
		u := html.EscapeString(text[m[0]:end])
		b.WriteString(`<a href="` + u + `" rel="nofollow noopener noreferrer">` + u + `</a>`)
		last = end
	}
	writeEscaped(b, text[last:])
}

// writeEscaped writes text HTML-escaped (as html.EscapeString does)
// without building an intermediate string.
func writeEscaped(b *strings.Builder, text string) {
	last := 0
	for i := 0; i < len(text); i++ {
		var esc string
		switch text[i] {
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '&':
			esc = "&amp;"
		case '\'':
			esc = "&#39;"
		case '"':
			esc = "&#34;"
		default:
			continue
		}
		b.WriteString(text[last:i])
		b.WriteString(esc)
		last = i + 1
	}
	b.WriteString(text[last:])
}
