package web

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Failed password checks (logins and the current password of a password
// change) are limited in memory, per key, within loginWindow: after
// loginMaxFailures failures for one (address, username) pair that pair is
// refused, and after loginMaxAddrFailures failures from one address that
// address is refused for every username, each with 429 until the oldest
// of those failures is loginWindow old. There is deliberately no limit
// per username alone: a stranger failing to log in as alice blocks
// himself, never alice. Blocked attempts are not counted (a locked-out
// user who keeps trying is not locked out for longer), and the password
// is not checked while blocked. Successful logins do not count.
//
// The remote address is the TCP peer: behind a reverse proxy every client
// shares the proxy's address, so the address limit applies to all of
// them together.
const (
	loginMaxFailures     = 5
	loginMaxAddrFailures = 20
	loginWindow          = 5 * time.Minute
	// loginMaxKeys caps the tracked keys, so a flood of made-up names
	// cannot grow memory without bound.
	loginMaxKeys = 10000
	// loginMaxKeyLen bounds one key's username; usernames are far shorter.
	loginMaxKeyLen = 256
)

// loginLimiter counts recent failed logins per key ("pair:<ip> <name>",
// "addr:<ip>"). It is safe for concurrent use.
type loginLimiter struct {
	max     int // per pair
	addrMax int // per address
	window  time.Duration
	cap     int

	mu   sync.Mutex
	keys map[string]*loginFailures
}

// loginFailures holds the times of a key's latest failures, oldest
// first, at most max of them.
type loginFailures struct {
	times []time.Time
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{max: loginMaxFailures, addrMax: loginMaxAddrFailures, window: loginWindow,
		cap: loginMaxKeys, keys: map[string]*loginFailures{}}
}

// loginKeys returns the limiter keys of an attempt: the (address,
// username) pair's first, then the address's.
func loginKeys(username string, r *http.Request) []string {
	name := strings.ToLower(strings.TrimSpace(username))
	if len(name) > loginMaxKeyLen {
		name = name[:loginMaxKeyLen]
	}
	addr := r.RemoteAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	return []string{"pair:" + addr + " " + name, "addr:" + addr}
}

// limit is how many failures key may have in the window.
func (l *loginLimiter) limit(key string) int {
	if strings.HasPrefix(key, "addr:") {
		return l.addrMax
	}
	return l.max
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
		f, max := l.keys[k], l.limit(k)
		if f == nil || len(f.times) < max {
			continue
		}
		// The key is free again when its max-th latest failure leaves
		// the window.
		if d := f.times[len(f.times)-max].Add(l.window).Sub(now); d > wait {
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
		if max := l.limit(k); len(f.times) > max {
			f.times = append(f.times[:0], f.times[len(f.times)-max:]...)
		}
	}
	return 0, true
}

// end takes back the failure begin counted at now for each key: after a
// correct password (the pair's whole count is dropped too) or an
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
			delete(l.keys, k) // the pair key
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

// tooManyAttempts is the message for a blocked attempt ("login",
// "password"): the wait in whole minutes, rounded up.
func tooManyAttempts(what string, wait time.Duration) string {
	n := max(1, int((wait+time.Minute-1)/time.Minute))
	unit := "minutes"
	if n == 1 {
		unit = "minute"
	}
	return fmt.Sprintf("Too many failed %s attempts; try again in %d %s.", what, n, unit)
}
