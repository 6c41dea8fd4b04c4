package admin

import (
	"context"
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluice-mta/sluice/engine/queue"
	"github.com/sluice-mta/sluice/pools"
)

// Scheduler is what the API asks of the queue scheduler.
type Scheduler interface {
	Queues() []queue.QueueStatus
	Paused() map[string]string
	HeldJobs() map[string]string
	Pause(pattern, reason string) int
	Resume(pattern string) int
	CancelJob(job, category, diag string) int
	CancelQueue(pattern, category, diag string) int
	ReleaseJob(job string) bool
}

// VMTAs reports the virtual MTAs (package pools).
type VMTAs interface {
	Status() []pools.VMTAStatus
}

// API wires the /api/v1/ endpoints of the daemon.
type API struct {
	Scheduler  Scheduler
	VMTAs      VMTAs
	Tracker    *Tracker
	Hostname   string
	Version    string
	SpoolDir   string        // its size is reported as the spool's bytes
	SessionsIn func() int    // open inbound SMTP sessions; nil: unknown
	Redis      func() string // "off", "up" or "degraded"
	// Reload applies the config file again and names what needs a restart
	// to apply; nil: not supported.
	Reload func(ctx context.Context) (needsRestart []string, err error)
}

// DeleteCategory is the bounce category of mail deleted through the API.
const DeleteCategory = "admin"

// Mount registers the endpoints on s.
func (a *API) Mount(s *Server) {
	s.Handle("GET /api/v1/status", http.HandlerFunc(a.status))
	s.Handle("GET /api/v1/queues", http.HandlerFunc(a.queues))
	s.Handle("GET /api/v1/queues/{name...}", http.HandlerFunc(a.queue))
	s.Handle("POST /api/v1/queues/pause", http.HandlerFunc(a.pause))
	s.Handle("POST /api/v1/queues/resume", http.HandlerFunc(a.resume))
	s.Handle("POST /api/v1/delete", http.HandlerFunc(a.delete))
	s.Handle("GET /api/v1/jobs", http.HandlerFunc(a.jobs))
	s.Handle("POST /api/v1/jobs/resume", http.HandlerFunc(a.resumeJob))
	s.Handle("GET /api/v1/vmtas", http.HandlerFunc(a.vmtas))
	s.Handle("POST /api/v1/reload", http.HandlerFunc(a.reload))
}

// Status is the answer of GET /api/v1/status.
type Status struct {
	Hostname    string            `json:"hostname"`
	Version     string            `json:"version"`
	Uptime      string            `json:"uptime"`
	Traffic     Traffic           `json:"traffic"`
	Connections ConnCount         `json:"connections"`
	Spool       SpoolInfo         `json:"spool"`
	Redis       string            `json:"redis"`
	Paused      map[string]string `json:"paused"`
	HeldJobs    map[string]string `json:"held_jobs"`
}

// ConnCount is open SMTP connections: in are sessions of our listeners
// (-1 when unknown), out are delivery connections.
type ConnCount struct {
	In  int `json:"in"`
	Out int `json:"out"`
}

// SpoolInfo is the spool's size on disk and what it holds.
type SpoolInfo struct {
	Bytes      int64 `json:"bytes"`
	Recipients int   `json:"recipients"` // waiting in queues (not those in a transaction in flight)
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	st := Status{Hostname: a.Hostname, Version: a.Version, Redis: "off", Connections: ConnCount{In: -1},
		Paused: a.Scheduler.Paused(), HeldJobs: a.Scheduler.HeldJobs()}
	if a.Tracker != nil {
		st.Traffic = a.Tracker.Traffic()
		st.Uptime = time.Since(st.Traffic.Start).Round(time.Second).String()
	}
	if a.SessionsIn != nil {
		st.Connections.In = a.SessionsIn()
	}
	for _, q := range a.Scheduler.Queues() {
		st.Connections.Out += q.Connections
		st.Spool.Recipients += q.Queued
	}
	if a.SpoolDir != "" {
		st.Spool.Bytes = dirSize(a.SpoolDir)
	}
	if a.Redis != nil {
		st.Redis = a.Redis()
	}
	JSON(w, http.StatusOK, st)
}

