// Reading, locating errors in and writing builds.ini: the ini schema
// (section and key names mapped onto Config fields) and its parsers.

package app

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/ini.v1"
)

// apply copies every key of f into c, rejecting unknown sections and keys.
func (c *Config) apply(f *ini.File) error {
	schema := configSchema()
	for _, s := range f.Sections() {
		keys := s.Keys()
		if s.Name() == ini.DefaultSection {
			if len(keys) > 0 {
				return &configError{section: ini.DefaultSection, key: keys[0].Name(),
					msg: "key outside a section; put it under [builds], [runner], [images], [limits], [mail], [webhooks], [retention] or [metrics]"}
			}
			continue
		}
		i := slices.IndexFunc(schema, func(cs configSection) bool { return cs.name == s.Name() })
		if i < 0 {
			return &configError{section: s.Name(), msg: "unknown section"}
		}
		for _, k := range keys {
			if err := schema[i].set(c, k.Name(), k.Value()); err != nil {
				return &configError{section: s.Name(), key: k.Name(), msg: err.Error()}
			}
		}
	}
	return nil
}

// Dump returns the effective configuration in ini syntax. Secrets are shown
// as "(set)"; without secrets, ParseConfig(Dump()) gives c back.
func (c *Config) Dump() string {
	var b strings.Builder
	from := "built-in defaults"
	if c.Path != "" {
		from = c.Path
	}
	fmt.Fprintf(&b, "# Effective builds configuration (from %s).\n", from)
	for _, s := range configSchema() {
		fmt.Fprintf(&b, "\n[%s]\n", s.name)
		for _, f := range s.fields {
			v := f.get(c)
			if f.secret && v != "" {
				v = "(set)"
			}
			writeKey(&b, f.key, v)
		}
		if s.name == "images" {
			c.dumpAliases(&b)
		}
	}
	return b.String()
}

// dumpAliases writes the aliases, and an empty value for each built-in
// alias that was removed so that it stays removed when read back.
func (c *Config) dumpAliases(b *strings.Builder) {
	names := make([]string, 0, len(c.Images.Aliases))
	for name := range c.Images.Aliases {
		names = append(names, name)
	}
	for name := range defaultAliases() {
		if _, ok := c.Images.Aliases[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		writeKey(b, "alias."+name, c.Images.Aliases[name])
	}
}

// writeKey writes one "key = value" line, quoting values that ini.v1 would
// otherwise trim or unquote.
func writeKey(b *strings.Builder, key, v string) {
	switch {
	case v == "":
		fmt.Fprintf(b, "%s =\n", key)
	case strings.Contains(v, "\n"):
		fmt.Fprintf(b, "%s = \"\"\"%s\"\"\"\n", key, v)
	case v != strings.TrimSpace(v) || strings.ContainsAny(v[:1], "\"'`"):
		fmt.Fprintf(b, "%s = `%s`\n", key, v)
	default:
		fmt.Fprintf(b, "%s = %s\n", key, v)
	}
}

// configError is a problem with one section or key, located in a file
// once ParseConfig knows where.
type configError struct {
	file    string
	line    int
	section string
	key     string // "" for a whole section or a syntax error
	msg     string
}

func (e *configError) Error() string {
	var b strings.Builder
	if e.file != "" {
		b.WriteString(e.file)
		if e.line > 0 {
			fmt.Fprintf(&b, ":%d", e.line)
		}
		b.WriteString(": ")
	}
	switch {
	case e.key != "":
		b.WriteString(e.section + "." + e.key + ": ")
	case e.section != "":
		b.WriteString("[" + e.section + "]: ")
	}
	b.WriteString(e.msg)
	return b.String()
}

func bad(section, key, format string, args ...any) *configError {
	return &configError{section: section, key: key, msg: fmt.Sprintf(format, args...)}
}

// locate adds the file name and line to a *configError.
func locate(file string, data []byte, err error) error {
	var ce *configError
	if !errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", file, err)
	}
	located := *ce
	located.file, located.line = file, lineOf(data, ce.section, ce.key)
	return &located
}

