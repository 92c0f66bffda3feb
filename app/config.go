package app

import (
	"builds/images"
	"errors"
	"fmt"
	"io/fs"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/ini.v1"
)

// Config is the whole configuration of a builds instance, read from one ini
// file (builds.ini) over the built-in defaults.
type Config struct {
	Builds    BuildsConfig
	Runner    RunnerConfig
	Images    ImagesConfig
	Limits    LimitsConfig
	Mail      MailConfig
	Webhooks  WebhooksConfig
	Retention RetentionConfig
	Metrics   MetricsConfig
	Path      string // file it was read from, "" for embedded defaults

	jobTimeoutText string // job-timeout as the operator wrote it
}

// BuildsConfig is the [builds] section: the web service itself.
type BuildsConfig struct {
	Origin    string // public base URL, no trailing slash
	Listen    string // HTTP listen address
	DataDir   string // database, logs, artifacts, keys
	Database  string // "" = SQLite in <data-dir>/builds.db; a SQLite path, or a postgres:// URL
	SiteName  string // name shown in the UI
	LogLevel  string // debug|info|warn|error
	LogFormat string // text|json
	SecretKey string // path of the 32-byte secrets key; "" = <data-dir>/secret.key, created on first start
	AllowRoot bool   // let `builds serve` run as root
}