// dirSize adds up the sizes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// QueueInfo is one row of GET /api/v1/queues: the scheduler's view and the
// tracker's.
type QueueInfo struct {
	queue.QueueStatus
	QueueStats
}

func (a *API) queueInfos() []QueueInfo {
	qs := a.Scheduler.Queues()
	out := make([]QueueInfo, 0, len(qs))
	for _, q := range qs {
		qi := QueueInfo{QueueStatus: q}
		if a.Tracker != nil {
			qi.QueueStats = a.Tracker.Queue(q.Name)
		}
		out = append(out, qi)
	}
	return out
}

func (a *API) queues(w http.ResponseWriter, r *http.Request) {
	JSON(w, http.StatusOK, map[string]any{"queues": a.queueInfos()})
}

// QueueDetail is the answer of GET /api/v1/queues/{name}.
type QueueDetail struct {
	QueueInfo
	Events []Event `json:"events"`
}

func (a *API) queue(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var d *QueueDetail
	for _, q := range a.queueInfos() {
		if strings.EqualFold(q.Name, name) {
			d = &QueueDetail{QueueInfo: q}
			break
		}
	}
	if d == nil && a.Tracker != nil && slices.Contains(a.Tracker.QueueNames(), name) {
		site, vmta, _ := strings.Cut(name, "/")
		d = &QueueDetail{QueueInfo: QueueInfo{QueueStatus: queue.QueueStatus{Name: name, Site: site, VMTA: vmta, Mode: "normal"}, QueueStats: a.Tracker.Queue(name)}}
	}
	if d == nil {
		Errorf(w, http.StatusNotFound, "no queue %q", name)
		return
	}
	d.Events = []Event{}
	if a.Tracker != nil {
		d.Events = a.Tracker.Events(d.Name)
	}
	JSON(w, http.StatusOK, d)
}

// PatternRequest is the body of queues/pause and queues/resume.
type PatternRequest struct {
	Pattern string `json:"pattern"`
	Reason  string `json:"reason,omitempty"`
}

func (a *API) patternRequest(w http.ResponseWriter, r *http.Request) (PatternRequest, bool) {
	var req PatternRequest
	if err := DecodeJSON(r, &req); err != nil {
		Error(w, http.StatusBadRequest, err.Error())
		return req, false
	}
	if err := queue.ValidPattern(req.Pattern); err != nil || req.Pattern == "" {
		Errorf(w, http.StatusBadRequest, "pattern %q: %v", req.Pattern, queue.ErrBadPattern)
		return req, false
	}
	req.Pattern = queue.NormalizePattern(req.Pattern)
	return req, true
}

func (a *API) pause(w http.ResponseWriter, r *http.Request) {
	req, ok := a.patternRequest(w, r)
	if !ok {
		return
	}
	if req.Reason == "" {
		req.Reason = "paused by the operator"
	}
	n := a.Scheduler.Pause(req.Pattern, req.Reason)
	a.note(req.Pattern, "pause", req.Reason)
	JSON(w, http.StatusOK, map[string]any{"pattern": req.Pattern, "queues": n})
}

func (a *API) resume(w http.ResponseWriter, r *http.Request) {
	req, ok := a.patternRequest(w, r)
	if !ok {
		return
	}
	// Noted before the queues resume: their first deliveries come after it
	// in the queues' event lists.
	for p := range a.Scheduler.Paused() {
		if p == req.Pattern || queue.MatchPattern(req.Pattern, p) {
			a.note(req.Pattern, "resume", "resumed by the operator")
			break
		}
	}
	n := a.Scheduler.Resume(req.Pattern)
	if n == 0 {
		Errorf(w, http.StatusNotFound, "no pause matches %q", req.Pattern)
		return
	}
	JSON(w, http.StatusOK, map[string]any{"pattern": req.Pattern, "resumed": n})
}