// syntaxError turns an ini.v1 parse error into one with a line number,
// found by looking for the offending line text.
func syntaxError(file string, data []byte, err error) error {
	var delim ini.ErrDelimiterNotFound
	var empty ini.ErrEmptyKeyName
	text, msg := "", ""
	switch {
	case errors.As(err, &delim):
		text = delim.Line
		msg = fmt.Sprintf("syntax error: want \"key = value\", got %q", strings.TrimSpace(text))
	case errors.As(err, &empty):
		text = empty.Line
		msg = fmt.Sprintf("syntax error: missing key name in %q", strings.TrimSpace(text))
	case strings.HasPrefix(err.Error(), "unclosed section: "):
		text = strings.TrimPrefix(err.Error(), "unclosed section: ")
		msg = fmt.Sprintf("syntax error: unclosed section header %q", strings.TrimSpace(text))
	default:
		return fmt.Errorf("%s: parse config: %w", file, err)
	}
	line := 0
	for i, l := range lines(data) {
		if strings.TrimSpace(l) == strings.TrimSpace(text) {
			line = i + 1
			break
		}
	}
	return &configError{file: file, line: line, msg: msg}
}

// lines splits data into lines without a leading byte order mark.
func lines(data []byte) []string {
	return strings.Split(string(bytes.TrimPrefix(data, []byte("\ufeff"))), "\n")
}

// lineOf returns the 1-based line of key in section, or of the section's
// first header when key is "", or 0. ini.v1 does not report positions, so
// this mirrors its rules: keys before any header are in DEFAULT, repeated
// sections merge and the last repeated key wins.
func lineOf(data []byte, section, key string) int {
	current, found := ini.DefaultSection, 0
	for i, raw := range lines(data) {
		l := strings.TrimSpace(raw)
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			if end := strings.LastIndexByte(l, ']'); end > 0 {
				current = l[1:end]
			}
			if key == "" && current == section && found == 0 {
				found = i + 1
			}
		case key != "" && current == section:
			name, _, ok := strings.Cut(l, "=")
			if ok && strings.Trim(strings.TrimSpace(name), "\"`") == key {
				found = i + 1
			}
		}
	}
	return found
}

// configSection is one ini section: its keys and how to read and print them.
type configSection struct {
	name   string
	fields []configField
}

// configField is one key: set parses an ini value into a Config, get
// prints it back. secret fields are hidden by Dump.
type configField struct {
	key    string
	set    func(c *Config, v string) error
	get    func(c *Config) string
	secret bool
}

// set applies one key of this section, including [images] alias.<name> keys.
func (s configSection) set(c *Config, key, v string) error {
	if name, ok := strings.CutPrefix(key, "alias."); ok && s.name == "images" {
		if name == "" {
			return errors.New("missing image name after alias.")
		}
		if c.Images.Aliases == nil {
			c.Images.Aliases = map[string]string{}
		}
		if v == "" {
			delete(c.Images.Aliases, name)
		} else {
			c.Images.Aliases[name] = v
		}
		return nil
	}
	i := slices.IndexFunc(s.fields, func(f configField) bool { return f.key == key })
	if i < 0 {
		return errors.New("unknown key")
	}
	return s.fields[i].set(c, v)
}

