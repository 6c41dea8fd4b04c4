package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"

	"github.com/sluice-mta/sluice/engine/config"
)

// FromConfig returns what to check for a loaded configuration: every
// [[virtual-mta]] (or the built-in one, [delivery] source-ip and hostname,
// when there is none), every [[dkim-key]], [dkim] default-domain and
// [doctor] domains.
func FromConfig(c *config.Config) Input {
	var in Input
	for _, v := range c.VirtualMTAs {
		ip, helo := v.Source()
		in.VMTAs = append(in.VMTAs, VMTA{Name: v.Name, IP: ip, Helo: helo})
	}
	if len(in.VMTAs) == 0 {
		v := VMTA{Name: "default", Helo: c.Hostname}
		if ip, err := parseAddr(c.Delivery.SourceIP); err == nil {
			v.IP = ip
		}
		in.VMTAs = append(in.VMTAs, v)
	}
	for _, k := range c.DKIMKeys {
		in.Keys = append(in.Keys, Key{Domain: k.Domain, Selector: k.Selector, Signer: k.Signer()})
	}
	in.DefaultDomain = c.DKIM.DefaultDomain
	in.Domains = append(in.Domains, c.Doctor.Domains...)
	return in
}

// WriteTable writes rs as an aligned table, one check per line, with the
// fix for each line that did not pass, and a summary line.
func WriteTable(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tCHECK\tSUBJECT\tDETAIL\tFIX")
	counts := map[Status]int{}
	for _, r := range rs {
		counts[r.Status]++
		fix := r.Fix
		if fix == "" {
			fix = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", strings.ToUpper(string(r.Status)), r.Check, r.Subject, r.Detail, fix)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d pass, %d warn, %d fail\n", counts[Pass], counts[Warn], counts[Fail])
	return err
}

// WriteJSON writes {"results": [...], "status": worst} indented.
func WriteJSON(w io.Writer, rs []Result) error {
	if rs == nil {
		rs = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Status  Status   `json:"status"`
		Results []Result `json:"results"`
	}{Worst(rs), rs})
}

func parseAddr(s string) (netip.Addr, error) { return netip.ParseAddr(s) }
