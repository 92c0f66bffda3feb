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
	alice1 := []string{"user:alice", "addr:10.0.0.1"}
	fails := func(keys []string, n int, from time.Duration) []step {
		var s []step
		for i := range n {
			s = append(s, step{at: from + time.Duration(i)*time.Second, keys: keys, outcome: "fail"})
		}
		return s
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"five failures block the username from any address", append(fails(alice1, 5, 0),
			step{at: 10 * time.Second, keys: []string{"user:alice", "addr:10.0.0.2"}, wait: 5*time.Minute - 10*time.Second})},
		{"five failures block the address for any username", append(
			append(fails([]string{"user:a", "addr:10.0.0.1"}, 3, 0), fails([]string{"user:b", "addr:10.0.0.1"}, 2, 3*time.Second)...),
			step{at: time.Minute, keys: []string{"user:c", "addr:10.0.0.1"}, wait: 4 * time.Minute})},
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
		{"a right password clears the username but not the address", append(fails(alice1, 4, 0),
			step{at: 10 * time.Second, keys: alice1, outcome: "ok"},
			step{at: 11 * time.Second, keys: []string{"user:alice", "addr:10.0.0.2"}, outcome: "fail"},
			step{at: 12 * time.Second, keys: []string{"user:bob", "addr:10.0.0.1"}, outcome: "fail"},
			step{at: 13 * time.Second, keys: []string{"user:carol", "addr:10.0.0.1"}, wait: 5*time.Minute - 13*time.Second})},
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
		{"ipv4", "Alice ", "192.0.2.7:5555", []string{"user:alice", "addr:192.0.2.7"}},
		{"ipv6", "bob", "[2001:db8::1]:443", []string{"user:bob", "addr:2001:db8::1"}},
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
	if k := loginKeys(string(make([]byte, 10000)), r)[0]; len(k) > loginMaxKeyLen+len("user:") {
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
			if got := tooManyLogins(tt.wait); got != "Too many failed login attempts; "+tt.want {
				t.Errorf("tooManyLogins(%v) = %q", tt.wait, got)
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
	for i := range 50 {
		wg.Go(func() {
			if _, ok := l.begin(now, "user:alice", fmt.Sprintf("addr:10.0.0.%d", i)); ok {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != loginMaxFailures {
		t.Errorf("%d parallel attempts allowed, want %d", n, loginMaxFailures)
	}
}
