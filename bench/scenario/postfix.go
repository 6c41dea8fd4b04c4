package scenario

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// postfix is a Postfix instance configured in its own directory
// (`postfix -c DIR`): queue and data directories inside it, no chroot,
// relaying everything from 127.0.0.0/8 to the relay host.
type postfix struct {
	dir    string // config_directory
	listen string // "ip:25"
}

// postfixAvailable reports whether the postfix command can be run.
func postfixAvailable() (string, bool) {
	for _, c := range []string{"/usr/sbin/postfix", "postfix"} {
		if p, err := exec.LookPath(c); err == nil {
			return p, true
		}
	}
	return "", false
}

// postfixMaster is master.cf with chroot off (the chroot would need copies
// of system files in the queue directory). smtpd listens on an explicit
// address: inet_interfaces accepts only addresses configured on an
// interface, and 127.30.x.y is only routed to lo.
const postfixMaster = `{{LISTEN}}:25 inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// postfixMain is main.cf, tuned fairly for a relay benchmark: as many
// processes and connections to the relay host as sluice has to the sink
// (20 domains × 20), no inflow throttle, no per-client limit, no DNS.
const postfixMain = `compatibility_level = 3.6
queue_directory = {{DIR}}/queue
data_directory = {{DIR}}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = all
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [{{RELAY}}]:25
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
in_flow_delay = 0
default_process_limit = 500
default_destination_concurrency_limit = 400
smtp_destination_concurrency_limit = 400
initial_destination_concurrency = 50
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtputf8_enable = no
biff = no
`

// startPostfix configures and starts Postfix in dir, listening on
// listenIP:25 and relaying to relayIP:25.
func startPostfix(bin, dir, listenIP, relayIP string) (*postfix, error) {
	// The postfix user must reach the data directory.
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if strings.HasPrefix(filepath.Base(d), "sluice-bench-") {
			os.Chmod(d, 0o755)
		}
	}
	for _, sub := range []string{"queue", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	os.Chown(filepath.Join(dir, "data"), postfixUID(), -1)
	mainCf := strings.NewReplacer("{{DIR}}", dir, "{{LISTEN}}", listenIP, "{{RELAY}}", relayIP).Replace(postfixMain)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCf), 0o644); err != nil {
		return nil, err
	}
	masterCf := strings.ReplaceAll(postfixMaster, "{{LISTEN}}", listenIP)
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte(masterCf), 0o644); err != nil {
		return nil, err
	}
	pf := &postfix{dir: dir, listen: listenIP + ":25"}
	cmd := exec.Command(bin, "-c", dir, "start")
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		pf.stop()
		return nil, fmt.Errorf("postfix start: %v\n%s(postfix prints its errors only to a terminal: try `script -qc \"postfix -c %s start\"`)", err, out, dir)
	}
	return pf, nil
}

// pid returns the master process id, from the queue directory's pid file.
func (pf *postfix) pid() int {
	data, err := os.ReadFile(filepath.Join(pf.dir, "queue", "pid", "master.pid"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

// stop stops the instance (waiting for the master to exit).
func (pf *postfix) stop() {
	bin, _ := postfixAvailable()
	pid := pf.pid()
	cmd := exec.Command(bin, "-c", pf.dir, "stop")
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+pf.dir)
	cmd.Run()
	for i := 0; pid > 0 && i < 100; i++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func postfixUID() int {
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 2 && f[0] == "postfix" {
			n, _ := strconv.Atoi(f[2])
			return n
		}
	}
	return -1
}
