//go:build !unix

package mssante

func cpuTime() int64 { return 0 }