// configSchema lists every section and key in the order Dump prints them.
func configSchema() []configSection {
	return append([]configSection{
		{"builds", []configField{
			{key: "origin", set: func(c *Config, v string) error { c.Builds.Origin = strings.TrimRight(v, "/"); return nil },
				get: func(c *Config) string { return c.Builds.Origin }},
			stringField("listen", func(c *Config) *string { return &c.Builds.Listen }),
			stringField("data-dir", func(c *Config) *string { return &c.Builds.DataDir }),
			{key: "database", set: func(c *Config, v string) error { c.Builds.Database = v; return nil },
				get: func(c *Config) string {
					if c.Builds.Database == "" {
						return ""
					}
					return c.RedactedDatabase()
				}},
			stringField("site-name", func(c *Config) *string { return &c.Builds.SiteName }),
			stringField("log-level", func(c *Config) *string { return &c.Builds.LogLevel }),
			stringField("log-format", func(c *Config) *string { return &c.Builds.LogFormat }),
			stringField("secret-key", func(c *Config) *string { return &c.Builds.SecretKey }),
			boolField("allow-root", func(c *Config) *bool { return &c.Builds.AllowRoot }),
		}},
		{"runner", []configField{
			intField("slots", func(c *Config) *int { return &c.Runner.Slots }),
			intField("cpus", func(c *Config) *int { return &c.Runner.CPUs }),
			{key: "memory", set: setMemory, get: func(c *Config) string { return strconv.Itoa(c.Runner.Memory) }},
			stringField("accel", func(c *Config) *string { return &c.Runner.Accel }),
			stringField("cpu-model", func(c *Config) *string { return &c.Runner.CPUModel }),
			{key: "job-timeout", set: setJobTimeout, get: (*Config).JobTimeoutString},
			durationField("failed-keepalive", func(c *Config) *time.Duration { return &c.Runner.FailedKeepalive }),
			durationField("boot-timeout", func(c *Config) *time.Duration { return &c.Runner.BootTimeout }),
			stringField("ssh-listen", func(c *Config) *string { return &c.Runner.SSHListen }),
			stringField("ssh-user", func(c *Config) *string { return &c.Runner.SSHUser }),
			stringField("name", func(c *Config) *string { return &c.Runner.Name }),
			stringField("work-dir", func(c *Config) *string { return &c.Runner.WorkDir }),
			boolField("snapshots", func(c *Config) *bool { return &c.Runner.Snapshots }),
			intField("warm-guests", func(c *Config) *int { return &c.Runner.WarmGuests }),
			boolField("layers", func(c *Config) *bool { return &c.Runner.Layers }),
			durationField("layer-max-age", func(c *Config) *time.Duration { return &c.Runner.LayerMaxAge }),
			sizeField("layer-cache-size", func(c *Config) *int64 { return &c.Runner.LayerCacheSize }),
			stringField("cache-dir", func(c *Config) *string { return &c.Runner.CacheDir }),
			sizeField("min-free-disk", func(c *Config) *int64 { return &c.Runner.MinFreeDisk }),
			durationField("shutdown-grace", func(c *Config) *time.Duration { return &c.Runner.ShutdownGrace }),
			durationField("lease", func(c *Config) *time.Duration { return &c.Runner.Lease }),
			stringField("server", func(c *Config) *string { return &c.Runner.Server }),
			stringField("token-file", func(c *Config) *string { return &c.Runner.TokenFile }),
			{key: "guest-network", set: func(c *Config, v string) error { c.Runner.GuestNetwork = GuestNetwork(v); return nil },
				get: func(c *Config) string { return string(c.Runner.GuestNetwork) }},
			{key: "guest-allow", set: setGuestAllow, get: func(c *Config) string {
				out := make([]string, len(c.Runner.GuestAllow))
				for i, a := range c.Runner.GuestAllow {
					out[i] = a.String()
				}
				return strings.Join(out, ", ")
			}},
		}},
		{"images", []configField{
			stringField("dir", func(c *Config) *string { return &c.Images.Dir }),
			stringField("debian-mirror", func(c *Config) *string { return &c.Images.DebianMirror }),
			{key: "extra-ca", set: func(c *Config, v string) error { c.Images.ExtraCA = splitList(v); return nil },
				get: func(c *Config) string { return strings.Join(c.Images.ExtraCA, " ") }},
		}},
		{"limits", []configField{
			{key: "manifest-size", set: setManifestSize, get: func(c *Config) string { return formatSize(int64(c.Limits.ManifestSize)) }},
			sizeField("artifact-size", func(c *Config) *int64 { return &c.Limits.ArtifactSize }),
			intField("artifacts-per-job", func(c *Config) *int { return &c.Limits.ArtifactsPerJob }),
			intField("manifests-per-push", func(c *Config) *int { return &c.Limits.ManifestsPerPush }),
			sizeField("log-size", func(c *Config) *int64 { return &c.Limits.LogSize }),
			sizeField("upload-size", func(c *Config) *int64 { return &c.Limits.UploadSize }),
			sizeField("source-size", func(c *Config) *int64 { return &c.Limits.SourceSize }),
		}},
		{"mail", []configField{
			stringField("smtp-host", func(c *Config) *string { return &c.Mail.SMTPHost }),
			intField("smtp-port", func(c *Config) *int { return &c.Mail.SMTPPort }),
			stringField("smtp-encryption", func(c *Config) *string { return &c.Mail.SMTPEncryption }),
			stringField("smtp-user", func(c *Config) *string { return &c.Mail.SMTPUser }),
			secretField("smtp-password", func(c *Config) *string { return &c.Mail.SMTPPassword }),
			stringField("from", func(c *Config) *string { return &c.Mail.From }),
			stringField("pgp-key", func(c *Config) *string { return &c.Mail.PGPKey }),
			durationField("timeout", func(c *Config) *time.Duration { return &c.Mail.Timeout }),
			intField("max-attempts", func(c *Config) *int { return &c.Mail.MaxAttempts }),
		}},
		{"webhooks", []configField{
			secretField("private-key", func(c *Config) *string { return &c.Webhooks.PrivateKey }),
			boolField("allow-private", func(c *Config) *bool { return &c.Webhooks.AllowPrivate }),
			boolField("allow-loopback", func(c *Config) *bool { return &c.Webhooks.AllowLoopback }),
			durationField("timeout", func(c *Config) *time.Duration { return &c.Webhooks.Timeout }),
			intField("max-attempts", func(c *Config) *int { return &c.Webhooks.MaxAttempts }),
		}},
	}, opsSections()...)
}

