// Package monitor serves the web monitor on the admin listener: one page
// and its script and style, embedded in the binary (no CDN), which log in
// with the admin token and then read the admin JSON API with a cookie,
// redrawing charts and tables every few seconds. The page is public; the
// data is not: every /api/ route checks the token, from the Authorization
// header or the cookie.
package monitor

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"

	"github.com/sluice-mta/sluice/engine/metrics"
)

//go:embed static
var static embed.FS

// Mux is the part of the admin server the monitor mounts on (package
// admin's Server).
type Mux interface {
	Handle(pattern string, h http.Handler, extraTokens ...string)
	HandlePublic(pattern string, h http.Handler)
}

// Options configure the monitor.
type Options struct {
	Rates      *metrics.Rates // the per-second history the charts draw
	CookieName string         // the cookie the admin server reads the token from
}

// Mount registers the monitor's routes:
//
//	GET  /                       the page (public)
//	GET  /ui/app.js, /ui/app.css  its assets (public)
//	POST /ui/login               with "Authorization: Bearer TOKEN": sets the cookie
//	POST /ui/logout              clears the cookie (public)
//	GET  /api/v1/monitor/rates   the per-second series (token or cookie)
func Mount(mux Mux, o Options) {
	sub, _ := fs.Sub(static, "static") // a constant path: cannot fail
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	mux.HandlePublic("GET /{$}", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, sub, "index.html")
	})))
	mux.HandlePublic("GET /ui/", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})))
	// The admin server has checked the bearer token before this runs: the
	// cookie gets the token the request proved it knows.
	mux.Handle("POST /ui/login", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			http.Error(w, "log in with the Authorization header", http.StatusBadRequest)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: o.CookieName, Value: strings.TrimSpace(tok), Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandlePublic("POST /ui/logout", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: o.CookieName, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.Handle("GET /api/v1/monitor/rates", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(o.Rates.Snapshot())
	}))
}

// secure adds the headers that keep the page to its own origin: scripts,
// styles and requests from this server only, no framing.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}
