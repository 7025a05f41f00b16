package parser

import (
	"strconv"
	"strings"

	"golang.org/x/net/html"
)

// htmlToText renders HTML as plain text the way a text mail client shows it:
// scripts, styles and the head are dropped, blocks and <br> become line
// breaks, paragraphs and headings are separated by a blank line, list items
// get "- " or "N. ", block quotes get "> ", <pre> keeps its white space,
// images show their alt text, and links whose text is not the address are
// followed by " <URL>".
func htmlToText(src string) string {
	z := html.NewTokenizer(strings.NewReader(src))
	var w textWriter
	skip, pre := 0, 0
	var lists []int // -1 for <ul>, else the next number of an <ol>
	var href string
	var linkStart int
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return w.String()
		case html.TextToken:
			if skip > 0 {
				continue
			}
			w.text(string(z.Text()), pre > 0)
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			tag := string(name)
			var attrs map[string]string
			if hasAttr && (tag == "a" || tag == "img" || tag == "ol") {
				attrs = map[string]string{}
				for {
					k, v, more := z.TagAttr()
					attrs[string(k)] = string(v)
					if !more {
						break
					}
				}
			}
			switch tag {
			case "script", "style", "head", "title", "template", "noscript":
				if tt == html.StartTagToken {
					skip++
				}
			case "br":
				w.newline()
			case "p", "h1", "h2", "h3", "h4", "h5", "h6", "table":
				w.breakLines(2)
			case "blockquote":
				w.breakLines(2)
				w.quote++
			case "pre":
				w.breakLines(2)
				pre++
			case "hr":
				w.breakLines(1)
				w.word("-----")
				w.breakLines(1)
			case "ul":
				w.breakLines(1)
				lists = append(lists, -1)
			case "ol":
				w.breakLines(1)
				start := 1
				if n, err := strconv.Atoi(attrs["start"]); err == nil {
					start = n
				}
				lists = append(lists, start)
			case "li":
				w.breakLines(1)
				bullet := "-"
				if n := len(lists); n > 0 && lists[n-1] >= 0 {
					bullet = strconv.Itoa(lists[n-1]) + "."
					lists[n-1]++
				}
				w.word(strings.Repeat("  ", max(len(lists)-1, 0)) + bullet)
				w.space = true
			case "div", "tr", "dl", "dt", "dd", "section", "article", "header", "footer",
				"address", "center", "form", "fieldset", "nav", "aside", "main", "figure", "figcaption", "caption":
				w.breakLines(1)
			case "td", "th":
				w.space = true
			case "img":
				if alt := strings.TrimSpace(attrs["alt"]); alt != "" && skip == 0 {
					w.text(alt, false)
				}
			case "a":
				href = strings.TrimSpace(attrs["href"])
				linkStart = w.b.Len()
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head", "title", "template", "noscript":
				if skip > 0 {
					skip--
				}
			case "p", "h1", "h2", "h3", "h4", "h5", "h6", "table":
				w.breakLines(2)
			case "blockquote":
				if w.quote > 0 {
					w.quote--
				}
				w.breakLines(2)
			case "pre":
				if pre > 0 {
					pre--
				}
				w.breakLines(2)
			case "ul", "ol":
				if len(lists) > 0 {
					lists = lists[:len(lists)-1]
				}
				w.breakLines(1)
			case "div", "tr", "li", "dl", "dt", "dd", "section", "article", "header", "footer",
				"address", "center", "form", "fieldset", "nav", "aside", "main", "figure", "figcaption", "caption":
				w.breakLines(1)
			case "a":
				if href != "" && skip == 0 && (strings.HasPrefix(href, "http://") || strings.HasPrefix(href, "https://")) {
					linkText := ""
					if linkStart <= w.b.Len() {
						linkText = w.b.String()[linkStart:]
					}
					if !strings.Contains(linkText, href) && strings.TrimSpace(linkText) != "" {
						w.space = true
						w.word("<" + href + ">")
					}
				}
				href = ""
			}
		}
	}
}

// textWriter collects rendered text with collapsed white space.
type textWriter struct {
	b         strings.Builder
	pendingNL int
	space     bool
	started   bool
	lineStart bool
	quote     int
}

func (w *textWriter) breakLines(n int) {
	if w.started && w.pendingNL < n {
		w.pendingNL = n
	}
	w.space = false
}

func (w *textWriter) newline() {
	if w.started {
		w.pendingNL++
		if w.pendingNL > 2 {
			w.pendingNL = 2
		}
	}
	w.space = false
}

// word writes s, which holds no line breaks, after any pending break or space.
func (w *textWriter) word(s string) {
	if s == "" {
		return
	}
	if w.started && w.pendingNL > 0 {
		for i := 0; i < w.pendingNL; i++ {
			w.b.WriteByte('\n')
		}
		w.lineStart = true
	} else if w.space && w.started && !w.lineStart {
		w.b.WriteByte(' ')
	}
	if !w.started {
		w.lineStart = true
	}
	if w.lineStart {
		for i := 0; i < w.quote; i++ {
			w.b.WriteString("> ")
		}
	}
	w.b.WriteString(s)
	w.pendingNL, w.space, w.started, w.lineStart = 0, false, true, false
}

func (w *textWriter) text(s string, pre bool) {
	s = strings.ReplaceAll(s, "\u00a0", " ")
	if pre {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		for i, line := range strings.Split(s, "\n") {
			if i > 0 {
				if w.started {
					w.pendingNL++
				}
			}
			if line != "" {
				sp := w.space
				w.space = false
				if sp && !w.lineStart && w.pendingNL == 0 {
					line = " " + line
				}
				w.word(line)
			}
		}
		return
	}
	if s == "" {
		return
	}
	if isSpaceByte(s[0]) {
		w.space = true
	}
	for _, f := range strings.Fields(s) {
		w.word(f)
		w.space = true
	}
	if !isSpaceByte(s[len(s)-1]) {
		w.space = false
	}
}

func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}

func (w *textWriter) String() string {
	return w.b.String()
}
