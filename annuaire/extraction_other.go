//go:build !linux

package annuaire

func adviseHugePages([]byte) {}
