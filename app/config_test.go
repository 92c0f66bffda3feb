package app

import (
	"crypto/ed25519"
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// assertSameConfig compares two configs, ignoring Path and comparing the
// job timeout by its shown form, and shows both dumps on a mismatch.
func assertSameConfig(t *testing.T, got, want *Config) {
	t.Helper()
	g, w := *got, *want
	g.Path, w.Path = "", ""
	g.jobTimeoutText, w.jobTimeoutText = g.JobTimeoutString(), w.JobTimeoutString()
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("configs differ\n--- got:\n%s\n--- want:\n%s\n--- got %#v\n--- want %#v", g.Dump(), w.Dump(), g, w)
	}
}

// writeConfigFile writes text into dir/name and returns the path.
func writeConfigFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	tests := []struct {
		name, got, want string
	}{
		{"origin", c.Builds.Origin, "http://127.0.0.1:8080"},
		{"secret-key", c.Builds.SecretKey, ""},
		{"work-dir", c.Runner.WorkDir, filepath.Join("builds-data", "work")},
		{"cache-dir", c.Runner.CacheDir, filepath.Join("builds-data", "cache")},
		{"images dir", c.Images.Dir, filepath.Join("builds-data", "images")},
		{"stable alias", c.Images.Aliases["debian/stable"], "debian/trixie"},
		{"testing alias", c.Images.Aliases["debian/testing"], "debian/forky"},
		{"runner name", c.RunnerName(), "127.0.0.1"},
		{"job timeout", c.JobTimeoutString(), "45m"},
		{"path", c.Path, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
	if c.Runner.Memory != 2048 || c.Limits.ArtifactSize != 1<<30 || c.Runner.BootTimeout != 120*time.Second {
		t.Errorf("unexpected defaults: %+v %+v", c.Runner, c.Limits)
	}
}

func TestConfigExample(t *testing.T) {
	data, err := os.ReadFile("../builds.ini.example")
	if err != nil {
		t.Fatal(err)
	}
	// Every "# key = value" line, uncommented, must still give the defaults.
	setting := regexp.MustCompile(`(?m)^# ([a-z][a-z0-9./-]*) =(?: (.*))?$`)
	uncommented := setting.ReplaceAll(data, []byte("$1 = $2"))

	t.Run("AsIs", func(t *testing.T) {
		c, err := ParseConfig(data, "builds.ini.example")
		if err != nil {
			t.Fatal(err)
		}
		assertSameConfig(t, c, DefaultConfig())
	})
	t.Run("Uncommented", func(t *testing.T) {
		c, err := ParseConfig(uncommented, "builds.ini.example")
		if err != nil {
			t.Fatal(err)
		}
		assertSameConfig(t, c, DefaultConfig())
	})
	t.Run("EveryKeyShownWithItsDefault", func(t *testing.T) {
		shown := map[string]string{}
		section := ""
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "[") {
				section = strings.Trim(line, "[]")
			}
			if m := setting.FindStringSubmatch(line); m != nil {
				shown[section+"."+m[1]] = m[2]
			}
		}
		defaults := DefaultConfig()
		for _, s := range configSchema() {
			for _, f := range s.fields {
				v, ok := shown[s.name+"."+f.key]
				if !ok {
					t.Errorf("%s.%s missing from the example", s.name, f.key)
				} else if v != "" && v != f.get(defaults) {
					t.Errorf("%s.%s: example shows %q, default is %q", s.name, f.key, v, f.get(defaults))
				}
			}
		}
		for name, target := range defaultAliases() {
			if shown["images.alias."+name] != target {
				t.Errorf("alias %s: example shows %q, default is %q", name, shown["images.alias."+name], target)
			}
		}
	})
}

