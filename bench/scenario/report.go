package scenario

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes r for people.
func (r *Result) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "scenario %s, bodies %s, load average before: %s\n\n", r.Scenario, r.Size, r.LoadAvg)
	if len(r.Phases) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "run\tmsgs\trcpts\tinject msg/s\te2e msg/s\tp50 ms\tp95 ms\tp99 ms\tCPU s/1k msgs\tpeak RSS MB\tbench CPU s/1k\tmachine busy\t")
		for _, p := range r.Phases {
			lat := func(v float64) string {
				if p.Name == "ceiling" {
					return "-"
				}
				return fmt.Sprintf("%.1f", v)
			}
			cpu, rss := "-", "-"
			if p.CPUPer1k > 0 {
				cpu = fmt.Sprintf("%.3f", p.CPUPer1k)
			}
			if p.PeakRSSMB > 0 {
				rss = fmt.Sprintf("%.0f", p.PeakRSSMB)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%.3f\t%.0f%%\t\n", p.Name, p.Messages, p.Recipients,
				p.InjectRate, p.E2ERate, lat(p.P50), lat(p.P95), lat(p.P99), cpu, rss, p.BenchCPU1k, p.Busy*100)
		}
		tw.Flush()
	}
	if len(r.Ratios) > 0 {
		keys := make([]string, 0, len(r.Ratios))
		for k := range r.Ratios {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s = %.2f", k, r.Ratios[k]))
		}
		fmt.Fprintf(w, "\nratios: %s\n", strings.Join(parts, ", "))
	}
	if b := r.Backlog; b != nil {
		fmt.Fprintf(w, "\nbacklog: %d recipients in %d messages, injected in %.1f s\n", b.Recipients, b.Messages, b.InjectSeconds)
		fmt.Fprintf(w, "  RSS before %.0f MB, queued %.0f MB: %.0f bytes per queued recipient (peak RSS %.0f MB)\n",
			b.RSSBaseMB, b.RSSQueuedMB, b.BytesPerRcpt, b.PeakRSSMB)
		fmt.Fprintf(w, "  restart: graceful stop took %.1f s; listener ready after %.2f s, first delivery after %.2f s\n",
			b.StopSeconds, b.RestartReadyS, b.RestartResumeS)
		fmt.Fprintf(w, "  drain: %.1f s, %.0f recipients/s\n", b.DrainSeconds, b.DrainRcptRate)
	}
	for _, p := range r.Phases {
		if p.Sink != "" {
			fmt.Fprintf(w, "%s %s\n", p.Name, p.Sink)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// WriteSummary writes the figures the targets of issue 3 are about, one
// line per target, from the results of several scenarios.
func WriteSummary(w io.Writer, results []*Result) {
	phase := func(scn, name string) *Phase {
		for _, r := range results {
			if r.Scenario != scn {
				continue
			}
			for i := range r.Phases {
				if r.Phases[i].Name == name {
					return &r.Phases[i]
				}
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tgoal\tmeasured\t")
	ratio := func(label, goal string, a, b *Phase) {
		if a == nil || b == nil || b.E2ERate == 0 {
			fmt.Fprintf(tw, "%s\t%s\tn/a\t\n", label, goal)
			return
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f (%.0f / %.0f msg/s)\t\n", label, goal, a.E2ERate/b.E2ERate, a.E2ERate, b.E2ERate)
	}
	ratio("clean: sluice / ceiling", "≥ 0.5", phase("clean", "sluice"), phase("clean", "ceiling"))
	ratio("large: sluice / ceiling", "≥ 0.5", phase("large", "sluice"), phase("large", "ceiling"))
	ratio("peer: sluice / postfix", "≥ 5", phase("peer", "sluice"), phase("peer", "postfix"))
	ratio("dkim: sluice+dkim / signing ceiling", "≥ 0.8", phase("dkim", "sluice+dkim"), phase("dkim", "sign ceiling"))
	if h := phase("latency", "sluice@half"); h != nil {
		fmt.Fprintf(tw, "p99 at half the max rate\t≤ 50 ms\t%.1f ms at %.0f msg/s\t\n", h.P99, h.InjectRate)
	} else {
		fmt.Fprintf(tw, "p99 at half the max rate\t≤ 50 ms\tn/a\t\n")
	}
	var b *Backlog
	for _, r := range results {
		if r.Backlog != nil {
			b = r.Backlog
		}
	}
	if b != nil {
		fmt.Fprintf(tw, "backlog: RSS per queued recipient\t≤ 1 KB at 1M\t%.0f bytes at %d\t\n", b.BytesPerRcpt, b.Recipients)
		fmt.Fprintf(tw, "backlog: delivery resumes after restart\t≤ 10 s at 1M\t%.2f s at %d\t\n", b.RestartResumeS, b.Recipients)
	}
	tw.Flush()
}
