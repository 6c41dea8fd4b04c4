package config

import (
	"reflect"
	"testing"
)

func TestAcctHeaderFields(t *testing.T) {
	c := mustLoad(t, "hostname = \"h.test\"\n[[listener]]\naddress = \"127.0.0.1:2525\"\n[acct]\nheader-fields = [\"Subject\", \"X-Campaign\"]\n")
	if want := []string{"Subject", "X-Campaign"}; !reflect.DeepEqual(c.Acct.HeaderFields, want) {
		t.Errorf("HeaderFields = %q, want %q", c.Acct.HeaderFields, want)
	}
	if c := mustLoad(t, "hostname = \"h.test\"\n[[listener]]\naddress = \"127.0.0.1:2525\"\n"); c.Acct.HeaderFields != nil {
		t.Errorf("default HeaderFields = %q, want none", c.Acct.HeaderFields)
	}
}