// RunnerConfig is the [runner] section: the QEMU job runner.
type RunnerConfig struct {
	Slots           int              // concurrent jobs; 0 disables the runner
	CPUs            int              // vCPUs per VM
	Memory          int              // MiB per VM
	Accel           string           // auto|kvm|tcg
	CPUModel        string           // QEMU -cpu under TCG
	JobTimeout      time.Duration    // whole-job limit
	FailedKeepalive time.Duration    // how long a failed VM stays up for `connect`
	BootTimeout     time.Duration    // until the guest answers SSH
	SSHListen       string           // builds' own SSH server for `connect`; "" disables
	SSHUser         string           // user shown in `ssh -t <user>@<runner> connect <id>`
	Name            string           // runner host name shown to users; "" = host of origin
	WorkDir         string           // VM overlays and sockets; never "" after parsing
	GuestNetwork    GuestNetwork     // what guests may reach: internet|no-lan|none
	GuestAllow      []netip.AddrPort // host services guests may reach (loopback ones at 10.0.2.2)
	Snapshots       bool             // resume jobs' guests from saved boots
	WarmGuests      int              // guests resumed ahead of time, waiting for jobs
	Layers          bool             // save and reuse installed packages
	LayerMaxAge     time.Duration    // a layer is remade after this
	LayerCacheSize  int64            // bytes; least recently used layers go beyond it
	CacheDir        string           // snapshots (and layers); never "" after parsing
	MinFreeDisk     int64            // bytes free in the data dir below which new jobs wait queued; 0 = no check
	ShutdownGrace   time.Duration    // how long running jobs may go on after a stop signal before they are cancelled
	// Lease is how long a remote runner's job lives without the runner's
	// next poll (on the server).
	Lease time.Duration
	// Server is the builds server `builds runner` takes jobs from, and
	// TokenFile the file holding its runner token (on a runner host).
	Server    string
	TokenFile string
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
	// ManifestsPerPush is the most manifests a push to a connected
	// repository may submit; a push with more builds nothing.
	ManifestsPerPush int
	LogSize          int64 // per task log
	UploadSize       int64 // HTTP request body
	// SourceSize bounds the git bundle of a local repository the server
	// sends into a guest (a plain git repository's source).
	SourceSize int64
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
	// Timeout limits each SMTP command of an attempt (and the whole
	// exchange to three times as long); MaxAttempts is how often one email
	// is tried. They are mail's own, not [webhooks]', because an SMTP relay
	// and a webhook receiver fail in different ways and operators tune them
	// apart.
	Timeout     time.Duration
	MaxAttempts int
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
			SSHListen: "127.0.0.1:2222", SSHUser: "builds", GuestNetwork: GuestInternet, Snapshots: true, WarmGuests: 1,
			Layers: true, LayerMaxAge: 7 * 24 * time.Hour, LayerCacheSize: 10 << 30,
			MinFreeDisk: 2 << 30, ShutdownGrace: time.Minute,
			Lease: 90 * time.Second,
		},
		Images: ImagesConfig{Aliases: defaultAliases()},
		Limits: LimitsConfig{
			ManifestSize: 16384, ArtifactSize: 1 << 30, ArtifactsPerJob: 8, ManifestsPerPush: 4,
			LogSize: 64 << 20, UploadSize: 32 << 20, SourceSize: 1 << 30,
		},
		Mail: MailConfig{SMTPPort: 587, SMTPEncryption: "starttls", From: "builds@localhost",
			Timeout: 10 * time.Second, MaxAttempts: 5},
		Webhooks:       WebhooksConfig{AllowPrivate: true, Timeout: 10 * time.Second, MaxAttempts: 5},
		Retention:      retentionDefaults(),
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
	if c.Runner.CacheDir == "" {
		c.Runner.CacheDir = filepath.Join(c.Builds.DataDir, "cache")
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

// Validate checks every value and returns the first problem, naming its
// section.key.
func (c *Config) Validate() error {
	for _, check := range []func() error{
		c.validateBuilds, c.validateRunner, c.validateImages,
		c.validateLimits, c.validateMail, c.validateWebhooks, c.validateOps,
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
	case checkDatabase(b.Database) != nil:
		return bad("builds", "database", "%v", checkDatabase(b.Database))
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
	case r.CacheDir == "":
		return bad("runner", "cache-dir", "must not be empty")
	case r.WarmGuests < 0:
		return bad("runner", "warm-guests", "must be 0 or more, got %d", r.WarmGuests)
	case r.Lease < 3*time.Second:
		return bad("runner", "lease", "must be at least 3s, got %s", r.Lease)
	case r.Server != "" && checkServerURL(r.Server) != nil:
		return bad("runner", "server", "%v", checkServerURL(r.Server))
	case r.LayerMaxAge <= 0:
		return bad("runner", "layer-max-age", "must be positive, got %s", r.LayerMaxAge)
	case r.LayerCacheSize <= 0:
		return bad("runner", "layer-cache-size", "must be positive, got %d", r.LayerCacheSize)
	}
	if _, err := ParseGuestNetwork(string(r.GuestNetwork)); err != nil {
		return bad("runner", "guest-network", "%v", err)
	}
	if err := CheckGuestAllow(r.GuestAllow); err != nil {
		return bad("runner", "guest-allow", "%v", err)
	}
	return nil
}

// GuestPolicy returns the guest network policy of [runner].
func (c *Config) GuestPolicy() (*GuestPolicy, error) {
	return NewGuestPolicy(c.Runner.GuestNetwork, c.Runner.GuestAllow)
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
	case l.ManifestsPerPush < 1:
		return bad("limits", "manifests-per-push", "must be 1 or more, got %d", l.ManifestsPerPush)
	case l.ArtifactsPerJob < 0:
		return bad("limits", "artifacts-per-job", "must be 0 or more, got %d", l.ArtifactsPerJob)
	case l.LogSize <= 0:
		return bad("limits", "log-size", "must be positive, got %d", l.LogSize)
	case l.UploadSize < int64(l.ManifestSize):
		return bad("limits", "upload-size", "must be at least manifest-size (%d), got %d", l.ManifestSize, l.UploadSize)
	case l.SourceSize <= 0:
		return bad("limits", "source-size", "must be positive, got %d", l.SourceSize)
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
	case m.Timeout <= 0:
		return bad("mail", "timeout", "must be positive, got %s", m.Timeout)
	case m.MaxAttempts < 1:
		return bad("mail", "max-attempts", "must be 1 or more, got %d", m.MaxAttempts)
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

// DatabaseSource returns what store.Open takes: [builds] database, or
// the SQLite file builds.db in the data dir when that is empty.
func (c *Config) DatabaseSource() string {
	if c.Builds.Database == "" {
		return filepath.Join(c.Builds.DataDir, "builds.db")
	}
	return c.Builds.Database
}

// DatabaseIsPostgres reports whether [builds] database is a PostgreSQL
// URL (postgres:// or postgresql://); otherwise it is a SQLite file.
func (c *Config) DatabaseIsPostgres() bool { return isPostgresURL(c.Builds.Database) }

func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// checkDatabase checks [builds] database: empty, a SQLite path, or a
// PostgreSQL URL that names a host (or a ?host= socket directory) and a
// database.
func checkDatabase(s string) error {
	switch {
	case s == "":
		return nil
	case strings.Contains(s, "://") && !isPostgresURL(s):
		scheme, _, _ := strings.Cut(s, "://")
		return fmt.Errorf("unsupported database %q: want a postgres:// URL, or a SQLite file path", scheme+"://")
	case !isPostgresURL(s):
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("invalid PostgreSQL URL") // err quotes the URL, password included
	}
	if u.Host == "" && u.Query().Get("host") == "" {
		return fmt.Errorf("PostgreSQL URL %s names no host (postgres://user:password@host/dbname, or ?host=/socket/dir)", u.Redacted())
	}
	if strings.Trim(u.Path, "/") == "" && u.Query().Get("dbname") == "" {
		return fmt.Errorf("PostgreSQL URL %s names no database (postgres://user:password@host/dbname)", u.Redacted())
	}
	return nil
}

// RedactedDatabase is [builds] database fit for logs and pages: a URL
// without its password.
func (c *Config) RedactedDatabase() string {
	if !c.DatabaseIsPostgres() {
		return c.DatabaseSource()
	}
	u, err := url.Parse(c.Builds.Database)
	if err != nil {
		return "postgres://(invalid URL)"
	}
	return u.Redacted()
}

// Abs makes every path in c absolute, relative to the current directory.
func (c *Config) Abs() error {
	if c.Builds.Database != "" && !c.DatabaseIsPostgres() {
		abs, err := filepath.Abs(c.Builds.Database)
		if err != nil {
			return fmt.Errorf("resolve path %s: %w", c.Builds.Database, err)
		}
		c.Builds.Database = abs
	}
	paths := []*string{&c.Builds.DataDir, &c.Builds.SecretKey, &c.Runner.WorkDir, &c.Runner.CacheDir, &c.Runner.TokenFile, &c.Images.Dir, &c.Mail.PGPKey}
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

// checkServerURL checks [runner] server: an http(s) URL of a builds
// server. Plain http is only for a server on this host: runner traffic
// carries secrets and tokens, so across a network it needs TLS (a reverse
// proxy in front of the server).
func checkServerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("invalid URL %q (want https://host[:port][/path])", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() || host == "localhost" {
			return nil
		}
		return fmt.Errorf("%q: plain http only reaches a server on this host; use https (runner traffic carries secrets)", s)
	}
	return fmt.Errorf("invalid URL %q (want https://host[:port][/path])", s)
}
