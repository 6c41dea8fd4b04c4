package campaign

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// checkpointMagic starts a checkpoint file; the job follows it, so that a
// checkpoint of another campaign is not taken by mistake.
const checkpointMagic = "# sluice inject checkpoint v1 job="

// Checkpoint is an append-only file of the CSV lines already accepted.
// Record writes and fsyncs before it returns, so a line recorded is never
// sent again by a later run.
type Checkpoint struct {
	f    *os.File
	done map[int]bool
}

// OpenCheckpoint opens (creating) the checkpoint at path for job and loads
// the lines it holds. A torn last line (a crash mid-write) is ignored.
func OpenCheckpoint(path, job string) (*Checkpoint, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{f: f, done: map[int]bool{}}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	head := checkpointMagic + job + "\n"
	if len(data) == 0 {
		if _, err := f.WriteString(head); err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("checkpoint %s: %w", path, err)
		}
		return c, nil
	}
	if !strings.HasPrefix(string(data), head) {
		f.Close()
		first, _, _ := strings.Cut(string(data), "\n")
		return nil, fmt.Errorf("checkpoint %s: belongs to another run (%q), not job %q", path, first, job)
	}
	sc := bufio.NewScanner(strings.NewReader(string(data[len(head):])))
	for sc.Scan() {
		if n, err := strconv.Atoi(sc.Text()); err == nil {
			c.done[n] = true
		}
	}
	if !strings.HasSuffix(string(data), "\n") { // torn write: start a fresh line
		if _, err := f.WriteString("\n"); err != nil {
			f.Close()
			return nil, err
		}
	}
	return c, nil
}

// Done reports whether line was accepted by an earlier run.
func (c *Checkpoint) Done(line int) bool { return c.done[line] }

// Len is the number of lines recorded.
func (c *Checkpoint) Len() int { return len(c.done) }

// Record appends lines and fsyncs the file.
func (c *Checkpoint) Record(lines []int) error {
	if len(lines) == 0 {
		return nil
	}
	var b []byte
	for _, l := range lines {
		b = strconv.AppendInt(b, int64(l), 10)
		b = append(b, '\n')
		c.done[l] = true
	}
	if _, err := c.f.Write(b); err != nil {
		return err
	}
	return c.f.Sync()
}

// Close closes the file.
func (c *Checkpoint) Close() error {
	if c == nil {
		return nil
	}
	return errors.Join(c.f.Sync(), c.f.Close())
}
