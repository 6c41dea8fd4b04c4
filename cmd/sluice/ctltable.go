package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-mta/sluice/engine/admin"
	"github.com/sluice-mta/sluice/pools"
)

// printView renders an API answer as an aligned table.
func printView(w io.Writer, what string, raw []byte) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var err error
	switch what {
	case "status":
		var st admin.Status
		if err = json.Unmarshal(raw, &st); err == nil {
			printStatus(tw, &st)
		}
	case "queues", "topdomains":
		var v struct{ Queues []admin.QueueInfo }
		if err = json.Unmarshal(raw, &v); err == nil {
			if what == "queues" {
				printQueues(tw, v.Queues)
			} else {
				printTopDomains(tw, v.Queues)
			}
		}
	case "queue":
		var d admin.QueueDetail
		if err = json.Unmarshal(raw, &d); err == nil {
			printQueues(tw, []admin.QueueInfo{d.QueueInfo})
			fmt.Fprintln(tw)
			fmt.Fprintln(tw, "TIME\tTYPE\tRCPT\tJOB\tSTATUS\tTEXT")
			for _, e := range d.Events {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.Type, dash(e.Rcpt), dash(e.Job), dash(e.Status), dash(clip(e.Text, 100)))
			}
		}
	case "jobs":
		var v struct{ Jobs []admin.JobInfo }
		if err = json.Unmarshal(raw, &v); err == nil {
			fmt.Fprintln(tw, "JOB\tRECEIVED\tDELIVERED\tDEFERRED\tBOUNCED\tCOMPLAINED\tHELD")
			for _, j := range v.Jobs {
				held := "-"
				if j.Held {
					held = "held: " + j.HeldReason
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", j.Job, j.Received, j.Delivered, j.Deferred, j.Bounced, j.Complained, held)
			}
		}
	case "vmtas":
		var v struct{ VMTAs []pools.VMTAStatus }
		if err = json.Unmarshal(raw, &v); err == nil {
			printVMTAs(tw, v.VMTAs)
		}
	}
	if err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Until(t).Round(time.Second)
	if d <= 0 {
		return "now"
	}
	return "in " + d.String()
}

func printStatus(w io.Writer, st *admin.Status) {
	fmt.Fprintf(w, "hostname\t%s\n", st.Hostname)
	fmt.Fprintf(w, "version\t%s\n", st.Version)
	fmt.Fprintf(w, "uptime\t%s\n", st.Uptime)
	fmt.Fprintf(w, "redis\t%s\n", st.Redis)
	in := "?"
	if st.Connections.In >= 0 {
		in = strconv.Itoa(st.Connections.In)
	}
	fmt.Fprintf(w, "connections\tin %s, out %d\n", in, st.Connections.Out)
	fmt.Fprintf(w, "spool\t%s, %d recipient(s) queued\n", bytesText(st.Spool.Bytes), st.Spool.Recipients)
	fmt.Fprintln(w)
	t := st.Traffic
	fmt.Fprintln(w, "traffic\tlast minute\tlast hour\tsince start")
	rows := []struct {
		name    string
		m, h, s int64
	}{
		{"received", t.LastMinute.Received, t.LastHour.Received, t.SinceStart.Received},
		{"delivered", t.LastMinute.Delivered, t.LastHour.Delivered, t.SinceStart.Delivered},
		{"deferred", t.LastMinute.Deferred, t.LastHour.Deferred, t.SinceStart.Deferred},
		{"bounced", t.LastMinute.Bounced, t.LastHour.Bounced, t.SinceStart.Bounced},
		{"complained", t.LastMinute.Complained, t.LastHour.Complained, t.SinceStart.Complained},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\n", r.name, r.m, r.h, r.s)
	}
	if len(st.Paused) > 0 || len(st.HeldJobs) > 0 {
		fmt.Fprintln(w)
	}
	for _, p := range sortedKeys(st.Paused) {
		fmt.Fprintf(w, "paused\t%s\t%s\n", p, st.Paused[p])
	}
	for _, j := range sortedKeys(st.HeldJobs) {
		fmt.Fprintf(w, "held job\t%s\t%s\n", j, st.HeldJobs[j])
	}
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func printQueues(w io.Writer, qs []admin.QueueInfo) {
	fmt.Fprintln(w, "QUEUE\tMODE\tQUEUED\tREADY\tDEFERRED\tPARKED\tCONNS\tDLV/1H\tNEXT\tREASON\tLAST ERROR")
	for _, q := range qs {
		last := "-"
		if q.LastError != nil {
			last = clip(q.LastError.Text, 80)
		}
		next := when(q.NextAttempt)
		if !q.RetryAt.IsZero() {
			next = when(q.RetryAt)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", q.Name, q.Mode, q.Queued, q.Ready, q.Deferred, q.Parked,
			q.Connections, q.DeliveredLastHour, next, dash(clip(q.Reason, 60)), last)
	}
}

// printTopDomains sums the queues of each site and lists the sites by
// queued recipients, largest first.
func printTopDomains(w io.Writer, qs []admin.QueueInfo) {
	type site struct {
		name                 string
		queued, conns, vmtas int
		delivered            int64
		paused, backoff      bool
	}
	by := map[string]*site{}
	for _, q := range qs {
		s := by[q.Site]
		if s == nil {
			s = &site{name: q.Site}
			by[q.Site] = s
		}
		s.queued += q.Queued
		s.conns += q.Connections
		s.delivered += q.DeliveredLastHour
		s.vmtas++
		s.paused = s.paused || q.Mode == "paused"
		s.backoff = s.backoff || q.Mode == "backoff"
	}
	list := make([]*site, 0, len(by))
	for _, s := range by {
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b *site) int {
		if a.queued != b.queued {
			return b.queued - a.queued
		}
		return strings.Compare(a.name, b.name)
	})
	fmt.Fprintln(w, "SITE\tQUEUED\tCONNS\tDLV/1H\tQUEUES\tMODE")
	for _, s := range list {
		mode := "normal"
		switch {
		case s.paused:
			mode = "paused"
		case s.backoff:
			mode = "backoff"
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\n", s.name, s.queued, s.conns, s.delivered, s.vmtas, mode)
	}
}

func printVMTAs(w io.Writer, vs []pools.VMTAStatus) {
	fmt.Fprintln(w, "VMTA\tSOURCE IP\tHOSTNAME\tSTATE\tPOOLS\tWARM-UP\tDISABLED FOR")
	for _, v := range vs {
		warm := "-"
		if v.Warmup != nil {
			sent := strconv.FormatInt(v.Warmup.Sent, 10)
			if v.Warmup.Sent < 0 {
				sent = "per site"
			}
			warm = fmt.Sprintf("day %d: %s/%d", v.Warmup.Day, sent, v.Warmup.Cap)
		}
		var dis []string
		for _, d := range v.Disabled {
			dis = append(dis, d.Site+" until "+d.Until.Local().Format(time.TimeOnly))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, dash(v.SourceIP), v.Hostname, v.State,
			dash(strings.Join(v.Pools, ",")), warm, dash(strings.Join(dis, ", ")))
	}
}
