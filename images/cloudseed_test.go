package images

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kdomanski/iso9660"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// seedConfig returns a SeedConfig with fresh keys.
func seedConfig(t *testing.T, f Family) SeedConfig {
	t.Helper()
	_, host, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cpub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ssh.NewPublicKey(cpub)
	if err != nil {
		t.Fatal(err)
	}
	return SeedConfig{InstanceID: "builds-0123abcd", Family: f, HostKey: host, ClientKey: client}
}

// userData is the part of the seed's user-data the tests read.
type userData struct {
	Users []struct {
		Name, Sudo string
		UID        int      `yaml:"uid"`
		LockPasswd bool     `yaml:"lock_passwd"`
		Keys       []string `yaml:"ssh_authorized_keys"`
	}
	SSHKeys    map[string]string `yaml:"ssh_keys"`
	GenKeys    []string          `yaml:"ssh_genkeytypes"`
	DeleteKeys bool              `yaml:"ssh_deletekeys"`
	PWAuth     bool              `yaml:"ssh_pwauth"`
	WriteFiles []struct {
		Path, Permissions, Encoding, Content string
	} `yaml:"write_files"`
	Runcmd     [][]string
	Locale     *bool
	PowerState struct{ Mode, Delay string } `yaml:"power_state"`
}

// The seed is the same for every family but the argument prepare.sh
// gets: the family decides what prepare.sh installs and which init
// system's services it writes.
func TestSeedFiles(t *testing.T) {
	script, err := recipeFile("cloud", "prepare.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append([]Family{""}, Families...) {
		t.Run(string(f)+"-family", func(t *testing.T) {
			cfg := seedConfig(t, f)
			files, err := SeedFiles(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(files["user-data"]), "#cloud-config\n") {
				t.Fatalf("user-data does not start with #cloud-config:\n%s", files["user-data"])
			}
			var ud userData
			if err := yaml.Unmarshal(files["user-data"], &ud); err != nil {
				t.Fatal(err)
			}
			if len(ud.Users) != 1 || ud.Users[0].Name != "build" || ud.Users[0].UID != 1000 || ud.Users[0].Sudo != "ALL=(ALL) NOPASSWD:ALL" ||
				!ud.Users[0].LockPasswd || len(ud.Users[0].Keys) != 1 {
				t.Errorf("users = %+v", ud.Users)
			} else if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(ud.Users[0].Keys[0])); err != nil || string(k.Marshal()) != string(cfg.ClientKey.Marshal()) {
				t.Errorf("build's key = %q, %v", ud.Users[0].Keys[0], err)
			}
			hostPub, _ := ssh.NewPublicKey(cfg.HostKey.Public())
			if priv, err := ssh.ParseRawPrivateKey([]byte(ud.SSHKeys["ed25519_private"])); err != nil || !cfg.HostKey.Equal(*priv.(*ed25519.PrivateKey)) {
				t.Errorf("host private key: %v", err)
			}
			if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(ud.SSHKeys["ed25519_public"])); err != nil || string(k.Marshal()) != string(hostPub.Marshal()) {
				t.Errorf("host public key = %q, %v", ud.SSHKeys["ed25519_public"], err)
			}
			if len(ud.GenKeys) != 0 || !ud.DeleteKeys || ud.PWAuth {
				t.Errorf("ssh settings: genkeytypes %v deletekeys %v pwauth %v", ud.GenKeys, ud.DeleteKeys, ud.PWAuth)
			}
			var gotScript bool
			for _, w := range ud.WriteFiles {
				b, err := base64.StdEncoding.DecodeString(w.Content)
				if err != nil || w.Encoding != "b64" {
					t.Fatalf("write_files %s: %v", w.Path, err)
				}
				switch w.Path {
				case prepareDir + "/prepare.sh":
					gotScript = string(b) == string(script) && w.Permissions == "0755"
				case prepareDir + "/ci-ctl.c":
					if !strings.Contains(string(b), "int main(") {
						t.Errorf("ci-ctl.c is not the agent's source")
					}
				default:
					t.Errorf("unexpected file %s", w.Path)
				}
			}
			if !gotScript {
				t.Error("the seed does not carry recipes/cloud/prepare.sh")
			}
			if want := []string{"sh", prepareDir + "/prepare.sh", string(f)}; len(ud.Runcmd) != 1 || strings.Join(ud.Runcmd[0], " ") != strings.Join(want, " ") {
				t.Errorf("runcmd = %q, want %q", ud.Runcmd, want)
			}
			if ud.Locale == nil || *ud.Locale {
				t.Errorf("locale = %v, want false (no locale generated, as on builds.sr.ht)", ud.Locale)
			}
			if ud.PowerState.Mode != "poweroff" {
				t.Errorf("power_state = %+v", ud.PowerState)
			}
			var md map[string]string
			if err := yaml.Unmarshal(files["meta-data"], &md); err != nil || md["instance-id"] != cfg.InstanceID || md["local-hostname"] != "build" {
				t.Errorf("meta-data = %v, %v", md, err)
			}
			var nc struct {
				Version int
				Config  []struct {
					Type, Name string
					MAC        string `yaml:"mac_address"`
					Subnets    []struct {
						Type, Address, Gateway string
						DNS                    []string `yaml:"dns_nameservers"`
					}
				}
			}
			if err := yaml.Unmarshal(files["network-config"], &nc); err != nil {
				t.Fatal(err)
			}
			if nc.Version != 1 || len(nc.Config) != 1 || nc.Config[0].MAC != GuestMAC || len(nc.Config[0].Subnets) != 1 {
				t.Fatalf("network-config = %+v", nc)
			}
			if s := nc.Config[0].Subnets[0]; s.Type != "static" || s.Address != "10.0.2.15/24" || s.Gateway != "10.0.2.2" || strings.Join(s.DNS, " ") != "10.0.2.3" {
				t.Errorf("network-config subnet = %+v", s)
			}
		})
	}
	for _, tt := range []struct {
		name   string
		modify func(*SeedConfig)
		err    string
	}{
		{name: "ErrInstanceID", modify: func(c *SeedConfig) { c.InstanceID = "a b\nc" }, err: "instance id"},
		{name: "ErrFamily", modify: func(c *SeedConfig) { c.Family = "yum" }, err: `unknown package family "yum"`},
		{name: "ErrNoHostKey", modify: func(c *SeedConfig) { c.HostKey = nil }, err: "a host key and a client key are required"},
		{name: "ErrNoClientKey", modify: func(c *SeedConfig) { c.ClientKey = nil }, err: "a host key and a client key are required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := seedConfig(t, FamilyApt)
			tt.modify(&cfg)
			if _, err := SeedFiles(cfg); err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
		})
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The seed volume is what cloud-init's NoCloud source looks for: ISO
// 9660 labelled cidata, whose user-data, meta-data and network-config
// read back as written (Linux shows ISO names lower-case, without ;1).
func TestWriteSeed(t *testing.T) {
	cfg := seedConfig(t, FamilyDnf)
	want, err := SeedFiles(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seed.iso")
	if err := WriteSeed(path, cfg); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	iso, err := iso9660.OpenImage(f)
	if err != nil {
		t.Fatal(err)
	}
	if label, err := iso.Label(); err != nil || !strings.EqualFold(label, SeedLabel) {
		t.Errorf("label = %q, %v; want %s", label, err, SeedLabel)
	}
	root, err := iso.RootDir()
	if err != nil {
		t.Fatal(err)
	}
	children, err := root.GetChildren()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, c := range children {
		name := strings.TrimSuffix(strings.ToLower(c.Name()), ";1")
		b, err := io.ReadAll(c.Reader())
		if err != nil {
			t.Fatal(err)
		}
		got[name] = b
	}
	if len(got) != len(want) {
		t.Errorf("seed holds %d files, want %d", len(got), len(want))
	}
	// the private key's OpenSSH encoding has a random check number:
	// user-data differs there from one SeedFiles to the next
	var gotUD, wantUD userData
	if err := yaml.Unmarshal(got["user-data"], &gotUD); err != nil {
		t.Fatalf("user-data on the volume: %v", err)
	}
	yaml.Unmarshal(want["user-data"], &wantUD)
	if gotUD.SSHKeys["ed25519_public"] != wantUD.SSHKeys["ed25519_public"] || len(gotUD.WriteFiles) != 2 ||
		len(gotUD.Runcmd) != 1 || gotUD.Runcmd[0][2] != "dnf" || !strings.HasPrefix(string(got["user-data"]), "#cloud-config\n") {
		t.Errorf("user-data on the volume = %+v", gotUD)
	}
	delete(want, "user-data")
	for name, b := range want {
		if string(got[name]) != string(b) {
			t.Errorf("%s reads back as %d bytes, want the %d written (names on the volume: %v)", name, len(got[name]), len(b), keys(got))
		}
	}
	if err := WriteSeed(filepath.Join(t.TempDir(), "no", "such", "dir", "seed.iso"), cfg); err == nil {
		t.Error("WriteSeed into a missing directory succeeded")
	}
}
