package images

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// shellOK fails t unless cmd parses as POSIX shell.
func shellOK(t *testing.T, cmd string) {
	t.Helper()
	if out, err := exec.Command("sh", "-n", "-c", cmd).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v %s\n%s", err, out, cmd)
	}
}

func familyImage(f Family) *Image {
	return &Image{Name: "x/y", Meta: Metadata{Family: f}}
}

func TestParseFamily(t *testing.T) {
	for _, f := range Families {
		if got, err := ParseFamily(string(f)); err != nil || got != f {
			t.Errorf("ParseFamily(%q) = %q, %v", f, got, err)
		}
	}
	for _, bad := range []string{"", "APT", "yum", "apt ", "../apt", strings.Repeat("a", 10000)} {
		_, err := ParseFamily(bad)
		if err == nil || !strings.Contains(err.Error(), "unknown package family") ||
			!strings.Contains(err.Error(), "apt, apk, pacman, dnf, zypper, pkg") {
			t.Errorf("ParseFamily(%.20q) = %v", bad, err)
		}
	}
}

// os-release texts as the distributions' cloud images ship them.
func TestFamilyFromOSRelease(t *testing.T) {
	tests := []struct {
		name, text string
		want       Family
		err        string
	}{
		{name: "debian", text: "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"13\"\nID=debian\n", want: FamilyApt},
		{name: "ubuntu", text: "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\n", want: FamilyApt},
		{name: "alpine", text: "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.23.0\n", want: FamilyApk},
		{name: "arch", text: "NAME=\"Arch Linux\"\nID=arch\nBUILD_ID=rolling\n", want: FamilyPacman},
		{name: "fedora", text: "NAME=\"Fedora Linux\"\nVERSION_ID=43\nID=fedora\n", want: FamilyDnf},
		{name: "rocky", text: "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"10.0\"\n", want: FamilyDnf},
		{name: "alma", text: "NAME=\"AlmaLinux\"\nID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\n", want: FamilyDnf},
		{name: "centos stream", text: "NAME=\"CentOS Stream\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\n", want: FamilyDnf},
		{name: "opensuse leap", text: "NAME=\"openSUSE Leap\"\nID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n", want: FamilyZypper},
		{name: "tumbleweed", text: "NAME=\"openSUSE Tumbleweed\"\nID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\n", want: FamilyZypper},
		{name: "freebsd", text: "NAME=FreeBSD\nVERSION=\"14.3-RELEASE\"\nID=freebsd\n", want: FamilyPkg},
		{name: "derivative by ID_LIKE", text: "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", want: FamilyApt},
		{name: "upper case and CRLF", text: "ID=Fedora\r\n", want: FamilyDnf},
		{name: "comments and blanks", text: "# ID=alpine\n\nID=arch\n", want: FamilyPacman},
		{name: "unknown", text: "ID=gentoo\n", err: `os-release ID "gentoo" (ID_LIKE "") is no family builds knows: give --family`},
		{name: "no ID", text: "NAME=Something\n", err: "no ID in os-release: give --family"},
		{name: "empty", text: "", err: "no ID in os-release"},
		{name: "binary", text: "\x00\xff\xfe=\n", err: "no ID in os-release"},
		{name: "huge", text: "ID=" + strings.Repeat("x", 1<<20) + "\n", err: "is no family builds knows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FamilyFromOSRelease(tt.text)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				if len(err.Error()) > 300 {
					t.Fatalf("error is %d bytes long", len(err.Error()))
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// Every family's install command, as behaviour.md §3.6 has them (less the
// index refresh and system upgrade before every install, which ours only
// do when the install fails; pacman syncs every time).
func TestFamilyInstallCommand(t *testing.T) {
	pkgs := []string{"jq", "pkg@testing", "evil;reboot", "$(id)"}
	tests := []struct {
		family Family
		prefix string
		retry  string // the refresh run when the install fails ("" = none)
	}{
		{"", "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq pkg@testing 'evil;reboot' '$(id)' || ", "sudo apt-get update -q"},
		{FamilyApt, "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq ", "sudo apt-get update -q"},
		{FamilyApk, "sudo apk add --no-progress jq pkg@testing 'evil;reboot' '$(id)' || ", "sudo apk update -q"},
		{FamilyPacman, "sudo pacman -Syu --needed --noconfirm --noprogressbar jq pkg@testing 'evil;reboot' '$(id)'", ""},
		{FamilyDnf, "sudo dnf -y -q install jq ", "sudo dnf -y -q makecache --refresh"},
		{FamilyZypper, "sudo zypper --non-interactive --quiet install --no-recommends jq ", "sudo zypper --non-interactive --quiet refresh"},
		{FamilyPkg, "sudo env ASSUME_ALWAYS_YES=yes pkg install -y jq ", "sudo env ASSUME_ALWAYS_YES=yes pkg update -f"},
	}
	for _, tt := range tests {
		t.Run(string(tt.family), func(t *testing.T) {
			got := familyImage(tt.family).InstallCommand(pkgs)
			if !strings.HasPrefix(got, tt.prefix) {
				t.Fatalf("InstallCommand = %s\nwant prefix %s", got, tt.prefix)
			}
			if tt.retry != "" && !strings.Contains(got, "&& "+tt.retry+" && ") {
				t.Fatalf("no refresh %q in %s", tt.retry, got)
			}
			if tt.retry == "" && strings.Contains(got, "||") {
				t.Fatalf("unexpected retry in %s", got)
			}
			shellOK(t, got)
		})
	}
}

// A failed install is refreshed and retried with each family's own tools,
// and the log says so before the refresh (fake package managers on PATH).
func TestFamilyInstallRetry(t *testing.T) {
	tests := []struct {
		family       Family
		tool         string
		refresh      string // the tool's first argument that refreshes
		install      string // ... and that installs
		refreshWords string
	}{
		{FamilyApk, "apk", "update", "add", "apk update"},
		{FamilyDnf, "dnf", "-y", "-y", "dnf makecache"}, // dnf -y -q install / dnf -y -q makecache
		{FamilyZypper, "zypper", "--non-interactive", "--non-interactive", "zypper refresh"},
		{FamilyPkg, "pkg", "update", "install", "pkg update"},
	}
	for _, tt := range tests {
		t.Run(string(tt.family), func(t *testing.T) {
			bin := t.TempDir()
			state := filepath.Join(t.TempDir(), "refreshed")
			write := func(name, text string) {
				if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+text), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			write("sudo", `exec "$@"`+"\n")
			// installs fail until a refresh ran; a refresh is any call
			// whose arguments name makecache, refresh or update
			write(tt.tool, `case "$*" in
*makecache*|*refresh*|update*) echo "refreshed"; touch `+state+`;;
*) if [ -e `+state+` ]; then echo "installed jq"; else echo "jq: not found" >&2; exit 1; fi;;
esac
`)
			cmd := exec.Command("sh", "-c", familyImage(tt.family).InstallCommand([]string{"jq"}))
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			want := "jq: not found|Installing packages failed; refreshing the package lists (" + tt.refreshWords + ") and retrying|refreshed|installed jq"
			if got := strings.Join(strings.Split(strings.TrimSpace(string(out)), "\n"), "|"); got != want {
				t.Fatalf("output:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// Repository syntax per family (behaviour.md §3.6) and the errors for
// bad or hostile sources.
func TestFamilyAddRepoCommand(t *testing.T) {
	tests := []struct {
		name   string
		family Family
		repo   string
		source string
		want   []string
		err    string
	}{
		// Alpine: "<repo url> <key url> <key file name>"; @tag makes a tagged repository
		{name: "apk key", family: FamilyApk, repo: "sr.ht", source: "https://mirror.example/alpine/sr.ht https://mirror.example/alpine/sr.ht/alpine.rsa.pub alpine@sr.ht.rsa.pub",
			want: []string{"sudo wget -q -O /etc/apk/keys/alpine@sr.ht.rsa.pub https://mirror.example/alpine/sr.ht/alpine.rsa.pub",
				"{ printf '%s\\n' https://mirror.example/alpine/sr.ht; cat /etc/apk/repositories; }", "sudo install -m 0644 /tmp/ci-apk-repositories /etc/apk/repositories", "sudo apk update -q"}},
		{name: "apk tag", family: FamilyApk, repo: "@testing", source: "https://mirror.example/alpine/edge/testing",
			want: []string{"printf '%s\\n' '@testing https://mirror.example/alpine/edge/testing'"}},
		{name: "apk two fields", family: FamilyApk, repo: "x", source: "https://a.example/ https://a.example/k.pub", err: `want "repo-url [key-url key-file-name]"`},
		{name: "apk bad key file", family: FamilyApk, repo: "x", source: "https://a.example/ https://a.example/k.pub ../../etc/shadow", err: "key file name"},
		{name: "apk bad tag", family: FamilyApk, repo: "@", source: "https://a.example/", err: "leading @ for a tagged repository"},
		{name: "apk injection", family: FamilyApk, repo: "x", source: "https://a.example/`reboot`", err: "invalid url"},
		// Arch: "<server url>#<pgp key id>"
		{name: "pacman key", family: FamilyPacman, repo: "sr-ht", source: "https://mirror.example/archlinux/$repo/os/$arch#0xDEADBEEF",
			want: []string{"sudo pacman-key --recv-keys DEADBEEF", "sudo pacman-key --lsign-key DEADBEEF",
				`'` + "\n[sr-ht]\nServer = https://mirror.example/archlinux/$repo/os/$arch\n" + `'`, "sudo tee -a /etc/pacman.conf", "sudo pacman -Sy --noconfirm"}},
		{name: "pacman no key", family: FamilyPacman, repo: "local", source: "file:///srv/repo",
			want: []string{"Server = file:///srv/repo"}},
		{name: "pacman bad key", family: FamilyPacman, repo: "x", source: "https://a.example/#notakey", err: `invalid key id "notakey"`},
		{name: "pacman section injection", family: FamilyPacman, repo: "x]\n[options", source: "https://a.example/", err: "repository name"},
		{name: "pacman url injection", family: FamilyPacman, repo: "x", source: "https://a.example/\nXferCommand = /bin/sh", err: "invalid url"},
		// Fedora/Rocky: "<repo file url>"
		{name: "dnf", family: FamilyDnf, repo: "docker-ce", source: "https://download.example/linux/fedora/docker-ce.repo",
			want: []string{"sudo curl -fsSL -o /etc/yum.repos.d/docker-ce.repo https://download.example/linux/fedora/docker-ce.repo", "sudo dnf -y -q makecache"}},
		{name: "dnf two words", family: FamilyDnf, repo: "x", source: "https://a.example/x.repo extra", err: "want the url of a .repo file"},
		{name: "dnf path", family: FamilyDnf, repo: "../../../etc/passwd", source: "https://a.example/x.repo", err: "repository name"},
		// openSUSE
		{name: "zypper", family: FamilyZypper, repo: "devel", source: "https://download.example/repositories/devel/openSUSE_Tumbleweed/devel.repo",
			want: []string{"sudo zypper --non-interactive addrepo --refresh https://download.example/repositories/devel/openSUSE_Tumbleweed/devel.repo devel",
				"--gpg-auto-import-keys refresh devel"}},
		{name: "zypper injection", family: FamilyZypper, repo: "x", source: "https://a.example/$(reboot)", err: "want the url of a repository or .repo file"},
		// FreeBSD: builds.sr.ht's images have no add_repository: the job fails
		{name: "pkg", family: FamilyPkg, repo: "local", source: "https://pkg.example/", err: "repository local: images of the pkg package family take no repositories"},
		// every family: sizes
		{name: "huge source", family: FamilyApk, repo: "x", source: "https://a.example/" + strings.Repeat("a", 5000), err: "at most 4096"},
		{name: "huge apt source", family: FamilyApt, repo: "x", source: "https://a.example/" + strings.Repeat("a", 5000) + " s main", err: "at most 4096"},
		{name: "long name", family: FamilyDnf, repo: strings.Repeat("n", 65), source: "https://a.example/x.repo", err: "repository name"},
		{name: "empty source", family: FamilyZypper, repo: "x", source: "", err: "want the url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := familyImage(tt.family).AddRepoCommand(tt.repo, tt.source)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q\n%s", err, tt.err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			shellOK(t, got)
		})
	}
	var nr *NoRepositoriesError
	if _, err := familyImage(FamilyPkg).AddRepoCommand("x", "y"); !errors.As(err, &nr) || nr.Family != FamilyPkg {
		t.Fatalf("pkg: %v is no NoRepositoriesError", err)
	}
}

func TestMetadataFamilyFirmware(t *testing.T) {
	good := Metadata{Name: "ubuntu/noble", Arch: "amd64", Disk: "disk.qcow2", ReadyMarker: ReadyMarker, User: "build",
		Family: FamilyApt, Firmware: FirmwareBIOS}
	tests := []struct {
		name   string
		modify func(*Metadata)
		err    string
	}{
		{name: "bios, no kernel", modify: func(*Metadata) {}},
		{name: "uefi", modify: func(m *Metadata) { m.Firmware = FirmwareUEFI; m.Family = FamilyDnf }},
		{name: "no family is apt", modify: func(m *Metadata) { m.Family = "" }},
		{name: "no firmware needs a kernel", modify: func(m *Metadata) { m.Firmware = "" }, err: "kernel is empty"},
		{name: "bad firmware", modify: func(m *Metadata) { m.Firmware = "coreboot" }, err: `firmware "coreboot": want bios or uefi`},
		{name: "bad family", modify: func(m *Metadata) { m.Family = "yum" }, err: `unknown package family "yum"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := good
			tt.modify(&m)
			err := m.Validate()
			if (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Validate = %v, want %q", err, tt.err)
			}
		})
	}
	img := &Image{Dir: "/x", Meta: good}
	if img.Kernel() != "" {
		t.Fatalf("Kernel() = %q for a firmware image", img.Kernel())
	}
	img.Meta.Kernel = "vmlinux"
	if img.Kernel() != "/x/vmlinux" {
		t.Fatalf("Kernel() = %q", img.Kernel())
	}
}
