package main

import (
	"os"
	"testing"

	"github.com/sluice-mta/sluice/engine/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestRunUsage(t *testing.T) {
	cases := map[string]struct {
		args []string
		code int
	}{
		"no scenario":   {nil, 2},
		"flag first":    {[]string{"--json"}, 2},
		"bad flag":      {[]string{"clean", "--nope"}, 2},
		"not yet":       {[]string{"throttled"}, 0},
		"bad scenario":  {[]string{"nope"}, 1},
		"bad sink rule": {[]string{"sink", "--reply", "x"}, 2},
	}
	for name, c := range cases {
		if got := run(c.args); got != c.code {
			t.Errorf("%s: run(%q) = %d, want %d", name, c.args, got, c.code)
		}
	}
}
