package app

import (
	"builds/images"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/ini.v1"
)

// Config is the whole configuration of a builds instance, read from one ini
// file (builds.ini) over the built-in defaults.
type Config struct {
	Builds   BuildsConfig
	Runner   RunnerConfig
	Images   ImagesConfig
	Limits   LimitsConfig
	Mail     MailConfig
	Webhooks WebhooksConfig
	Path     string // file it was read from, "" for embedded defaults

	jobTimeoutText string // job-timeout as the operator wrote it
}

// BuildsConfig is the [builds] section: the web service itself.
type BuildsConfig struct {
	Origin    string // public base URL, no trailing slash
	Listen    string // HTTP listen address
	DataDir   string // database, logs, artifacts, keys
	SiteName  string // name shown in the UI
	LogLevel  string // debug|info|warn|error
	LogFormat string // text|json
	SecretKey string // path of the 32-byte secrets key; "" = <data-dir>/secret.key, created on first start
}

// RunnerConfig is the [runner] section: the QEMU job runner.
type RunnerConfig struct {
	Slots           int           // concurrent jobs; 0 disables the runner
	CPUs            int           // vCPUs per VM
	Memory          int           // MiB per VM
	Accel           string        // auto|kvm|tcg
	CPUModel        string        // QEMU -cpu under TCG
	JobTimeout      time.Duration // whole-job limit
	FailedKeepalive time.Duration // how long a failed VM stays up for `connect`
	BootTimeout     time.Duration // until the guest answers SSH
	SSHListen       string        // builds' own SSH server for `connect`; "" disables
	SSHUser         string        // user shown in `ssh -t <user>@<runner> connect <id>`
	Name            string        // runner host name shown to users; "" = host of origin
	WorkDir         string        // VM overlays and sockets; never "" after parsing
}

// ImagesConfig is the [images] section: the guest image catalogue.
type ImagesConfig struct {
	Dir          string            // built images; never "" after parsing
	DebianMirror string            // "" = read from the host's apt sources
	ExtraCA      []string          // CA certificate files baked into images
	Aliases      map[string]string // image name -> image it stands for; a name mapped to itself is not an alias
}

// LimitsConfig is the [limits] section. Sizes are in bytes.
type LimitsConfig struct {
	ManifestSize    int
	ArtifactSize    int64
	ArtifactsPerJob int
	LogSize         int64 // per task log
	UploadSize      int64 // HTTP request body
}

// MailConfig is the [mail] section: outgoing mail for email triggers.
type MailConfig struct {
	SMTPHost       string // "" = mail disabled
	SMTPUser       string
	SMTPPassword   string
	SMTPPort       int
	SMTPEncryption string // starttls|tls|none
	From           string
	PGPKey         string // armored private key file to sign mail; "" = unsigned
}

// WebhooksConfig is the [webhooks] section: outgoing signed deliveries.
type WebhooksConfig struct {
	PrivateKey    string // base64 Ed25519 seed or private key; "" = <data-dir>/webhook.key
	AllowPrivate  bool   // deliver to private (RFC 1918, ULA) addresses
	AllowLoopback bool   // deliver to loopback addresses (tests only)
	Timeout       time.Duration
	MaxAttempts   int
}

// defaultAliases returns the image aliases built in. They are data:
// operators repoint or remove them with alias.<name> keys in [images].
// debian/testing maps to itself: it is an image of its own, built from the
// testing suite, and listed so that operators see it can be repointed.
func defaultAliases() map[string]string { return images.DefaultAliases() }

// baseConfig returns the defaults without the values derived from data-dir.
func baseConfig() *Config {
	return &Config{
		Builds: BuildsConfig{
			Origin: "http://127.0.0.1:8080", Listen: "127.0.0.1:8080",
			DataDir: "./builds-data", SiteName: "builds", LogLevel: "info", LogFormat: "text",
		},
		Runner: RunnerConfig{
			Slots: 2, CPUs: 1, Memory: 2048, Accel: "auto", CPUModel: "qemu64",
			JobTimeout: 45 * time.Minute, FailedKeepalive: 10 * time.Minute, BootTimeout: 120 * time.Second,
			SSHListen: "127.0.0.1:2222", SSHUser: "builds",
		},
		Images: ImagesConfig{Aliases: defaultAliases()},
		Limits: LimitsConfig{
			ManifestSize: 16384, ArtifactSize: 1 << 30, ArtifactsPerJob: 8,
			LogSize: 64 << 20, UploadSize: 32 << 20,
		},
		Mail:           MailConfig{SMTPPort: 587, SMTPEncryption: "starttls", From: "builds@localhost"},
		Webhooks:       WebhooksConfig{AllowPrivate: true, Timeout: 10 * time.Second, MaxAttempts: 5},
		jobTimeoutText: "45m",
	}
}

