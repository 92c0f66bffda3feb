package web

import (
	"fmt"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoginLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		at      time.Duration
		keys    []string
		outcome string // "fail", "ok" (right password), "internal"; "" expects a refusal
		wait    time.Duration
	}
	pair := func(addr, name string) []string { return []string{"pair:" + addr + " " + name, "addr:" + addr} }
	alice1 := pair("10.0.0.1", "alice")
	fails := func(keys []string, n int, from time.Duration) []step {
		var s []step
		for i := range n {
			s = append(s, step{at: from + time.Duration(i)*time.Second, keys: keys, outcome: "fail"})
		}
		return s
	}
	// twenty usernames tried once each from one address
	spray := func(addr string, n int) []step {
		var s []step
		for i := range n {
			s = append(s, step{at: time.Duration(i) * time.Second, keys: pair(addr, fmt.Sprintf("u%d", i)), outcome: "fail"})
		}
		return s
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"five failures block the pair", append(fails(alice1, 5, 0),
			step{at: 10 * time.Second, keys: alice1, wait: 5*time.Minute - 10*time.Second})},
		{"a stranger cannot lock the account out", append(fails(pair("198.51.100.9", "alice"), 5, 0),
			step{at: 10 * time.Second, keys: pair("198.51.100.9", "alice"), wait: 5*time.Minute - 10*time.Second},
			step{at: 11 * time.Second, keys: alice1, outcome: "ok"})},
		{"twenty failures block the address for any username", append(spray("10.0.0.1", 20),
			step{at: time.Minute, keys: pair("10.0.0.1", "carol"), wait: 4 * time.Minute})},
		{"four failures do not", append(fails(alice1, 4, 0),
			step{at: 10 * time.Second, keys: alice1, outcome: "fail"})},
		{"the block lifts when the oldest failure leaves the window", append(fails(alice1, 5, 0),
			step{at: 5*time.Minute - time.Second, keys: alice1, wait: time.Second},
			step{at: 5 * time.Minute, keys: alice1, outcome: "fail"},
			// Failures at 1s..4s and 5m are in the window again.
			step{at: 5*time.Minute + 500*time.Millisecond, keys: alice1, wait: 500 * time.Millisecond})},
		{"blocked attempts do not extend the block", append(fails(alice1, 5, 0),
			step{at: time.Minute, keys: alice1, wait: 4 * time.Minute},
			step{at: 2 * time.Minute, keys: alice1, wait: 3 * time.Minute},
			step{at: 5 * time.Minute, keys: alice1, outcome: "ok"})},
		{"a right password clears the pair but not the address", append(append(spray("10.0.0.1", 19),
			step{at: 30 * time.Second, keys: alice1, outcome: "ok"}),
			step{at: 31 * time.Second, keys: pair("10.0.0.1", "bob"), outcome: "fail"},
			step{at: 32 * time.Second, keys: pair("10.0.0.1", "carol"), wait: 5*time.Minute - 32*time.Second})},
		{"successful logins do not count", append(
			[]step{{at: 0, keys: alice1, outcome: "ok"}, {at: 1, keys: alice1, outcome: "ok"}, {at: 2, keys: alice1, outcome: "ok"},
				{at: 3, keys: alice1, outcome: "ok"}, {at: 4, keys: alice1, outcome: "ok"}, {at: 5, keys: alice1, outcome: "internal"}},
			step{at: 6, keys: alice1, outcome: "ok"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLoginLimiter()
			for i, s := range tt.steps {
				wait, ok := l.begin(at(s.at), s.keys...)
				if s.outcome == "" {
					if ok || wait != s.wait {
						t.Fatalf("step %d (%v %v): allowed %v, wait %v; want refused, wait %v", i, s.at, s.keys, ok, wait, s.wait)
					}
					continue
				}
				if !ok {
					t.Fatalf("step %d (%v %v): refused, wait %v; want allowed", i, s.at, s.keys, wait)
				}
				switch s.outcome {
				case "ok":
					l.end(at(s.at), true, s.keys...)
				case "internal":
					l.end(at(s.at), false, s.keys...)
				}
			}
		})
	}
}

// A flood of made-up names stays within the cap: stale keys go first,
// then the least recently failed.
func TestLoginLimiterBounded(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l := newLoginLimiter()
	l.cap = 100
	for i := range 1000 {
		l.begin(t0.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("user:u%d", i))
	}
	if n := len(l.keys); n > l.cap {
		t.Fatalf("%d keys tracked, cap %d", n, l.cap)
	}
	if l.keys["user:u999"] == nil || l.keys["user:u0"] != nil {
		t.Error("eviction kept an old key or dropped the newest")
	}
	// After the window, the next new key sweeps every stale one.
	l.begin(t0.Add(loginWindow+time.Second), "user:late")
	if n := len(l.keys); n != 1 {
		t.Errorf("%d keys after the window, want 1", n)
	}
}

func TestLoginKeys(t *testing.T) {
	tests := []struct {
		name, username, remote string
		want                   []string
	}{
		{"ipv4", "Alice ", "192.0.2.7:5555", []string{"pair:192.0.2.7 alice", "addr:192.0.2.7"}},
		{"ipv6", "bob", "[2001:db8::1]:443", []string{"pair:2001:db8::1 bob", "addr:2001:db8::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/login", nil)
			r.RemoteAddr = tt.remote
			if got := loginKeys(tt.username, r); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("loginKeys = %v, want %v", got, tt.want)
			}
		})
	}
	r := httptest.NewRequest("POST", "/login", nil)
	if k := loginKeys(string(make([]byte, 10000)), r)[0]; len(k) > loginMaxKeyLen+len("pair:192.0.2.1 ") {
		t.Errorf("username key is %d bytes long", len(k))
	}
}

func TestTooManyLoginsMessage(t *testing.T) {
	tests := []struct {
		name string
		wait time.Duration
		want string
	}{
		{"full window", 5 * time.Minute, "try again in 5 minutes."},
		{"rounds up", 4*time.Minute + time.Second, "try again in 5 minutes."},
		{"one minute", 30 * time.Second, "try again in 1 minute."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tooManyAttempts("login", tt.wait); got != "Too many failed login attempts; "+tt.want {
				t.Errorf("tooManyAttempts(%v) = %q", tt.wait, got)
			}
		})
	}
}

// Parallel guesses are counted before their passwords are checked, so a
// burst gets no more tries than a sequence.
func TestLoginLimiterBurst(t *testing.T) {
	l := newLoginLimiter()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var wg sync.WaitGroup
	var allowed atomic.Int32
	for range 50 {
		wg.Go(func() {
			if _, ok := l.begin(now, "pair:10.0.0.1 alice", "addr:10.0.0.1"); ok {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != loginMaxFailures {
		t.Errorf("%d parallel attempts allowed, want %d", n, loginMaxFailures)
	}
}
