// Package text makes the message bodies of benchmarks: prose of common
// English words in varied order, which compresses about as well as real
// mail text does (1.7:1 with snappy; Template, with its HTML markup, about
// 3:1), unlike a repeated line (10:1 or better), which would flatter
// anything that compresses.
package text

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// words are common English words, and a few that mail is full of.
var words = strings.Fields(`the of and to a in is you that it he was for on are as with his they I at be this
have from or one had by word but not what all were we when your can said there use an each which she do how their
if will up other about out many then them these so some her would make like him into time has look two more write go
see number no way could people my than first water been call who oil its now find long down day did get come made may
part over new sound take only little work know place year live me back give most very after thing our just name good
sentence man think say great where help through much before line right too mean old any same tell boy follow came want
show also around form three small set put end does another well large must big even such because turn here why ask went
men read need land different home us move try kind hand picture again change off play spell air away animal house point
page letter mother answer found study still learn should America world offer sale discount free shipping order today
account subscribe newsletter unsubscribe privacy policy customer service collection spring summer winter autumn
weekend members exclusive limited new arrivals best sellers gift card rewards points checkout cart shop browse`)

// Prose returns about n bytes of sentences from rng, in lines of at most
// 76 characters ending in CRLF.
func Prose(rng *rand.Rand, n int) string {
	var b strings.Builder
	b.Grow(n + 80)
	line := 0
	sentence := 0
	for b.Len() < n {
		w := words[rng.IntN(len(words))]
		if sentence == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		}
		sentence++
		end := sentence > 6 && rng.IntN(8) == 0
		if end {
			w += "."
			sentence = 0
		} else if rng.IntN(12) == 0 {
			w += ","
		}
		if line > 0 && line+1+len(w) > 76 {
			b.WriteString("\r\n")
			line = 0
		}
		if line > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	b.WriteString("\r\n")
	return b.String()
}

// Template returns the text and HTML bodies of a campaign template of
// 10 KB together, with the fields {{.name}} and {{.code}}, shaped like
// real campaigns: the HTML part is a table layout with inline styles, an
// image and links around paragraphs of prose, and the text part holds the
// same paragraphs, as a multipart/alternative's plain version does.
func Template() (textBody, htmlBody string) {
	rng := rand.New(rand.NewPCG(11, 12))
	var paras []string
	n := 0
	for n < 3550 {
		p := Prose(rng, 300+rng.IntN(300))
		paras = append(paras, p)
		n += len(p)
	}
	var t, h strings.Builder
	t.WriteString("Hello {{.name}},\r\n\r\n")
	h.WriteString(`<!DOCTYPE html>` + "\r\n" + `<html><head><meta charset="utf-8"><title>Spring collection</title></head>` + "\r\n")
	h.WriteString(`<body style="margin:0;padding:0;background-color:#f4f4f4">` + "\r\n")
	h.WriteString(`<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"><tr><td align="center">` + "\r\n")
	h.WriteString(`<img src="https://img.shop.test/logo.png" width="200" height="50" alt="Shop" style="display:block">` + "\r\n")
	h.WriteString(`<p style="font-family:Arial,Helvetica,sans-serif;font-size:16px;color:#333333">Hello {{.name}},</p>` + "\r\n")
	for i, p := range paras {
		t.WriteString(p + "\r\n")
		h.WriteString(`<p style="font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:20px;color:#333333">` + p + "</p>\r\n")
		if i%2 == 1 {
			link := fmt.Sprintf("https://shop.test/c/spring?utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=spring&amp;utm_content=block%d", i)
			t.WriteString("Shop now: " + strings.ReplaceAll(link, "&amp;", "&") + "\r\n\r\n")
			h.WriteString(`<a href="` + link + `" style="background-color:#e4002b;color:#ffffff;padding:10px 20px;text-decoration:none;font-family:Arial,Helvetica,sans-serif">Shop now</a>` + "\r\n")
		}
	}
	t.WriteString("Your code: {{.code}}\r\n")
	h.WriteString(`<p style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#333333">Your code: <b>{{.code}}</b></p>` + "\r\n")
	h.WriteString(`<p style="font-family:Arial,Helvetica,sans-serif;font-size:11px;color:#999999"><a href="https://shop.test/prefs">Preferences</a> | <a href="https://shop.test/privacy">Privacy</a></p>` + "\r\n")
	h.WriteString("</td></tr></table></body></html>\r\n")
	return t.String(), h.String()
}