// note records an operator action on every known queue pattern matches.
func (a *API) note(pattern, typ, text string) {
	if a.Tracker == nil {
		return
	}
	for _, q := range a.Scheduler.Queues() {
		if queue.MatchPattern(pattern, q.Name) {
			a.Tracker.Note(q.Name, typ, text)
		}
	}
}

// DeleteRequest is the body of POST /api/v1/delete: exactly one of Job
// and Queue.
type DeleteRequest struct {
	Job    string `json:"job,omitempty"`
	Queue  string `json:"queue,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (a *API) delete(w http.ResponseWriter, r *http.Request) {
	var req DeleteRequest
	if err := DecodeJSON(r, &req); err != nil {
		Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if (req.Job == "") == (req.Queue == "") {
		Error(w, http.StatusBadRequest, `give exactly one of "job" and "queue"`)
		return
	}
	diag := req.Reason
	if diag == "" {
		diag = "deleted by the operator"
	}
	var n int
	if req.Job != "" {
		n = a.Scheduler.CancelJob(req.Job, DeleteCategory, diag)
		JSON(w, http.StatusOK, map[string]any{"job": req.Job, "deleted": n})
		return
	}
	if err := queue.ValidPattern(req.Queue); err != nil {
		Errorf(w, http.StatusBadRequest, "queue %q: %v", req.Queue, err)
		return
	}
	p := queue.NormalizePattern(req.Queue)
	a.note(p, "delete", diag)
	n = a.Scheduler.CancelQueue(p, DeleteCategory, diag)
	JSON(w, http.StatusOK, map[string]any{"queue": p, "deleted": n})
}

// JobInfo is one row of GET /api/v1/jobs.
type JobInfo struct {
	JobStats
	Held       bool   `json:"held"`
	HeldReason string `json:"held_reason,omitempty"`
}

func (a *API) jobs(w http.ResponseWriter, r *http.Request) {
	held := a.Scheduler.HeldJobs()
	var out []JobInfo
	seen := map[string]bool{}
	if a.Tracker != nil {
		for _, j := range a.Tracker.Jobs() {
			reason, ok := held[j.Job]
			out = append(out, JobInfo{JobStats: j, Held: ok, HeldReason: reason})
			seen[j.Job] = true
		}
	}
	for job, reason := range held {
		if !seen[job] {
			out = append(out, JobInfo{JobStats: JobStats{Job: job}, Held: true, HeldReason: reason})
		}
	}
	slices.SortFunc(out, func(a, b JobInfo) int { return strings.Compare(a.Job, b.Job) })
	if out == nil {
		out = []JobInfo{}
	}
	JSON(w, http.StatusOK, map[string]any{"jobs": out})
}

// JobRequest is the body of POST /api/v1/jobs/resume.
type JobRequest struct {
	Job string `json:"job"`
}

func (a *API) resumeJob(w http.ResponseWriter, r *http.Request) {
	var req JobRequest
	if err := DecodeJSON(r, &req); err != nil {
		Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Job == "" {
		Error(w, http.StatusBadRequest, `"job" is required`)
		return
	}
	if !a.Scheduler.ReleaseJob(req.Job) {
		Errorf(w, http.StatusNotFound, "job %q is not held", req.Job)
		return
	}
	JSON(w, http.StatusOK, map[string]any{"job": req.Job, "released": true})
}

func (a *API) vmtas(w http.ResponseWriter, r *http.Request) {
	var vs []pools.VMTAStatus
	if a.VMTAs != nil {
		vs = a.VMTAs.Status()
	}
	if vs == nil {
		vs = []pools.VMTAStatus{}
	}
	JSON(w, http.StatusOK, map[string]any{"vmtas": vs})
}

func (a *API) reload(w http.ResponseWriter, r *http.Request) {
	if a.Reload == nil {
		Error(w, http.StatusNotImplemented, "reload is not supported")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	restart, err := a.Reload(ctx)
	if err != nil {
		Error(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	if restart == nil {
		restart = []string{}
	}
	JSON(w, http.StatusOK, map[string]any{"status": "reloaded", "needs_restart": restart})
}
