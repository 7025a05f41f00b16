package inspect

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/letterboxmail/letterbox/message"
)

// previewCSP is the Content-Security-Policy of the HTML preview: no
// script, no frame, no form, no fetch; inline styles and images from the
// message itself (data:, and cid: parts served by the inspector) only.
// The sandbox directive repeats the iframe's sandbox attribute, so the
// preview stays inert even when opened on its own.
const previewCSP = "default-src 'none'; img-src data: cid: 'self'; style-src 'unsafe-inline'; font-src data:; sandbox; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"

// previewCSPImages also lets remote images load, once the reader asks.
const previewCSPImages = "default-src 'none'; img-src data: cid: 'self' https: http:; style-src 'unsafe-inline'; font-src data:; sandbox; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"

// dropped elements go with their content.
var dropped = map[atom.Atom]bool{
	atom.Script: true, atom.Noscript: true, atom.Iframe: true, atom.Frame: true, atom.Frameset: true, atom.Object: true,
	atom.Embed: true, atom.Applet: true, atom.Base: true, atom.Link: true, atom.Meta: true, atom.Form: true,
	atom.Template: true, atom.Svg: true, atom.Math: true,
}

// urlAttrs hold URLs: only http(s), mailto, data:image and cid: stay.
var urlAttrs = map[string]bool{"href": true, "src": true, "background": true, "action": true, "formaction": true, "poster": true, "xlink:href": true}

// sanitize writes a message's HTML for the preview: scripts, frames,
// forms, <base>, <meta> and event handlers removed, javascript: and other
// active URLs dropped, cid: references pointed at the message's parts.
// It is the second wall: the iframe's sandbox and the CSP are the first.
func sanitize(w io.Writer, src string, m *message.Message) error {
	doc, err := html.Parse(strings.NewReader(src))
	if err != nil {
		return err
	}
	cids := map[string]int{}
	for i, a := range m.Attachments {
		if a.ContentID != "" {
			cids[strings.Trim(a.ContentID, "<>")] = i
		}
	}
	var clean func(n *html.Node)
	clean = func(n *html.Node) {
		for c := n.FirstChild; c != nil; {
			next := c.NextSibling
			if c.Type == html.ElementNode && dropped[c.DataAtom] || c.Type == html.ElementNode && c.DataAtom == 0 && strings.Contains(c.Data, ":") {
				n.RemoveChild(c)
				c = next
				continue
			}
			if c.Type == html.CommentNode {
				n.RemoveChild(c)
				c = next
				continue
			}
			if c.Type == html.ElementNode {
				attrs := c.Attr[:0]
				for _, a := range c.Attr {
					k := strings.ToLower(a.Key)
					switch {
					case strings.HasPrefix(k, "on"), k == "srcset", k == "formaction", k == "style" && strings.Contains(strings.ToLower(a.Val), "expression("):
						continue
					case urlAttrs[k]:
						v, ok := safeURL(a.Val, m.ID, cids)
						if !ok {
							continue
						}
						a.Val = v
					}
					attrs = append(attrs, a)
				}
				c.Attr = attrs
				if c.DataAtom == atom.A { // links open outside the preview
					c.Attr = append(c.Attr, html.Attribute{Key: "target", Val: "_blank"}, html.Attribute{Key: "rel", Val: "noopener noreferrer"})
				}
			}
			clean(c)
			c = next
		}
	}
	clean(doc)
	return html.Render(w, doc)
}

func safeURL(v, id string, cids map[string]int) (string, bool) {
	t := strings.TrimSpace(v)
	l := strings.ToLower(t)
	switch {
	case strings.HasPrefix(l, "cid:"):
		if n, ok := cids[strings.Trim(t[4:], "<>")]; ok {
			return fmt.Sprintf("/messages/%s/inline/%d", id, n), true
		}
		return "", false
	case strings.HasPrefix(l, "http://"), strings.HasPrefix(l, "https://"), strings.HasPrefix(l, "mailto:"), strings.HasPrefix(l, "#"):
		return t, true
	case strings.HasPrefix(l, "data:image/") && !strings.HasPrefix(l, "data:image/svg"):
		return t, true
	}
	return "", false
}