// fillDerived sets the directories that default to a place under
// data-dir. secret-key stays "": an unset key is created on first start,
// while a configured one must already exist.
func (c *Config) fillDerived() {
	if c.Runner.WorkDir == "" {
		c.Runner.WorkDir = filepath.Join(c.Builds.DataDir, "work")
	}
	if c.Images.Dir == "" {
		c.Images.Dir = filepath.Join(c.Builds.DataDir, "images")
	}
}

// DefaultConfig returns the configuration used when there is no file. It
// runs a working service on 127.0.0.1.
func DefaultConfig() *Config {
	c := baseConfig()
	c.fillDerived()
	return c
}

// ParseConfig reads ini text over the defaults, fills the values derived
// from data-dir and validates the result. path is used in error messages
// and recorded in Config.Path.
func ParseConfig(data []byte, path string) (*Config, error) {
	name := path
	if name == "" {
		name = "config"
	}
	// Comments only on their own lines (so passwords may contain # and ;),
	// no backslash continuations, and "=" as the only delimiter.
	opts := ini.LoadOptions{IgnoreInlineComment: true, IgnoreContinuation: true, KeyValueDelimiters: "="}
	f, err := ini.LoadSources(opts, data)
	if err != nil {
		return nil, syntaxError(name, data, err)
	}
	c := baseConfig()
	c.Path = path
	if err := c.apply(f); err != nil {
		return nil, locate(name, data, err)
	}
	c.fillDerived()
	if err := c.Validate(); err != nil {
		return nil, locate(name, data, err)
	}
	return c, nil
}

// LoadConfig reads and parses the file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(data, path)
}

// FindConfig loads the first of: flagPath, $BUILDS_CONFIG, ./builds.ini;
// with none of them it returns DefaultConfig. getenv nil means os.Getenv.
func FindConfig(flagPath string, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if flagPath != "" {
		return LoadConfig(flagPath)
	}
	if p := getenv("BUILDS_CONFIG"); p != "" {
		return LoadConfig(p)
	}
	_, err := os.Stat("builds.ini")
	switch {
	case err == nil:
		return LoadConfig("builds.ini")
	case errors.Is(err, fs.ErrNotExist):
		return DefaultConfig(), nil
	default:
		return nil, fmt.Errorf("find config: %w", err)
	}
}

