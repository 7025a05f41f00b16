package inspect

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/routereport"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/message"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pageCSP is the inspector's own pages' policy: its own script and style
// only, frames only from itself (the preview).
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

type ui struct {
	in    *Inspector
	pages map[string]*template.Template
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"join": func(xs []string) string { return strings.Join(xs, ", ") },
	"size": func(n int64) string {
		switch {
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d B", n)
	},
	"ms":   func(f float64) string { return fmt.Sprintf("%.0f ms", f) },
	"addr": addrString,
	"addrs": func(as []message.Address) string {
		var out []string
		for _, a := range as {
			out = append(out, addrString(&a))
		}
		return strings.Join(out, ", ")
	},
}

func addrString(a *message.Address) string {
	if a == nil {
		return ""
	}
	if a.Name == "" {
		return a.Address
	}
	return fmt.Sprintf("%s <%s>", a.Name, a.Address)
}

func newUI(in *Inspector) (*ui, error) {
	u := &ui{in: in, pages: map[string]*template.Template{}}
	for _, p := range []string{"list", "message", "deliveries", "routes"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("inspector template %s: %w", p, err)
		}
		u.pages[p] = t
	}
	return u, nil
}

func (u *ui) register(mux *http.ServeMux) {
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", u.list)
	mux.HandleFunc("GET /messages/{id}", u.message)
	mux.HandleFunc("GET /messages/{id}/preview", u.preview)
	mux.HandleFunc("GET /messages/{id}/inline/{n}", u.inline)
	mux.HandleFunc("GET /messages/{id}/deliveries", u.deliveries)
	mux.HandleFunc("GET /routes", u.routes)
}

