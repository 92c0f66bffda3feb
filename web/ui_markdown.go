package web

import (
	"html"
	"html/template"
	"net/url"
	"strings"
)

// A small, safe Markdown subset for job notes and user bios: paragraphs,
// "-"/"*"/"1." lists, "> " quotes, "#" headings (shown as bold lines),
// ``` code blocks, `code`, **strong**, *emphasis*/_emphasis_, [links](url)
// and bare http(s) URLs. Raw HTML is never passed through: every byte of
// text is escaped, and links keep only http, https, site-relative and
// fragment URLs.

// renderMarkdown renders src; the result is safe to embed in a page.
func renderMarkdown(src string) template.HTML {
	var b strings.Builder
	lines := strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); {
		line := lines[i]
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			i++
		case strings.HasPrefix(trimmed, "```"):
			i = mdCode(&b, lines, i+1)
		case listItem(trimmed) != "":
			i = mdList(&b, lines, i)
		case strings.HasPrefix(trimmed, ">"):
			i = mdQuote(&b, lines, i)
		case strings.HasPrefix(trimmed, "#"):
			b.WriteString("<p><strong>")
			b.WriteString(mdInline(strings.TrimSpace(strings.TrimLeft(trimmed, "#"))))
			b.WriteString("</strong></p>\n")
			i++
		default:
			i = mdParagraph(&b, lines, i)
		}
	}
	return template.HTML(b.String())
}

// mdCode writes a fenced block starting at line i; it returns the line
// after the closing fence (or the end).
func mdCode(b *strings.Builder, lines []string, i int) int {
	b.WriteString("<pre><code>")
	for ; i < len(lines); i++ {
		if strings.HasPrefix(strings.TrimSpace(lines[i]), "```") {
			i++
			break
		}
		b.WriteString(html.EscapeString(lines[i]) + "\n")
	}
	b.WriteString("</code></pre>\n")
	return i
}

// listItem returns the text of a list item line, "" if it is not one.
func listItem(s string) string {
	if len(s) > 2 && (s[0] == '-' || s[0] == '*' || s[0] == '+') && s[1] == ' ' {
		return strings.TrimSpace(s[2:])
	}
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	if digits > 0 && digits < len(s)-2 && (s[digits] == '.' || s[digits] == ')') && s[digits+1] == ' ' {
		return strings.TrimSpace(s[digits+2:])
	}
	return ""
}

func mdList(b *strings.Builder, lines []string, i int) int {
	tag := "ul"
	if first := strings.TrimSpace(lines[i]); first[0] >= '0' && first[0] <= '9' {
		tag = "ol"
	}
	b.WriteString("<" + tag + ">")
	for ; i < len(lines); i++ {
		item := listItem(strings.TrimSpace(lines[i]))
		if item == "" {
			break
		}
		b.WriteString("<li>" + mdInline(item) + "</li>")
	}
	b.WriteString("</" + tag + ">\n")
	return i
}

func mdQuote(b *strings.Builder, lines []string, i int) int {
	var text []string
	for ; i < len(lines); i++ {
		t := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(t, ">") {
			break
		}
		text = append(text, strings.TrimSpace(strings.TrimPrefix(t, ">")))
	}
	b.WriteString("<blockquote>" + mdInline(strings.Join(text, " ")) + "</blockquote>\n")
	return i
}

func mdParagraph(b *strings.Builder, lines []string, i int) int {
	var text []string
	for ; i < len(lines); i++ {
		t := strings.TrimSpace(lines[i])
		if t == "" || strings.HasPrefix(t, "```") || listItem(t) != "" || strings.HasPrefix(t, ">") || strings.HasPrefix(t, "#") {
			break
		}
		text = append(text, t)
	}
	b.WriteString("<p>" + mdInline(strings.Join(text, "\n")) + "</p>\n")
	return i
}

// mdInline renders inline markup; the result is escaped HTML.
func mdInline(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && strings.IndexByte("\\`*_[]()#+-.!>", s[i+1]) >= 0:
			b.WriteString(html.EscapeString(s[i+1 : i+2]))
			i += 2
			continue
		case c == '`':
			if j := strings.IndexByte(s[i+1:], '`'); j >= 0 {
				b.WriteString("<code>" + html.EscapeString(s[i+1:i+1+j]) + "</code>")
				i += j + 2
				continue
			}
		case c == '*' && strings.HasPrefix(s[i:], "**"):
			if j := strings.Index(s[i+2:], "**"); j > 0 {
				b.WriteString("<strong>" + mdInline(s[i+2:i+2+j]) + "</strong>")
				i += j + 4
				continue
			}
		case c == '*' || c == '_' && (i == 0 || !isWordByte(s[i-1])):
			if j := emphasisEnd(s, i); j > 0 {
				b.WriteString("<em>" + mdInline(s[i+1:j]) + "</em>")
				i = j + 1
				continue
			}
		case c == '[':
			if text, href, n := mdLink(s[i:]); n > 0 {
				b.WriteString(`<a href="` + html.EscapeString(href) + `" rel="nofollow noopener noreferrer">` + mdInline(text) + "</a>")
				i += n
				continue
			}
		case c == 'h' && (strings.HasPrefix(s[i:], "http://") || strings.HasPrefix(s[i:], "https://")):
			if m := urlRE.FindStringIndex(s[i:]); m != nil && m[0] == 0 {
				var lb strings.Builder
				writeLinkified(&lb, s[i:i+m[1]])
				// writeLinkified trims trailing punctuation; escape what it left.
				b.WriteString(lb.String())
				i += m[1]
				continue
			}
		case c == '\n':
			b.WriteString("\n")
			i++
			continue
		}
		b.WriteString(html.EscapeString(s[i : i+1]))
		i++
	}
	return b.String()
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// emphasisEnd finds the closing marker of *em* or _em_ opened at i.
func emphasisEnd(s string, i int) int {
	m := s[i]
	if i+1 >= len(s) || s[i+1] == ' ' || s[i+1] == m {
		return -1
	}
	for j := i + 1; j < len(s); j++ {
		if s[j] == m && s[j-1] != ' ' && (m != '_' || j+1 == len(s) || !isWordByte(s[j+1])) {
			return j
		}
	}
	return -1
}

// mdLink parses "[text](url)" at the start of s; n is 0 when it is not a
// link or the URL is not allowed.
func mdLink(s string) (text, href string, n int) {
	mid := strings.Index(s, "](")
	if mid < 1 {
		return "", "", 0
	}
	end := strings.IndexByte(s[mid+2:], ')')
	if end < 0 {
		return "", "", 0
	}
	text, href = s[1:mid], strings.TrimSpace(s[mid+2:mid+2+end])
	if strings.ContainsAny(text, "[]") || !safeURL(href) {
		return "", "", 0
	}
	return text, href, mid + 3 + end
}

// safeURL allows http(s) URLs with a host, site-relative paths and
// fragments; everything else (javascript:, data:, //host) is refused.
func safeURL(href string) bool {
	if href == "" || strings.ContainsAny(href, " \t\n\\") {
		return false
	}
	if strings.HasPrefix(href, "#") || strings.HasPrefix(href, "/") && !strings.HasPrefix(href, "//") {
		return true
	}
	u, err := url.Parse(href)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