func TestParseConfigValues(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		check func(c *Config) bool
	}{
		{"Empty", "", func(c *Config) bool { return reflect.DeepEqual(c.Images, DefaultConfig().Images) }},
		{"DataDirMovesDerivedPaths", "[builds]\ndata-dir = /srv/b\n", func(c *Config) bool {
			return c.Images.Dir == "/srv/b/images" && c.Runner.WorkDir == "/srv/b/work" && c.Builds.SecretKey == ""
		}},
		{"ExplicitPathsWin", "[builds]\ndata-dir = /srv/b\n[images]\ndir = /img\n", func(c *Config) bool {
			return c.Images.Dir == "/img" && c.Runner.WorkDir == "/srv/b/work"
		}},
		{"OriginTrailingSlash", "[builds]\norigin = https://ci.example.org/\n", func(c *Config) bool {
			return c.Builds.Origin == "https://ci.example.org" && c.RunnerName() == "ci.example.org"
		}},
		{"RunnerName", "[runner]\nname = runner1.example.org\n", func(c *Config) bool { return c.RunnerName() == "runner1.example.org" }},
		{"SizeGiB", "[limits]\nartifact-size = 2G\n", func(c *Config) bool { return c.Limits.ArtifactSize == 2<<30 }},
		{"SizeMiB", "[limits]\nlog-size = 512M\n", func(c *Config) bool { return c.Limits.LogSize == 512<<20 }},
		{"SizeBytes", "[limits]\nupload-size = 1048577\n", func(c *Config) bool { return c.Limits.UploadSize == 1048577 }},
		{"SourceSize", "[limits]\nsource-size = 256M\n", func(c *Config) bool { return c.Limits.SourceSize == 256<<20 }},
		{"SizeLongUnit", "[limits]\nmanifest-size = 32KiB\n", func(c *Config) bool { return c.Limits.ManifestSize == 32<<10 }},
		{"SizeLowerCase", "[limits]\nartifact-size = 3g\n", func(c *Config) bool { return c.Limits.ArtifactSize == 3<<30 }},
		{"MemoryBare", "[runner]\nmemory = 4096\n", func(c *Config) bool { return c.Runner.Memory == 4096 }},
		{"MemoryG", "[runner]\nmemory = 2G\n", func(c *Config) bool { return c.Runner.Memory == 2048 }},
		{"MemoryM", "[runner]\nmemory = 512M\n", func(c *Config) bool { return c.Runner.Memory == 512 }},
		{"Durations", "[runner]\njob-timeout = 1h30m\nfailed-keepalive = 0s\nboot-timeout = 90s\n", func(c *Config) bool {
			return c.Runner.JobTimeout == 90*time.Minute && c.Runner.FailedKeepalive == 0 && c.Runner.BootTimeout == 90*time.Second
		}},
		{"JobTimeoutKeepsText", "[runner]\njob-timeout = 2700s\n", func(c *Config) bool {
			return c.Runner.JobTimeout == 45*time.Minute && c.JobTimeoutString() == "2700s"
		}},
		{"Bools", "[webhooks]\nallow-private = no\nallow-loopback = true\n", func(c *Config) bool {
			return !c.Webhooks.AllowPrivate && c.Webhooks.AllowLoopback
		}},
		{"ExtraCAList", "[images]\nextra-ca = /a.pem, /b.pem /c.pem\n", func(c *Config) bool {
			return reflect.DeepEqual(c.Images.ExtraCA, []string{"/a.pem", "/b.pem", "/c.pem"})
		}},
		{"AliasOverrideAndAdd", "[images]\nalias.debian/stable = debian/bookworm\nalias.ubuntu/lts = ubuntu/24.04\n", func(c *Config) bool {
			return c.Images.Aliases["debian/stable"] == "debian/bookworm" && c.Images.Aliases["ubuntu/lts"] == "ubuntu/24.04" &&
				c.Images.Aliases["debian/unstable"] == "debian/sid"
		}},
		{"MirrorForms", "[images]\ndebian-mirror = file:///srv/mirror/debian none\n", func(c *Config) bool {
			return c.Images.DebianMirror == "file:///srv/mirror/debian none"
		}},
		{"AliasRemove", "[images]\nalias.debian/testing =\n", func(c *Config) bool {
			_, ok := c.Images.Aliases["debian/testing"]
			return !ok && len(c.Images.Aliases) == 4
		}},
		{"PasswordWithHash", "[mail]\nsmtp-password = a#b;c\n", func(c *Config) bool { return c.Mail.SMTPPassword == "a#b;c" }},
		{"QuotedValue", "[builds]\nsite-name = \" My CI \"\n", func(c *Config) bool { return c.Builds.SiteName == " My CI " }},
		{"RepeatedKeyLastWins", "[runner]\nslots = 1\nslots = 3\n", func(c *Config) bool { return c.Runner.Slots == 3 }},
		{"RepeatedSectionsMerge", "[runner]\nslots = 1\n[mail]\n[runner]\ncpus = 2\n", func(c *Config) bool {
			return c.Runner.Slots == 1 && c.Runner.CPUs == 2
		}},
		{"CRLFAndBOM", "\ufeff[runner]\r\nslots = 0\r\n", func(c *Config) bool { return c.Runner.Slots == 0 }},
		{"EmptyDefaultSectionHeader", "[DEFAULT]\n[runner]\nslots = 4\n", func(c *Config) bool { return c.Runner.Slots == 4 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.text), "builds.ini")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config:\n%s", c.Dump())
			}
			if c.Path != "builds.ini" {
				t.Errorf("Path = %q", c.Path)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	seed := base64.StdEncoding.EncodeToString(make([]byte, 32))
	badKey := make([]byte, 64) // seed of zeros with a wrong public half
	tests := []struct {
		name, text, want string
	}{
		{"BadInteger", "[runner]\n# two slots\n\nslots = two\n", `builds.ini:4: runner.slots: invalid integer "two"`},
		{"InlineCommentIsValue", "[runner]\nslots = 2 # two\n", `builds.ini:2: runner.slots: invalid integer "2 # two"`},
		{"NegativeSlots", "[runner]\nslots = -1\n", `builds.ini:2: runner.slots: must be 0 or more, got -1`},
		{"BadDuration", "[webhooks]\ntimeout = 10\n", `builds.ini:2: webhooks.timeout: invalid duration "10" (want e.g. 90s, 10m, 1h30m or 7d)`},
		{"ZeroJobTimeout", "[runner]\njob-timeout = 0s\n", `builds.ini:2: runner.job-timeout: must be positive, got 0s`},
		{"BadSize", "[limits]\nartifact-size = 1.5G\n", `builds.ini:2: limits.artifact-size: invalid size "1.5G" (want a whole number with an optional K, M, G or T suffix)`},
		{"BadSizeUnit", "[limits]\nlog-size = 64X\n", `builds.ini:2: limits.log-size: invalid size "64X" (want a whole number with an optional K, M, G or T suffix)`},
		{"NegativeSize", "[limits]\nlog-size = -5\n", `builds.ini:2: limits.log-size: invalid size "-5" (want a whole number with an optional K, M, G or T suffix)`},
		{"HugeSize", "[limits]\nlog-size = 9000000T\n", `builds.ini:2: limits.log-size: invalid size "9000000T" (too large)`},
		{"MemoryNotWholeMiB", "[runner]\nmemory = 1000K\n", `builds.ini:2: runner.memory: invalid size "1000K" (want whole MiB, e.g. 2048, 512M or 2G)`},
		{"MemoryTooSmall", "[runner]\nmemory = 64M\n", `builds.ini:2: runner.memory: must be at least 128 MiB, got 64`},
		{"ZeroSourceSize", "[limits]\nsource-size = 0\n", `builds.ini:2: limits.source-size: must be positive, got 0`},
		{"UploadBelowManifest", "[limits]\nmanifest-size = 64K\nupload-size = 32K\n", `builds.ini:3: limits.upload-size: must be at least manifest-size (65536), got 32768`},
		{"BadBool", "[webhooks]\nallow-private = maybe\n", `builds.ini:2: webhooks.allow-private: invalid boolean "maybe" (want true or false)`},
		{"BadEnum", "[builds]\nlog-level = loud\n", `builds.ini:2: builds.log-level: invalid value "loud" (want debug, info, warn or error)`},
		{"BadAccel", "[runner]\naccel = hvf\n", `builds.ini:2: runner.accel: invalid value "hvf" (want auto, kvm or tcg)`},
		{"BadGuestNetwork", "[runner]\nguest-network = open\n", `builds.ini:2: runner.guest-network: invalid value "open" (want internet, no-lan or none)`},
		{"GuestAllowHostName", "[runner]\nguest-allow = localhost:3142\n", `builds.ini:2: runner.guest-allow: invalid address "localhost:3142" (want IP:port, e.g. 127.0.0.1:3142)`},
		{"GuestAllowNoPort", "[runner]\nguest-allow = 127.0.0.1\n", `builds.ini:2: runner.guest-allow: invalid address "127.0.0.1" (want IP:port, e.g. 127.0.0.1:3142)`},
		{"GuestAllowWildcard", "[runner]\nguest-allow = 0.0.0.0:80\n", `builds.ini:2: runner.guest-allow: 0.0.0.0:80: name one address, not a wildcard or multicast group`},
		{"GuestAllowClash", "[runner]\nguest-allow = 127.0.0.1:3142 [::1]:3142\n", `builds.ini:2: runner.guest-allow: 127.0.0.1:3142 and [::1]:3142 would both be 10.0.2.2:3142 in the guest`},
		{"BadEncryption", "[mail]\nsmtp-encryption = ssl\n", `builds.ini:2: mail.smtp-encryption: invalid value "ssl" (want starttls, tls or none)`},
		{"BadOriginScheme", "[builds]\norigin = ftp://x\n", `builds.ini:2: builds.origin: invalid URL "ftp://x" (want http://host[:port] or https://host[:port])`},
		{"OriginWithPath", "[builds]\norigin = https://x/ci\n", `builds.ini:2: builds.origin: invalid URL "https://x/ci" (want only scheme://host[:port], without path, trailing slash or query)`},
		{"BadListen", "[builds]\nlisten = 8080\n", `builds.ini:2: builds.listen: invalid address "8080" (want host:port)`},
		{"BadPort", "[runner]\nssh-listen = :99999\n", `builds.ini:2: runner.ssh-listen: invalid port in ":99999" (want 0-65535)`},
		{"BadSSHUser", "[runner]\nssh-user = Bad User\n", `builds.ini:2: runner.ssh-user: invalid user name "Bad User"`},
		{"BadMirror", "[images]\ndebian-mirror = /srv/mirror\n", `builds.ini:2: images.debian-mirror: invalid URL "/srv/mirror" (want http://, https:// or file:///)`},
		{"BadMirrorWords", "[images]\ndebian-mirror = http://a/ http://b/ http://c/\n", `builds.ini:2: images.debian-mirror: invalid value "http://a/ http://b/ http://c/" (want URL [SECURITY-URL|none])`},
		{"BadAliasTarget", "[images]\nalias.debian/stable = debian bookworm\n", `builds.ini:2: images.alias.debian/stable: invalid target image "debian bookworm" (want e.g. debian/bookworm)`},
		{"AliasChain", "[images]\nalias.stable = debian/stable\n", `builds.ini:2: images.alias.stable: target "debian/stable" is itself an alias (of "debian/trixie"); point at the final image`},
		{"AliasNoName", "[images]\nalias. = debian/sid\n", `builds.ini:2: images.alias.: missing image name after alias.`},
		{"BadFrom", "[mail]\nfrom = not an address\n", `builds.ini:2: mail.from: invalid address "not an address": mail: no angle-addr`},
		{"BadPrivateKeyBase64", "[webhooks]\nprivate-key = !!!\n", `builds.ini:2: webhooks.private-key: not valid base64`},
		{"BadPrivateKeyLength", "[webhooks]\nprivate-key = " + seed[:8] + "\n", `builds.ini:2: webhooks.private-key: decodes to 6 bytes, want 32 (seed) or 64 (private key)`},
		{"BadPrivateKeyHalf", "[webhooks]\nprivate-key = " + base64.StdEncoding.EncodeToString(badKey) + "\n", `builds.ini:2: webhooks.private-key: public half of the key does not match its seed`},
		{"UnknownSection", "[builds]\nlisten = :8080\n\n[runer]\nslots = 1\n", `builds.ini:4: [runer]: unknown section`},
		{"UnknownKey", "[runner]\nslots = 1\n  slot = 2\n", `builds.ini:3: runner.slot: unknown key`},
		{"KeysAreCaseSensitive", "[runner]\nSlots = 1\n", `builds.ini:2: runner.Slots: unknown key`},
		{"KeyBeforeSection", "# hi\nslots = 1\n[runner]\n", `builds.ini:2: DEFAULT.slots: key outside a section; put it under [builds], [runner], [images], [limits], [mail], [webhooks], [retention] or [metrics]`},
		{"KeyInDefaultSection", "[runner]\n[DEFAULT]\nslots = 1\n", `builds.ini:3: DEFAULT.slots: key outside a section; put it under [builds], [runner], [images], [limits], [mail], [webhooks], [retention] or [metrics]`},
		{"ColonIsNotADelimiter", "[builds]\nlisten: x\n", `builds.ini:2: syntax error: want "key = value", got "listen: x"`},
		{"MissingKeyName", "[builds]\n= x\n", `builds.ini:2: syntax error: missing key name in "= x"`},
		{"UnclosedSection", "[builds]\n[runner\n", `builds.ini:2: syntax error: unclosed section header "[runner"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.text), "builds.ini")
			if err == nil {
				t.Fatalf("no error; got\n%s", c.Dump())
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 7
	full := ed25519.NewKeyFromSeed(seed)
	tests := []struct {
		name   string
		change func(c *Config)
		want   string // "" = valid
	}{
		{"Defaults", func(c *Config) {}, ""},
		{"OriginTrailingSlash", func(c *Config) { c.Builds.Origin = "http://x/" }, `builds.origin: invalid URL "http://x/" (want only scheme://host[:port], without path, trailing slash or query)`},
		{"OriginQuery", func(c *Config) { c.Builds.Origin = "http://x?a" }, `builds.origin: invalid URL "http://x?a" (want only scheme://host[:port], without path, trailing slash or query)`},
		{"EmptyWorkDir", func(c *Config) { c.Runner.WorkDir = "" }, "runner.work-dir: must not be empty"},
		{"FirstErrorWins", func(c *Config) { c.Runner.CPUs = 0; c.Mail.SMTPPort = 0 }, "runner.cpus: must be 1 or more, got 0"},
		{"ExtraCAWithSpace", func(c *Config) { c.Images.ExtraCA = []string{"/a b.pem"} }, `images.extra-ca: invalid path "/a b.pem" (paths must not be empty or contain spaces or commas)`},
		{"BadAliasName", func(c *Config) { c.Images.Aliases["a//b"] = "debian/sid" }, `images.alias.a//b: invalid image name "a//b" (want e.g. debian/stable)`},
		{"SeedKey", func(c *Config) { c.Webhooks.PrivateKey = base64.StdEncoding.EncodeToString(seed) }, ""},
		{"FullKey", func(c *Config) { c.Webhooks.PrivateKey = base64.StdEncoding.EncodeToString(full) }, ""},
		{"RawBase64Key", func(c *Config) { c.Webhooks.PrivateKey = base64.RawStdEncoding.EncodeToString(seed) }, ""},
		{"MaxAttempts", func(c *Config) { c.Webhooks.MaxAttempts = 0 }, "webhooks.max-attempts: must be 1 or more, got 0"},
		{"MailMaxAttempts", func(c *Config) { c.Mail.MaxAttempts = 0 }, "mail.max-attempts: must be 1 or more, got 0"},
		{"MailTimeout", func(c *Config) { c.Mail.Timeout = 0 }, "mail.timeout: must be positive, got 0s"},
		{"MailRetriesApartFromWebhooks", func(c *Config) { c.Webhooks.MaxAttempts, c.Mail.MaxAttempts = 1, 9 }, ""},
		{"RunnerNameWithAt", func(c *Config) { c.Runner.Name = "a@b" }, `runner.name: invalid host name "a@b"`},
		{"SlotsZeroDisables", func(c *Config) { c.Runner.Slots = 0 }, ""},
		{"SSHDisabled", func(c *Config) { c.Runner.SSHListen = "" }, ""},
		{"DatabaseSQLitePath", func(c *Config) { c.Builds.Database = "/srv/builds.db" }, ""},
		{"DatabasePostgres", func(c *Config) { c.Builds.Database = "postgres://builds:pw@db.example.org/builds" }, ""},
		{"DatabasePostgresSocket", func(c *Config) { c.Builds.Database = "postgresql:///builds?host=/run/postgresql" }, ""},
		{"DatabaseMySQL", func(c *Config) { c.Builds.Database = "mysql://u:pw@h/db" }, `builds.database: unsupported database "mysql://": want a postgres:// URL, or a SQLite file path`},
		{"DatabaseNoHost", func(c *Config) { c.Builds.Database = "postgres:///builds" }, `builds.database: PostgreSQL URL postgres:///builds names no host (postgres://user:password@host/dbname, or ?host=/socket/dir)`},
		{"DatabaseNoName", func(c *Config) { c.Builds.Database = "postgres://u:secret@h" }, `builds.database: PostgreSQL URL postgres://u:xxxxx@h names no database (postgres://user:password@host/dbname)`},
		{"DatabaseBadURL", func(c *Config) { c.Builds.Database = "postgres://u:sec%zzret@h/db" }, `builds.database: invalid PostgreSQL URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("error\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestLineOf(t *testing.T) {
	text := "top = 1\n[a]\nx = 1\n; c\n  y=2\n[b] # b\nx = 3\n[a]\nx = 4\n\"q\" = 5\n"
	tests := []struct {
		name, section, key string
		want               int
	}{
		{"DefaultKey", "DEFAULT", "top", 1},
		{"SectionHeader", "a", "", 2},
		{"LastRepeatWins", "a", "x", 9},
		{"Indented", "a", "y", 5},
		{"HeaderWithComment", "b", "", 6},
		{"SameKeyOtherSection", "b", "x", 7},
		{"QuotedKey", "a", "q", 10},
		{"Missing", "a", "z", 0},
		{"MissingSection", "c", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lineOf([]byte(text), tt.section, tt.key); got != tt.want {
				t.Errorf("lineOf(%s, %s) = %d, want %d", tt.section, tt.key, got, tt.want)
			}
		})
	}
}

func TestFindConfig(t *testing.T) {
	dir := t.TempDir()
	flagFile := writeConfigFile(t, dir, "flag.ini", "[runner]\nslots = 1\n")
	envFile := writeConfigFile(t, dir, "env.ini", "[runner]\nslots = 3\n")
	cwd := filepath.Join(dir, "cwd")
	if err := os.Mkdir(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfigFile(t, cwd, "builds.ini", "[runner]\nslots = 5\n")
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "BUILDS_CONFIG" {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name, flag, env, chdir string
		wantSlots              int
		wantPath               string
	}{
		{"FlagBeatsAll", flagFile, envFile, cwd, 1, flagFile},
		{"EnvBeatsCwd", "", envFile, cwd, 3, envFile},
		{"CwdFile", "", "", cwd, 5, "builds.ini"},
		{"Defaults", "", "", empty, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(tt.chdir)
			c, err := FindConfig(tt.flag, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.Runner.Slots != tt.wantSlots || c.Path != tt.wantPath {
				t.Errorf("got slots %d from %q, want %d from %q", c.Runner.Slots, c.Path, tt.wantSlots, tt.wantPath)
			}
		})
	}
	t.Run("ErrMissingFlagFile", func(t *testing.T) {
		_, err := FindConfig(filepath.Join(dir, "nope.ini"), env(""))
		if err == nil || !strings.HasPrefix(err.Error(), "read config: ") {
			t.Errorf("got %v, want a read config error", err)
		}
	})
	t.Run("ErrNamesFile", func(t *testing.T) {
		p := writeConfigFile(t, dir, "bad.ini", "[runner]\nslots = x\n")
		_, err := LoadConfig(p)
		if want := p + `:2: runner.slots: invalid integer "x"`; err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})
}

func TestConfigDumpRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
	}{
		{"Defaults", func(c *Config) {}},
		{"Everything", func(c *Config) {
			c.Builds = BuildsConfig{Origin: "https://ci.example.org:8443", Listen: "[::1]:9000", DataDir: "/var/lib/builds",
				SiteName: "My CI", LogLevel: "debug", LogFormat: "json", SecretKey: "/etc/builds/secret.key"}
			c.Runner = RunnerConfig{Slots: 0, CPUs: 4, Memory: 3072, Accel: "tcg", CPUModel: "max", JobTimeout: 90 * time.Minute,
				FailedKeepalive: 0, BootTimeout: 1500 * time.Millisecond, SSHListen: "", SSHUser: "ci", Name: "r1", WorkDir: "/tmp/w", CacheDir: "/tmp/c", Snapshots: false, WarmGuests: 3, Layers: false, LayerMaxAge: 36 * time.Hour, LayerCacheSize: 5 << 30,
				GuestNetwork: GuestNoLAN, GuestAllow: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3142"), netip.MustParseAddrPort("[::1]:9418")},
				Lease: 2 * time.Minute, Server: "https://ci.example.org/", TokenFile: "/etc/builds/runner.token"}
			c.Images = ImagesConfig{Dir: "/img", DebianMirror: "http://mirror.invalid/debian", ExtraCA: []string{"/a.pem", "/b.pem"},
				Aliases: map[string]string{"debian/stable": "debian/trixie", "custom": "debian/sid"}}
			c.Limits = LimitsConfig{ManifestSize: 1000, ArtifactSize: 3 << 40, ArtifactsPerJob: 0, ManifestsPerPush: 9, LogSize: 1, UploadSize: 1 << 20, SourceSize: 5 << 20}
			c.Mail = MailConfig{SMTPHost: "smtp.invalid", SMTPUser: "u", SMTPPort: 465, SMTPEncryption: "tls",
				From: "CI <ci@example.org>", PGPKey: "/k.asc", Timeout: 30 * time.Second, MaxAttempts: 2}
			c.Webhooks = WebhooksConfig{AllowPrivate: false, AllowLoopback: true, Timeout: 2 * time.Second, MaxAttempts: 1}
		}},
		{"AwkwardStrings", func(c *Config) { c.Builds.SiteName = ` "quoted" # not a comment ; ` }},
		{"LeadingQuote", func(c *Config) { c.Builds.SiteName = `'CI'` }},
		{"NoAliases", func(c *Config) { c.Images.Aliases = map[string]string{} }},
		{"JobTimeoutChangedInCode", func(c *Config) { c.Runner.JobTimeout = 2 * time.Hour }},
		{"JobTimeoutAsWritten", func(c *Config) { c.Runner.JobTimeout, c.jobTimeoutText = 45*time.Minute, "2700s" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(c)
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			back, err := ParseConfig([]byte(c.Dump()), "")
			if err != nil {
				t.Fatalf("%v\n%s", err, c.Dump())
			}
			if back.Dump() != c.Dump() {
				t.Fatalf("dump changed\n--- first:\n%s\n--- second:\n%s", c.Dump(), back.Dump())
			}
			assertSameConfig(t, back, c)
		})
	}
}

func TestConfigDumpHidesSecrets(t *testing.T) {
	c := DefaultConfig()
	c.Mail.SMTPPassword = "hunter2"
	c.Webhooks.PrivateKey = base64.StdEncoding.EncodeToString(make([]byte, 32))
	d := c.Dump()
	for _, want := range []string{"smtp-password = (set)\n", "private-key = (set)\n"} {
		if !strings.Contains(d, want) {
			t.Errorf("dump lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "hunter2") || strings.Contains(d, c.Webhooks.PrivateKey) {
		t.Errorf("dump shows a secret:\n%s", d)
	}
	if !strings.Contains(DefaultConfig().Dump(), "smtp-password =\n") {
		t.Error("an unset secret should dump as empty")
	}
}

func TestConfigAbs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	c, err := ParseConfig([]byte("[builds]\ndata-dir = d\nsecret-key = k\n[images]\nextra-ca = ca.pem\n[mail]\npgp-key = /k.asc\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Abs(); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, got, want string }{
		{"data-dir", c.Builds.DataDir, filepath.Join(dir, "d")},
		{"images.dir", c.Images.Dir, filepath.Join(dir, "d", "images")},
		{"work-dir", c.Runner.WorkDir, filepath.Join(dir, "d", "work")},
		{"secret-key", c.Builds.SecretKey, filepath.Join(dir, "k")},
		{"runner.name", c.Runner.Name, ""},
		{"extra-ca", c.Images.ExtraCA[0], filepath.Join(dir, "ca.pem")},
		{"pgp-key", c.Mail.PGPKey, "/k.asc"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want string
	}{
		{"Minutes", 45 * time.Minute, "45m"},
		{"Hours", 2 * time.Hour, "2h"},
		{"HoursMinutes", 90 * time.Minute, "1h30m"},
		{"Seconds", 90 * time.Second, "1m30s"},
		{"Zero", 0, "0"},
		{"SubSecond", 1500 * time.Millisecond, "1.5s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatDuration(tt.d); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// [builds] database: the SQLite file in the data dir by default, and a
// PostgreSQL URL's password never printed back.
func TestConfigDatabase(t *testing.T) {
	c, err := ParseConfig([]byte("[builds]\ndata-dir = /srv/b\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.DatabaseSource(); got != "/srv/b/builds.db" || c.DatabaseIsPostgres() {
		t.Errorf("default database %q", got)
	}
	c, err = ParseConfig([]byte("[builds]\ndatabase = postgres://builds:hunter2@db/builds\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if !c.DatabaseIsPostgres() || c.DatabaseSource() != "postgres://builds:hunter2@db/builds" {
		t.Errorf("database %q", c.DatabaseSource())
	}
	if d := c.Dump(); strings.Contains(d, "hunter2") || !strings.Contains(d, "database = postgres://builds:xxxxx@db/builds") {
		t.Errorf("Dump shows the password or not the URL:\n%s", d)
	}
	if r := c.RedactedDatabase(); strings.Contains(r, "hunter2") {
		t.Errorf("RedactedDatabase = %q", r)
	}
}
