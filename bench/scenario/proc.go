package scenario

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on Linux).
const clockTicks = 100

// cpuTime returns a process's user+sys CPU time, and that of its reaped
// children when withChildren is set (fields 14–17 of /proc/PID/stat).
func cpuTime(pid int, withChildren bool) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields start after its ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); utime is field 14 → f[11].
	if len(f) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	n := 2
	if withChildren {
		n = 4
	}
	var ticks int64
	for k := range n {
		v, err := strconv.ParseInt(f[11+k], 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// memKB returns a field of /proc/PID/status in KiB: "VmRSS", "VmHWM".
func memKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == field {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// treeCPU sums the CPU of pid, its reaped children and its live children
// (one level, which is Postfix's shape: master and its daemons).
func treeCPU(pid int) time.Duration {
	total, _ := cpuTime(pid, true)
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		data, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		child, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		c, _ := cpuTime(child, true)
		total += c
	}
	return total
}

// loadAvg returns /proc/loadavg's first three fields.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// acctCounter counts finished recipients (d and b rows) in a log dir's
// acct-*.csv files, reading only what was appended since the last call.
type acctCounter struct {
	dir     string
	offsets map[string]int64
	partial map[string][]byte
	d, b, t int
}

func newAcctCounter(dir string) *acctCounter {
	return &acctCounter{dir: dir, offsets: map[string]int64{}, partial: map[string][]byte{}}
}

// poll reads new rows and returns the d and b totals.
func (a *acctCounter) poll() (d, b int) {
	files, _ := filepath.Glob(filepath.Join(a.dir, "acct-*.csv"))
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		if _, err := f.Seek(a.offsets[name], io.SeekStart); err == nil {
			data, _ := io.ReadAll(f)
			a.offsets[name] += int64(len(data))
			a.scan(name, data)
		}
		f.Close()
	}
	return a.d, a.b
}

func (a *acctCounter) scan(name string, data []byte) {
	buf := append(a.partial[name], data...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		line := buf[:i]
		buf = buf[i+1:]
		if len(line) >= 2 && line[1] == ',' {
			switch line[0] {
			case 'd':
				a.d++
			case 'b':
				a.b++
			case 't':
				a.t++
			}
		}
	}
	a.partial[name] = append([]byte(nil), buf...)
}

// machineCPU returns the busy and total CPU time of the whole machine from
// /proc/stat (all cores), in clock ticks.
func machineCPU() (busy, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// cpuMeter measures, over an interval, the machine's busy fraction and the
// CPU of this process (the generator and the sink).
type cpuMeter struct {
	busy, total int64
	self        time.Duration
}

func startMeter() cpuMeter {
	b, t := machineCPU()
	s, _ := cpuTime(os.Getpid(), false)
	return cpuMeter{b, t, s}
}

// stop returns the machine's busy share (0–1) and this process's CPU.
func (m cpuMeter) stop() (busy float64, self time.Duration) {
	b, t := machineCPU()
	s, _ := cpuTime(os.Getpid(), false)
	if t > m.total {
		busy = float64(b-m.busy) / float64(t-m.total)
	}
	return busy, s - m.self
}