// apply copies every key of f into c, rejecting unknown sections and keys.
func (c *Config) apply(f *ini.File) error {
	schema := configSchema()
	for _, s := range f.Sections() {
		keys := s.Keys()
		if s.Name() == ini.DefaultSection {
			if len(keys) > 0 {
				return &configError{section: ini.DefaultSection, key: keys[0].Name(),
					msg: "key outside a section; put it under [builds], [runner], [images], [limits], [mail] or [webhooks]"}
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

// Validate checks every value and returns the first problem, naming its
// section.key.
func (c *Config) Validate() error {
	for _, check := range []func() error{
		c.validateBuilds, c.validateRunner, c.validateImages,
		c.validateLimits, c.validateMail, c.validateWebhooks,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateBuilds() error {
	b := c.Builds
	switch {
	case checkOrigin(b.Origin) != nil:
		return bad("builds", "origin", "%v", checkOrigin(b.Origin))
	case checkAddr(b.Listen) != nil:
		return bad("builds", "listen", "%v", checkAddr(b.Listen))
	case b.DataDir == "":
		return bad("builds", "data-dir", "must not be empty")
	case strings.TrimSpace(b.SiteName) == "":
		return bad("builds", "site-name", "must not be empty")
	case !slices.Contains([]string{"debug", "info", "warn", "error"}, b.LogLevel):
		return bad("builds", "log-level", "invalid value %q (want debug, info, warn or error)", b.LogLevel)
	case !slices.Contains([]string{"text", "json"}, b.LogFormat):
		return bad("builds", "log-format", "invalid value %q (want text or json)", b.LogFormat)
	}
	return nil
}

func (c *Config) validateRunner() error {
	r := c.Runner
	switch {
	case r.Slots < 0:
		return bad("runner", "slots", "must be 0 or more, got %d", r.Slots)
	case r.CPUs < 1:
		return bad("runner", "cpus", "must be 1 or more, got %d", r.CPUs)
	case r.Memory < 128:
		return bad("runner", "memory", "must be at least 128 MiB, got %d", r.Memory)
	case !slices.Contains([]string{"auto", "kvm", "tcg"}, r.Accel):
		return bad("runner", "accel", "invalid value %q (want auto, kvm or tcg)", r.Accel)
	case r.CPUModel == "" || strings.ContainsFunc(r.CPUModel, isSpace):
		return bad("runner", "cpu-model", "invalid value %q (want a QEMU -cpu model such as qemu64)", r.CPUModel)
	case r.JobTimeout <= 0:
		return bad("runner", "job-timeout", "must be positive, got %s", r.JobTimeout)
	case r.FailedKeepalive < 0:
		return bad("runner", "failed-keepalive", "must not be negative, got %s", r.FailedKeepalive)
	case r.BootTimeout <= 0:
		return bad("runner", "boot-timeout", "must be positive, got %s", r.BootTimeout)
	case r.SSHListen != "" && checkAddr(r.SSHListen) != nil:
		return bad("runner", "ssh-listen", "%v", checkAddr(r.SSHListen))
	case !isUserName(r.SSHUser):
		return bad("runner", "ssh-user", "invalid user name %q", r.SSHUser)
	case strings.ContainsFunc(r.Name, func(ch rune) bool { return isSpace(ch) || strings.ContainsRune("@/", ch) }):
		return bad("runner", "name", "invalid host name %q", r.Name)
	case r.WorkDir == "":
		return bad("runner", "work-dir", "must not be empty")
	}
	return nil
}

func (c *Config) validateImages() error {
	im := c.Images
	if im.Dir == "" {
		return bad("images", "dir", "must not be empty")
	}
	if im.DebianMirror != "" {
		// "URL [SECURITY-URL|none]": the archive, then optionally the
		// security archive ("none" builds without one).
		words := strings.Fields(im.DebianMirror)
		if len(words) > 2 {
			return bad("images", "debian-mirror", "invalid value %q (want URL [SECURITY-URL|none])", im.DebianMirror)
		}
		for i, w := range words {
			if i == 1 && w == "none" {
				continue
			}
			if !validMirrorURL(w) {
				return bad("images", "debian-mirror", "invalid URL %q (want http://, https:// or file:///)", w)
			}
		}
	}
	for _, ca := range im.ExtraCA {
		if ca == "" || strings.ContainsFunc(ca, func(ch rune) bool { return isSpace(ch) || ch == ',' }) {
			return bad("images", "extra-ca", "invalid path %q (paths must not be empty or contain spaces or commas)", ca)
		}
	}
	names := make([]string, 0, len(im.Aliases))
	for name := range im.Aliases {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		key, target := "alias."+name, im.Aliases[name]
		switch next, chained := im.Aliases[target]; {
		case !isImageName(name):
			return bad("images", key, "invalid image name %q (want e.g. debian/stable)", name)
		case !isImageName(target):
			return bad("images", key, "invalid target image %q (want e.g. debian/bookworm)", target)
		case chained && target != name && next != target:
			return bad("images", key, "target %q is itself an alias (of %q); point at the final image", target, next)
		}
	}
	return nil
}

func (c *Config) validateLimits() error {
	l := c.Limits
	switch {
	case l.ManifestSize <= 0:
		return bad("limits", "manifest-size", "must be positive, got %d", l.ManifestSize)
	case l.ArtifactSize <= 0:
		return bad("limits", "artifact-size", "must be positive, got %d", l.ArtifactSize)
	case l.ArtifactsPerJob < 0:
		return bad("limits", "artifacts-per-job", "must be 0 or more, got %d", l.ArtifactsPerJob)
	case l.LogSize <= 0:
		return bad("limits", "log-size", "must be positive, got %d", l.LogSize)
	case l.UploadSize < int64(l.ManifestSize):
		return bad("limits", "upload-size", "must be at least manifest-size (%d), got %d", l.ManifestSize, l.UploadSize)
	}
	return nil
}

func (c *Config) validateMail() error {
	m := c.Mail
	switch {
	case strings.ContainsFunc(m.SMTPHost, func(ch rune) bool { return isSpace(ch) || ch == '/' }):
		return bad("mail", "smtp-host", "invalid host name %q", m.SMTPHost)
	case m.SMTPPort < 1 || m.SMTPPort > 65535:
		return bad("mail", "smtp-port", "must be between 1 and 65535, got %d", m.SMTPPort)
	case !slices.Contains([]string{"starttls", "tls", "none"}, m.SMTPEncryption):
		return bad("mail", "smtp-encryption", "invalid value %q (want starttls, tls or none)", m.SMTPEncryption)
	}
	if _, err := mail.ParseAddress(m.From); err != nil {
		return bad("mail", "from", "invalid address %q: %v", m.From, err)
	}
	return nil
}

func (c *Config) validateWebhooks() error {
	w := c.Webhooks
	switch {
	case w.PrivateKey != "" && checkEd25519(w.PrivateKey) != nil:
		return bad("webhooks", "private-key", "%v", checkEd25519(w.PrivateKey))
	case w.Timeout <= 0:
		return bad("webhooks", "timeout", "must be positive, got %s", w.Timeout)
	case w.MaxAttempts < 1:
		return bad("webhooks", "max-attempts", "must be 1 or more, got %d", w.MaxAttempts)
	}
	return nil
}

// JobTimeoutString returns job-timeout as the operator wrote it (e.g.
// "45m"), or a compact form when the duration was changed in code.
func (c *Config) JobTimeoutString() string {
	if d, err := time.ParseDuration(c.jobTimeoutText); err == nil && d == c.Runner.JobTimeout {
		return c.jobTimeoutText
	}
	return formatDuration(c.Runner.JobTimeout)
}

// RunnerName returns the runner host name shown to users: runner.name, or
// the host part of builds.origin.
func (c *Config) RunnerName() string {
	if c.Runner.Name != "" {
		return c.Runner.Name
	}
	if u, err := url.Parse(c.Builds.Origin); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return "localhost"
}

// Abs makes every path in c absolute, relative to the current directory.
func (c *Config) Abs() error {
	paths := []*string{&c.Builds.DataDir, &c.Builds.SecretKey, &c.Runner.WorkDir, &c.Images.Dir, &c.Mail.PGPKey}
	for i := range c.Images.ExtraCA {
		paths = append(paths, &c.Images.ExtraCA[i])
	}
	for _, p := range paths {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("resolve path %s: %w", *p, err)
		}
		*p = abs
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
	return []configSection{
		{"builds", []configField{
			{key: "origin", set: func(c *Config, v string) error { c.Builds.Origin = strings.TrimRight(v, "/"); return nil },
				get: func(c *Config) string { return c.Builds.Origin }},
			stringField("listen", func(c *Config) *string { return &c.Builds.Listen }),
			stringField("data-dir", func(c *Config) *string { return &c.Builds.DataDir }),
			stringField("site-name", func(c *Config) *string { return &c.Builds.SiteName }),
			stringField("log-level", func(c *Config) *string { return &c.Builds.LogLevel }),
			stringField("log-format", func(c *Config) *string { return &c.Builds.LogFormat }),
			stringField("secret-key", func(c *Config) *string { return &c.Builds.SecretKey }),
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
			sizeField("log-size", func(c *Config) *int64 { return &c.Limits.LogSize }),
			sizeField("upload-size", func(c *Config) *int64 { return &c.Limits.UploadSize }),
		}},
		{"mail", []configField{
			stringField("smtp-host", func(c *Config) *string { return &c.Mail.SMTPHost }),
			intField("smtp-port", func(c *Config) *int { return &c.Mail.SMTPPort }),
			stringField("smtp-encryption", func(c *Config) *string { return &c.Mail.SMTPEncryption }),
			stringField("smtp-user", func(c *Config) *string { return &c.Mail.SMTPUser }),
			secretField("smtp-password", func(c *Config) *string { return &c.Mail.SMTPPassword }),
			stringField("from", func(c *Config) *string { return &c.Mail.From }),
			stringField("pgp-key", func(c *Config) *string { return &c.Mail.PGPKey }),
		}},
		{"webhooks", []configField{
			secretField("private-key", func(c *Config) *string { return &c.Webhooks.PrivateKey }),
			boolField("allow-private", func(c *Config) *bool { return &c.Webhooks.AllowPrivate }),
			boolField("allow-loopback", func(c *Config) *bool { return &c.Webhooks.AllowLoopback }),
			durationField("timeout", func(c *Config) *time.Duration { return &c.Webhooks.Timeout }),
			intField("max-attempts", func(c *Config) *int { return &c.Webhooks.MaxAttempts }),
		}},
	}
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
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 90s, 10m or 1h30m)", v)
	}
	return d, nil
}

// formatDuration prints d without zero trailing units: 45m, 1h, 1h30m, 90s.
func formatDuration(d time.Duration) string {
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
