package testenv

import (
	"testing"

	"go.uber.org/goleak"
)

// Every helper stops what it starts: no goroutine may outlive the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