func (u *ui) render(w http.ResponseWriter, r *http.Request, page string, data map[string]any) {
	data["Page"] = page
	data["ReadOnly"] = u.in.cfg.Replayer == nil
	data["RoutesName"] = u.in.cfg.RoutesName
	var b bytes.Buffer
	if err := u.pages[page].Execute(&b, data); err != nil {
		httpError(w, r, u.in.log, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	b.WriteTo(w)
}

func (u *ui) list(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		httpError(w, r, u.in.log, err)
		return
	}
	p, err := u.in.cfg.Index.List(r.Context(), q, u.in.cfg.Now())
	data := map[string]any{"Q": q.Q, "Before": q.Before, "Limit": q.Limit}
	if err != nil {
		data["Error"] = err.Error() // a bad search is shown, not a 400 page
		p = Page{Items: []Item{}}
	}
	data["List"] = p
	u.render(w, r, "list", data)
}

// verdict is one line of the authentication and scanner verdicts.
type verdict struct {
	Check, Result, Text string
	Class               string // good, bad or neutral
}

func class(result string) string {
	switch strings.ToLower(result) {
	case "pass", "clean", "no action", "none-found":
		return "good"
	case "fail", "softfail", "permerror", "infected", "reject", "temperror", "error":
		return "bad"
	}
	return "neutral"
}

// verdicts says what the authentication results and the scanners found,
// for a person.
func verdicts(m *message.Message) []verdict {
	var out []verdict
	if a := m.Auth; a != nil {
		if s := a.SPF; s != nil {
			t := fmt.Sprintf("the sending server is %s to send for %s", map[bool]string{true: "allowed", false: "not shown to be allowed"}[s.Result == "pass"], s.Domain)
			if s.Reason != "" {
				t += " (" + s.Reason + ")"
			}
			out = append(out, verdict{"SPF", s.Result, t, class(s.Result)})
		}
		if len(a.DKIM) == 0 {
			out = append(out, verdict{"DKIM", "none", "the message carries no DKIM signature", "neutral"})
		}
		for _, d := range a.DKIM {
			t := fmt.Sprintf("signature of %s (selector %s)", d.Domain, d.Selector)
			if d.Result == "pass" {
				t = "signed by " + d.Domain + " (selector " + d.Selector + "); the signed parts are unchanged"
			}
			if d.Reason != "" {
				t += ": " + d.Reason
			}
			out = append(out, verdict{"DKIM", d.Result, t, class(d.Result)})
		}
		if d := a.DMARC; d != nil {
			var aligned []string
			if d.SPFAligned {
				aligned = append(aligned, "SPF")
			}
			if d.DKIMAligned {
				aligned = append(aligned, "DKIM")
			}
			t := fmt.Sprintf("the From domain %s publishes policy %q", d.Domain, d.Policy)
			if len(aligned) > 0 {
				t += "; aligned through " + strings.Join(aligned, " and ")
			} else {
				t += "; neither SPF nor DKIM is aligned with it"
			}
			if d.Reason != "" {
				t += " (" + d.Reason + ")"
			}
			out = append(out, verdict{"DMARC", d.Result, t, class(d.Result)})
		}
		if c := a.ARC; c != nil {
			t := fmt.Sprintf("%d forwarding hop(s) sealed the message", c.Instances)
			if c.Reason != "" {
				t += " (" + c.Reason + ")"
			}
			out = append(out, verdict{"ARC", c.Result, t, class(c.Result)})
		}
	}
	if s := m.Spam; s != nil {
		t := fmt.Sprintf("score %.1f of %.1f", s.Score, s.RequiredScore)
		if s.Scanner != "" {
			t += " (" + s.Scanner + ")"
		}
		var syms []string
		for _, y := range s.Symbols {
			syms = append(syms, fmt.Sprintf("%s %+.1f", y.Name, y.Score))
		}
		if len(syms) > 0 {
			t += ": " + strings.Join(syms, ", ")
		}
		res := s.Action
		if s.Error != "" {
			res, t = "error", "the scanner failed: "+s.Error
		}
		out = append(out, verdict{"Spam", res, t, class(res)})
	}
	if v := m.Virus; v != nil {
		t := "no virus found"
		if len(v.Signatures) > 0 {
			t = "found " + strings.Join(v.Signatures, ", ")
		}
		if v.Scanner != "" {
			t += " (" + v.Scanner + ")"
		}
		res := v.Result
		if v.Error != "" {
			res, t = "error", "the scanner failed: "+v.Error
		}
		out = append(out, verdict{"Virus", res, t, class(res)})
	}
	return out
}

func (u *ui) message(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	m, err := u.in.cfg.Source.Message(r.Context(), id)
	if err != nil {
		httpError(w, r, u.in.log, err)
		return
	}
	data := map[string]any{"ID": id, "M": m, "Verdicts": verdicts(m), "Images": r.URL.Query().Get("images") == "1"}
	if it, err := u.in.cfg.Index.Get(r.Context(), id); err == nil {
		data["Item"] = it
	}
	if u.in.cfg.Routes != nil {
		mc := *m
		rep := routereport.Build(r.Context(), u.in.cfg.Routes.Get(r.Context()), &mc)
		data["Report"] = &rep
	}
	u.render(w, r, "message", data)
}

func (u *ui) preview(w http.ResponseWriter, r *http.Request) {
	m, err := u.in.cfg.Source.Message(r.Context(), r.PathValue("id"))
	if err != nil {
		httpError(w, r, u.in.log, err)
		return
	}
	csp := previewCSP
	if r.URL.Query().Get("images") == "1" {
		csp = previewCSPImages
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	src := m.HTML
	if src == "" {
		src = "<pre>" + template.HTMLEscapeString(m.Text) + "</pre>"
	}
	var b bytes.Buffer
	if err := sanitize(&b, src, m); err != nil {
		httpError(w, r, u.in.log, err)
		return
	}
	b.WriteTo(w)
}

// inline serves an image part the HTML refers to by cid:, for the preview.
func (u *ui) inline(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	started := false
	err = u.in.cfg.Source.Attachment(r.Context(), r.PathValue("id"), n, func(a message.Attachment) io.Writer {
		started = true
		ct := strings.ToLower(a.ContentType)
		if !strings.HasPrefix(ct, "image/") || strings.HasPrefix(ct, "image/svg") {
			ct = "application/octet-stream"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; sandbox")
		return w
	})
	if err != nil && !started {
		httpError(w, r, u.in.log, err)
	}
}

func (u *ui) deliveries(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	recs, err := u.in.cfg.Source.Deliveries(r.Context(), id)
	if err != nil {
		httpError(w, r, u.in.log, err)
		return
	}
	data := map[string]any{"ID": id, "Records": recs, "CanDryRun": u.in.cfg.Replayer != nil || u.in.cfg.Routes != nil}
	if it, err := u.in.cfg.Index.Get(r.Context(), id); err == nil {
		data["Item"] = it
	}
	u.render(w, r, "deliveries", data)
}

// routeView is a route of the loaded file, for the routes page.
type routeView struct {
	Name, Match, Reject string
	CatchAll, Stop      bool
	Actions             []routereport.Action
}

func (u *ui) routes(w http.ResponseWriter, r *http.Request) {
	data := map[string]any{}
	if u.in.cfg.Routes != nil {
		cfg := u.in.cfg.Routes.Get(r.Context())
		var views []routeView
		for _, rt := range cfg.Routes {
			v := routeView{Name: rt.Name, CatchAll: rt.CatchAll, Stop: rt.Stop}
			if rt.Match != nil {
				v.Match = describeMatch(rt.Match)
			}
			if rt.Reject != nil {
				v.Reject = fmt.Sprintf("%d %s %s", rt.Reject.Code, rt.Reject.Enhanced, rt.Reject.Message)
			}
			for i, a := range rt.Actions {
				v.Actions = append(v.Actions, routereport.Describe(i, a, routing.Matched{Route: rt}))
			}
			views = append(views, v)
		}
		data["Domains"], data["Routes"] = cfg.Domains, views
	}
	u.render(w, r, "routes", data)
}

// describeMatch lists a match's set conditions as "field: value", with
// the routes file's field names.
func describeMatch(m *routing.Match) string {
	var out []string
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" || !f.IsExported() || v.Field(i).IsZero() {
			continue
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Pointer {
			fv = fv.Elem()
		}
		out = append(out, fmt.Sprintf("%s: %v", tag, fv.Interface()))
	}
	return strings.Join(out, "\n")
}
