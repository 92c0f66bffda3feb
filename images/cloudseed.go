package images

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/kdomanski/iso9660"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// The NoCloud seed of an imported cloud image's one preparing boot: a
// small ISO 9660 volume labelled "cidata" that cloud-init reads before
// the network comes up (user-data, meta-data, network-config). It makes
// the build user and the host key, sets the static network of QEMU's
// user networking, writes recipes/cloud/prepare.sh and the control
// channel agent's source into the guest and runs the script, then powers
// the guest off.

// SeedLabel is the volume label cloud-init's NoCloud source looks for.
const SeedLabel = "cidata"

// GuestMAC is the MAC address of the guest's NIC (runner/guestnet).
const GuestMAC = "52:54:00:12:34:56"

// prepareDir is where the seed puts the preparing boot's files in the guest.
const prepareDir = "/var/lib/builds-prepare"

// SeedConfig is what one preparing boot's seed carries.
type SeedConfig struct {
	InstanceID string             // cloud-init runs its first boot once per instance id
	Family     Family             // "" = prepare.sh guesses it from the package manager
	HostKey    ed25519.PrivateKey // becomes the guest's only SSH host key
	ClientKey  ssh.PublicKey      // the image's baked key in build's authorized_keys
}

var instanceIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// SeedFiles returns the seed's files: user-data, meta-data and
// network-config.
func SeedFiles(cfg SeedConfig) (map[string][]byte, error) {
	if !instanceIDRe.MatchString(cfg.InstanceID) {
		return nil, fmt.Errorf("seed: instance id %q: use letters, digits, . _ -", cfg.InstanceID)
	}
	if cfg.Family != "" {
		if _, err := ParseFamily(string(cfg.Family)); err != nil {
			return nil, fmt.Errorf("seed: %w", err)
		}
	}
	if len(cfg.HostKey) != ed25519.PrivateKeySize || cfg.ClientKey == nil {
		return nil, errors.New("seed: a host key and a client key are required")
	}
	blk, err := ssh.MarshalPrivateKey(cfg.HostKey, "")
	if err != nil {
		return nil, fmt.Errorf("seed: encode host key: %w", err)
	}
	hostPub, err := ssh.NewPublicKey(cfg.HostKey.Public())
	if err != nil {
		return nil, fmt.Errorf("seed: encode host key: %w", err)
	}
	script, err := recipeFile("cloud", "prepare.sh")
	if err != nil {
		return nil, err
	}
	agent, err := ControlAgentSource()
	if err != nil {
		return nil, err
	}
	userData := map[string]any{
		"users": []map[string]any{{
			"name":                "build",
			"uid":                 1000,
			"lock_passwd":         true,
			"sudo":                "ALL=(ALL) NOPASSWD:ALL",
			"ssh_authorized_keys": []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cfg.ClientKey)))},
		}},
		"disable_root": true,
		// builds.sr.ht's guests generate no locale and leave LANG unset
		"locale":          false,
		"ssh_pwauth":      false,
		"ssh_deletekeys":  true,
		"ssh_genkeytypes": []string{},
		"ssh_keys": map[string]string{
			"ed25519_private": string(pem.EncodeToMemory(blk)),
			"ed25519_public":  strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostPub))),
		},
		"write_files": []map[string]any{
			{"path": prepareDir + "/prepare.sh", "permissions": "0755", "encoding": "b64", "content": base64.StdEncoding.EncodeToString(script)},
			{"path": prepareDir + "/ci-ctl.c", "permissions": "0644", "encoding": "b64", "content": base64.StdEncoding.EncodeToString([]byte(agent))},
		},
		"runcmd": [][]string{{"sh", prepareDir + "/prepare.sh", string(cfg.Family)}},
		// after runcmd, whatever it did: the host reads the verdict off
		// the console and waits for QEMU to exit
		"power_state": map[string]any{"mode": "poweroff", "condition": true, "delay": "now",
			"message": "builds: preparing boot done"},
	}
	ud, err := yaml.Marshal(userData)
	if err != nil {
		return nil, fmt.Errorf("seed: user-data: %w", err)
	}
	md, err := yaml.Marshal(map[string]string{"instance-id": cfg.InstanceID, "local-hostname": "build"})
	if err != nil {
		return nil, fmt.Errorf("seed: meta-data: %w", err)
	}
	// version 1: every renderer cloud-init has (ifupdown, netplan,
	// networkd, sysconfig, Alpine's) takes it; matched by MAC, so the
	// NIC keeps whatever name the distribution gives it
	nc, err := yaml.Marshal(map[string]any{
		"version": 1,
		"config": []map[string]any{{
			"type": "physical", "name": "eth0", "mac_address": GuestMAC,
			"subnets": []map[string]any{{
				"type": "static", "address": "10.0.2.15/24", "gateway": "10.0.2.2",
				"dns_nameservers": []string{"10.0.2.3"},
			}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("seed: network-config: %w", err)
	}
	return map[string][]byte{
		"user-data":      append([]byte("#cloud-config\n"), ud...),
		"meta-data":      md,
		"network-config": nc,
	}, nil
}

// WriteSeed writes the seed volume to path.
func WriteSeed(path string, cfg SeedConfig) error {
	files, err := SeedFiles(cfg)
	if err != nil {
		return err
	}
	w, err := iso9660.NewWriter()
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer w.Cleanup()
	for _, name := range []string{"meta-data", "user-data", "network-config"} {
		if err := w.AddFile(bytes.NewReader(files[name]), name); err != nil {
			return fmt.Errorf("seed: add %s: %w", name, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := w.WriteTo(f, SeedLabel); err != nil {
		f.Close()
		return fmt.Errorf("seed: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("seed: write %s: %w", path, err)
	}
	return nil
}

// ControlAgentSource returns the C source of the resume control channel
// agent our Debian images compile in (recipes/debian/customize.sh keeps
// it, as a here-document, for the image build); a prepared cloud image
// compiles the same program.
func ControlAgentSource() (string, error) {
	b, err := recipeFile("debian", "customize.sh")
	if err != nil {
		return "", err
	}
	const start = "put 0644 /usr/local/src/ci-ctl.c <<'EOF'\n"
	_, rest, ok := strings.Cut(string(b), start)
	src, _, ok2 := strings.Cut(rest, "\nEOF\n")
	if !ok || !ok2 || !strings.Contains(src, "int main(") {
		return "", errors.New("recipes/debian/customize.sh holds no ci-ctl.c here-document")
	}
	return src + "\n", nil
}
