//go:build race

package mssante

// raceDetector: under the race detector sync.Pool drops items at random, so allocation counts
// that rely on pooled buffers are not checked.
const raceDetector = true
