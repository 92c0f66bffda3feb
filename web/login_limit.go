package web

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Failed web logins are limited in memory: after loginMaxFailures
// failures for one username, or from one remote address, within
// loginWindow, further attempts for that username or from that address
// are refused with 429 until the oldest of those failures is loginWindow
// old. Both keys count, so neither guessing many passwords for one
// account from many addresses nor trying many accounts from one address
// gets far. Blocked attempts are not counted (a locked-out user who keeps
// trying is not locked out for longer), and the password is not checked
// while blocked. Successful logins do not count.
//
// The remote address is the TCP peer: behind a reverse proxy every client
// shares the proxy's address, and the per-username limit does the work.
const (
	loginMaxFailures = 5
	loginWindow      = 5 * time.Minute
	// loginMaxKeys caps the tracked usernames and addresses, so a flood of
	// made-up names cannot grow memory without bound.
	loginMaxKeys = 10000
	// loginMaxKeyLen bounds one key; usernames are far shorter.
	loginMaxKeyLen = 256
)

// loginLimiter counts recent failed logins per key ("user:<name>",
// "addr:<ip>"). It is safe for concurrent use.
type loginLimiter struct {
	max    int
	window time.Duration
	cap    int

	mu   sync.Mutex
	keys map[string]*loginFailures
}

// loginFailures holds the times of a key's latest failures, oldest
// first, at most max of them.
type loginFailures struct {
	times []time.Time
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{max: loginMaxFailures, window: loginWindow, cap: loginMaxKeys, keys: map[string]*loginFailures{}}
}

// loginKeys returns the limiter keys of an attempt: the username's
// first, then the address's.
func loginKeys(username string, r *http.Request) []string {
	name := strings.ToLower(strings.TrimSpace(username))
	if len(name) > loginMaxKeyLen {
		name = name[:loginMaxKeyLen]
	}
	addr := r.RemoteAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	return []string{"user:" + name, "addr:" + addr}
}

// begin starts an attempt. If any key has used up its failures it
// returns how long the longest-blocked one stays blocked. Otherwise it
// counts the attempt as a failure of every key at once, before the
// (slow) password check, so a burst of parallel guesses cannot all pass
// the check; end takes the count back if the password was right.
func (l *loginLimiter) begin(now time.Time, keys ...string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		f := l.keys[k]
		if f == nil || len(f.times) < l.max {
			continue
		}
		// The key is free again when its max-th latest failure leaves
		// the window.
		if d := f.times[len(f.times)-l.max].Add(l.window).Sub(now); d > wait {
			wait = d
		}
	}
	if wait > 0 {
		return wait, false
	}
	for _, k := range keys {
		f := l.keys[k]
		if f == nil {
			if len(l.keys) >= l.cap {
				l.evict(now)
			}
			f = &loginFailures{}
			l.keys[k] = f
		}
		f.times = append(f.times, now)
		if len(f.times) > l.max {
			f.times = append(f.times[:0], f.times[len(f.times)-l.max:]...)
		}
	}
	return 0, true
}

// end takes back the failure begin counted at now for each key: after a
// correct password (the username's whole count is dropped too) or an
// internal error. An attacker's own account cannot reset the address
// count this way: only the one attempt is taken back.
func (l *loginLimiter) end(now time.Time, success bool, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, k := range keys {
		f := l.keys[k]
		if f == nil {
			continue
		}
		if success && i == 0 {
			delete(l.keys, k) // the username key
			continue
		}
		for j := len(f.times) - 1; j >= 0; j-- {
			if f.times[j].Equal(now) {
				f.times = append(f.times[:j], f.times[j+1:]...)
				break
			}
		}
		if len(f.times) == 0 {
			delete(l.keys, k)
		}
	}
}

// evict makes room for one key: it drops every key whose failures have
// all left the window, and if none has, the key with the oldest latest
// failure. Called with mu held, only when the map is full.
func (l *loginLimiter) evict(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, f := range l.keys {
		last := f.times[len(f.times)-1]
		if now.Sub(last) >= l.window {
			delete(l.keys, k)
			continue
		}
		if oldestKey == "" || last.Before(oldest) {
			oldestKey, oldest = k, last
		}
	}
	if len(l.keys) >= l.cap && oldestKey != "" {
		delete(l.keys, oldestKey)
	}
}

// tooManyLogins is the message for a blocked attempt: the wait in whole
// minutes, rounded up.
func tooManyLogins(wait time.Duration) string {
	n := max(1, int((wait+time.Minute-1)/time.Minute))
	unit := "minutes"
	if n == 1 {
		unit = "minute"
	}
	return fmt.Sprintf("Too many failed login attempts; try again in %d %s.", n, unit)
}
