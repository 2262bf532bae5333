// Package testgen generates test inputs shared by every backend's tests:
// rapid generators for random Rulesets and packets at the IR level
// (ir*.go), a builder for hand-written IR scenarios (irbuild.go), and —
// from the compiler work — policy-level generators.
package testgen