func stringField(key string, p func(*Config) *string) configField {
	return configField{key: key,
		set: func(c *Config, v string) error { *p(c) = v; return nil },
		get: func(c *Config) string { return *p(c) }}
}

func secretField(key string, p func(*Config) *string) configField {
	f := stringField(key, p)
	f.secret = true
	return f
}

func intField(key string, p func(*Config) *int) configField {
	return configField{key: key,
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("invalid integer %q", v)
			}
			*p(c) = n
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(*p(c)) }}
}

func boolField(key string, p func(*Config) *bool) configField {
	return configField{key: key,
		set: func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "true", "yes", "on", "1":
				*p(c) = true
			case "false", "no", "off", "0":
				*p(c) = false
			default:
				return fmt.Errorf("invalid boolean %q (want true or false)", v)
			}
			return nil
		},
		get: func(c *Config) string { return strconv.FormatBool(*p(c)) }}
}

func durationField(key string, p func(*Config) *time.Duration) configField {
	return configField{key: key,
		set: func(c *Config, v string) error {
			d, err := parseDuration(v)
			*p(c) = d
			return err
		},
		get: func(c *Config) string { return formatDuration(*p(c)) }}
}

func sizeField(key string, p func(*Config) *int64) configField {
	return configField{key: key,
		set: func(c *Config, v string) error {
			n, err := parseSize(v, 1)
			*p(c) = n
			return err
		},
		get: func(c *Config) string { return formatSize(*p(c)) }}
}

// setGuestAllow reads runner.guest-allow: IP:port entries separated by
// commas or spaces.
func setGuestAllow(c *Config, v string) error {
	c.Runner.GuestAllow = nil
	for _, w := range splitList(v) {
		a, err := netip.ParseAddrPort(w)
		if err != nil {
			return fmt.Errorf("invalid address %q (want IP:port, e.g. 127.0.0.1:3142)", w)
		}
		c.Runner.GuestAllow = append(c.Runner.GuestAllow, netip.AddrPortFrom(a.Addr().Unmap(), a.Port()))
	}
	return nil
}

func setJobTimeout(c *Config, v string) error {
	d, err := parseDuration(v)
	c.Runner.JobTimeout, c.jobTimeoutText = d, v
	return err
}

