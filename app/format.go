package app

import (
	"fmt"
	"unicode/utf8"
)

// HumanSize formats a byte count in binary (IEC) units: "512 B",
// "1.5 KiB", "2 GiB" (whole numbers without a decimal).
func HumanSize(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 40, "TiB"}, {1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size {
			if n%u.size == 0 {
				return fmt.Sprintf("%d %s", n/u.size, u.name)
			}
			return fmt.Sprintf("%.1f %s", float64(n)/float64(u.size), u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// TruncateUTF8 cuts s to at most n bytes without splitting a character
// (for logs, messages and forge descriptions).
func TruncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
