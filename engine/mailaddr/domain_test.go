package mailaddr

import "testing"

func TestCheckDomain(t *testing.T) {
	for d, ok := range map[string]bool{
		"example.test": true, "a-b.example": true, "bücher.test": true, "[192.0.2.1]": true, "[IPv6:2001:db8::1]": true,
		"": false, "a..b": false, "-a.test": false, "a-.test": false, "a_b.test": false, "[300.1.1.1]": false,
		"a.test.": false, string(make([]byte, 254)): false,
	} {
		if err := CheckDomain(d); (err == nil) != ok {
			t.Errorf("CheckDomain(%q) = %v, want ok=%v", d, err, ok)
		}
	}
}