// setMemory reads runner.memory: MiB when bare, or a size with a unit.
func setMemory(c *Config, v string) error {
	n, err := parseSize(v, 1<<20)
	if err != nil {
		return err
	}
	if n%(1<<20) != 0 || n>>20 > math.MaxInt32 {
		return fmt.Errorf("invalid size %q (want whole MiB, e.g. 2048, 512M or 2G)", v)
	}
	c.Runner.Memory = int(n >> 20)
	return nil
}

func setManifestSize(c *Config, v string) error {
	n, err := parseSize(v, 1)
	if err != nil {
		return err
	}
	if n > math.MaxInt32 {
		return fmt.Errorf("invalid size %q (too large)", v)
	}
	c.Limits.ManifestSize = int(n)
	return nil
}

func parseDuration(v string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n < 100000 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 90s, 10m, 1h30m or 7d)", v)
	}
	return d, nil
}

// formatDuration prints d without zero trailing units: 45m, 1h, 1h30m,
// 90s, whole days as 7d, and 0.
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0" // [retention]'s "keep for good"
	}
	if day := 24 * time.Hour; d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// sizeUnits are binary multipliers; "" means the caller's bare unit.
func sizeUnits() map[string]int64 {
	return map[string]int64{
		"K": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MIB": 1 << 20,
		"G": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TIB": 1 << 40,
	}
}

// parseSize reads a whole number with an optional binary unit (K, M, G, T,
// or KiB, MiB, GiB, TiB), returning bytes; a bare number counts bare bytes.
func parseSize(v string, bare int64) (int64, error) {
	digits := strings.TrimRightFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToUpper(strings.TrimSpace(v[len(digits):]))
	n, err := strconv.ParseInt(digits, 10, 64)
	mult, ok := sizeUnits()[unit]
	if unit == "" {
		mult, ok = bare, true
	}
	if err != nil || !ok || strings.ContainsAny(digits, "+-") {
		return 0, fmt.Errorf("invalid size %q (want a whole number with an optional K, M, G or T suffix)", v)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q (too large)", v)
	}
	return n * mult, nil
}

// formatSize prints n with the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// splitList splits on spaces and commas; an empty list is nil.
func splitList(v string) []string {
	parts := strings.FieldsFunc(v, func(r rune) bool { return isSpace(r) || r == ',' })
	if len(parts) == 0 {
		return nil
	}
	return parts
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// checkOrigin accepts http(s)://host[:port] with nothing after it.
func checkOrigin(origin string) error {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("invalid URL %q (want http://host[:port] or https://host[:port])", origin)
	}
	if origin != u.Scheme+"://"+u.Host {
		return fmt.Errorf("invalid URL %q (want only scheme://host[:port], without path, trailing slash or query)", origin)
	}
	return nil
}

// checkAddr accepts host:port with a numeric port; the host may be empty.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q (want host:port)", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("invalid port in %q (want 0-65535)", addr)
	}
	return nil
}

// isUserName accepts POSIX-style user names: [a-z_][a-z0-9_.-]*.
func isUserName(s string) bool {
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '.'))
		if !ok {
			return false
		}
	}
	return s != ""
}

// isImageName accepts names like "debian/bookworm", "alpine/3.20" or
// "archlinux": non-empty segments of [A-Za-z0-9._+-] joined by "/".
func isImageName(s string) bool {
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "" || strings.ContainsFunc(seg, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r))
		}) {
			return false
		}
	}
	return true
}

// checkEd25519 accepts a base64 Ed25519 seed (32 bytes) or private key (64).
func checkEd25519(s string) error {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return errors.New("not valid base64")
	}
	switch len(key) {
	case ed25519.SeedSize:
		return nil
	case ed25519.PrivateKeySize:
		if !bytes.Equal(ed25519.NewKeyFromSeed(key[:ed25519.SeedSize]), key) {
			return errors.New("public half of the key does not match its seed")
		}
		return nil
	}
	return fmt.Errorf("decodes to %d bytes, want 32 (seed) or 64 (private key)", len(key))
}

// validMirrorURL accepts http(s) URLs with a host and absolute file: URLs.
func validMirrorURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "http", "https":
		return u.Host != ""
	case "file":
		return strings.HasPrefix(u.Path, "/")
	}
	return false
}
