package campaign

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestReadRows(t *testing.T) {
	in := "\ufeffName, EMAIL ,code\n" +
		"Ann,ann@a.test,A1\n" +
		"Bob,not an address,B2\n" +
		"Cy,cy@a.test\n" +
		"\"Dee, Jr\",dee@a.test,\"multi\nline\"\n" +
		"Eve,eve@a.test,E5\n"
	rows, bad, err := ReadRows(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, strings.Join([]string{strconv.Itoa(r.Line), r.Email, r.Values["Name"], r.Values["code"]}, "|"))
	}
	want := []string{"2|ann@a.test|Ann|A1", "5|dee@a.test|Dee, Jr|multi\nline", "7|eve@a.test|Eve|E5"}
	if strings.Join(got, ";") != strings.Join(want, ";") {
		t.Errorf("rows %q, want %q", got, want)
	}
	if len(bad) != 2 || bad[0].Line != 3 || !strings.Contains(bad[0].Reason, "invalid address") || bad[1].Line != 4 || !strings.Contains(bad[1].Reason, "2 fields") {
		t.Errorf("bad %+v", bad)
	}
	if _, _, err := ReadRows(strings.NewReader("name,mail\nA,a@b.test\n")); err == nil || !strings.Contains(err.Error(), "no email column") {
		t.Errorf("no email column: %v", err)
	}
}

func TestCheckpointResume(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cp")
	c, err := OpenCheckpoint(p, "job1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Record([]int{2, 3, 5}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// A torn last line, as after a crash mid-write.
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("1")
	f.Close()
	c, err = OpenCheckpoint(p, "job1")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Done(2) || !c.Done(5) || c.Done(4) || c.Len() != 4 { // the torn "1" reads as line 1
		t.Errorf("done %v", c.done)
	}
	c.Record([]int{7})
	c.Close()
	data, _ := os.ReadFile(p)
	sc := bufio.NewScanner(bytes.NewReader(data))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if lines[len(lines)-1] != "7" || lines[len(lines)-2] != "1" {
		t.Errorf("file %q", data)
	}
	if _, err := OpenCheckpoint(p, "other"); err == nil {
		t.Error("checkpoint of another job accepted")
	}
}

func TestParseRate(t *testing.T) {
	cases := []struct {
		in   string
		want float64
		ok   bool
	}{{"", 0, true}, {"500/s", 500, true}, {"600/m", 10, true}, {"3600/h", 1, true}, {"20", 20, true},
		{"5/d", 0, false}, {"x/s", 0, false}, {"-1/s", 0, false}}
	for _, c := range cases {
		got, err := ParseRate(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseRate(%q) = %v, %v", c.in, got, err)
		}
	}
}

func TestPacer(t *testing.T) {
	p := newPacer(200) // 5 ms apart
	t0 := time.Now()
	for range 11 {
		if err := p.wait(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(t0); el < 45*time.Millisecond {
		t.Errorf("11 sends at 200/s took %v, want at least 50ms", el)
	}
}

func TestDotStuffing(t *testing.T) {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	writeDotStuffed(w, []byte(".hidden\r\nok\r\n..two\r\nlast"))
	w.Flush()
	if b.String() != "..hidden\r\nok\r\n...two\r\nlast\r\n" {
		t.Errorf("%q", b.String())
	}
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, true, 200)
	p.start = time.Now().Add(-2 * time.Second)
	p.draw(100, 90)
	if s := b.String(); !strings.HasPrefix(s, "\r[###############---------------] 100/200  50%") || !strings.Contains(s, "/s eta 2s") {
		t.Errorf("bar %q", s)
	}
	b.Reset()
	p.tty = false
	p.draw(100, 90)
	if s := b.String(); !strings.HasPrefix(s, "inject: 100/200 rows (50%), 90 accepted, ") || !strings.HasSuffix(s, "eta 2s\n") {
		t.Errorf("line %q", s)
	}
}
