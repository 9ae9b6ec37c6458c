//go:build !race

package mssante

const raceDetector = false
