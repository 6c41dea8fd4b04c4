//go:build !race

package e2e

const testRace = false
