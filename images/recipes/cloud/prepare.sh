#!/bin/sh
# prepare.sh [FAMILY]
#
# Run once, as root, by cloud-init in the one preparing boot of an imported
# cloud image (builds image import-cloud; images/cloudseed.go writes the
# seed that runs it). It makes the image keep builds' guest contract
# (images/README.md) on every later boot, without cloud-init: bash, git,
# sudo and the family's basics installed (and the package lists kept, so
# jobs install without a refresh); the per-job SSH key read from QEMU's
# fw_cfg at boot; the resume control channel agent (ci-ctl, compiled here
# from the seed's ci-ctl.c) when a C compiler is there; the ready marker on
# the serial console once sshd accepts logins; cloud-init disabled. The
# user, host key and static network come from the seed's user-data and
# network-config. FAMILY (apt apk pacman dnf zypper pkg) is guessed from
# the package manager when empty. The console gets CI-OS-RELEASE (base64
# of /etc/os-release) and "CI-PREPARED family=F control=yes|no kernel=K"
# at the end, or CI-PREPARE-FAILED and the reason.
set -eu
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
con=/dev/ttyS0
[ -w "$con" ] || con=/dev/console
say() { echo "ci-prepare: $*"; echo "ci-prepare: $*" >"$con" 2>/dev/null || true; }
fail() { say "$*"; echo "CI-PREPARE-FAILED $*" >"$con" 2>/dev/null || true; exit 1; }
trap 'echo "CI-PREPARE-FAILED exit $?" >"$con" 2>/dev/null || true' EXIT

fam=${1:-}
if [ -z "$fam" ]; then
	for pm in apt-get:apt apk:apk pacman:pacman dnf:dnf zypper:zypper pkg:pkg; do
		if command -v "${pm%%:*}" >/dev/null 2>&1; then fam=${pm#*:}; break; fi
	done
fi
[ -n "$fam" ] || fail "no package manager found (apt-get apk pacman dnf zypper pkg)"
say "family $fam"

## packages ---------------------------------------------------------------------
case $fam in
apt)
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends bash git sudo curl ca-certificates openssh-server build-essential
	;;
apk) apk add --no-progress -U bash git sudo curl ca-certificates openssh build-base ;;
pacman) pacman -Syu --needed --noconfirm --noprogressbar bash git sudo curl ca-certificates openssh base-devel ;;
dnf) dnf -y install bash git sudo curl ca-certificates openssh-server gcc make ;;
zypper) zypper --non-interactive install --no-recommends bash git sudo curl ca-certificates openssh gcc make ;;
pkg) fail "FreeBSD guests cannot read the per-job SSH key from QEMU's fw_cfg: not supported yet" ;;
*) fail "unknown package family $fam" ;;
esac

## per-job SSH key: the runner passes it with
## -fw_cfg name=opt/ci/authorized_keys,file=KEY; it replaces the image's key
mkdir -p /usr/local/sbin /etc/ssh/sshd_config.d /etc/sudoers.d
cat >/usr/local/sbin/ci-fwcfg-keys <<'EOS'
#!/bin/sh
# Per-job SSH key from QEMU fw_cfg (builds' guest contract).
k=/sys/firmware/qemu_fw_cfg/by_name/opt/ci/authorized_keys/raw
[ -e "$k" ] || modprobe -q qemu_fw_cfg 2>/dev/null || true
if [ -r "$k" ]; then
	install -m 0644 "$k" /run/ci-authorized_keys
	: >/home/build/.ssh/authorized_keys
fi
exit 0
EOS
## ready marker: once sshd listens on port 22 (0x0016, state 0A) and the
## static address is up
cat >/usr/local/sbin/ci-ready <<'EOS'
#!/bin/sh
# Prints CI-SSH-READY on the serial console once sshd accepts connections.
i=0
until grep -qs '^ *[0-9]*: [0-9A-F]*:0016 [0-9A-F]*:0000 0A' /proc/net/tcp /proc/net/tcp6 &&
	grep -qs '10\.0\.2\.15' /proc/net/fib_trie; do
	i=$((i + 1))
	[ $i -lt 1200 ] || break
	sleep 0.05
done
c=/dev/ttyS0
[ -w $c ] || c=/dev/console
echo CI-SSH-READY >$c
EOS
chmod 0755 /usr/local/sbin/ci-fwcfg-keys /usr/local/sbin/ci-ready
cat >/etc/ssh/sshd_config.d/50-builds.conf <<'EOS'
HostKey /etc/ssh/ssh_host_ed25519_key
AuthorizedKeysFile .ssh/authorized_keys /run/ci-authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
EOS
grep -qs '^Include /etc/ssh/sshd_config.d' /etc/ssh/sshd_config ||
	sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config
if [ -d /etc/modules-load.d ]; then printf 'qemu_fw_cfg\nvirtio_console\n' >/etc/modules-load.d/builds.conf; fi

## resume control channel agent (runner/vm_resume.go): without a compiler
## the image works, but jobs always boot it instead of resuming a snapshot
control=no
here=$(dirname "$0")
if command -v cc >/dev/null 2>&1 && [ -r "$here/ci-ctl.c" ] &&
	cc -O2 -o /usr/local/sbin/ci-ctl "$here/ci-ctl.c"; then
	control=yes
else
	say "no control channel agent (no C compiler or it failed): jobs will boot, never resume"
fi

## services ---------------------------------------------------------------------
if [ -d /run/systemd/system ]; then
	cat >/etc/systemd/system/ci-fwcfg-keys.service <<'EOS'
[Unit]
Description=Per-job SSH key from QEMU fw_cfg
DefaultDependencies=no
Before=ssh.service sshd.service ssh.socket sshd.socket
After=local-fs.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/ci-fwcfg-keys
[Install]
WantedBy=sysinit.target
EOS
	cat >/etc/systemd/system/ci-ready.service <<'EOS'
[Unit]
Description=Tell builds that sshd accepts logins
After=ci-fwcfg-keys.service ssh.service sshd.service ssh.socket sshd.socket network.target systemd-user-sessions.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/ci-ready
[Install]
WantedBy=multi-user.target
EOS
	units="ci-fwcfg-keys.service ci-ready.service"
	if [ $control = yes ]; then
		cat >/etc/systemd/system/ci-ctl.service <<'EOS'
[Unit]
Description=Resume control channel (per-job identity after a snapshot resume)
DefaultDependencies=no
After=ci-fwcfg-keys.service
[Service]
ExecStart=/usr/local/sbin/ci-ctl
Restart=always
[Install]
WantedBy=sysinit.target
EOS
		units="$units ci-ctl.service"
	fi
	systemctl enable $units
	for u in ssh.service sshd.service; do
		if systemctl cat "$u" >/dev/null 2>&1; then systemctl enable "$u" || true; fi
	done
	# nothing may wait for a network that never answers DHCP
	systemctl mask systemd-networkd-wait-online.service NetworkManager-wait-online.service 2>/dev/null || true
	# each boot gets a machine id of its own
	: >/etc/machine-id
elif command -v rc-update >/dev/null 2>&1; then
	cat >/etc/init.d/ci-builds <<'EOS'
#!/sbin/openrc-run
description="builds guest contract: per-job SSH key, ready marker"
depend() { need sshd; after net; }
start_pre() { /usr/local/sbin/ci-fwcfg-keys; }
start() {
	[ -x /usr/local/sbin/ci-ctl ] && start-stop-daemon -S -b -x /usr/local/sbin/ci-ctl
	/usr/local/sbin/ci-ready &
}
EOS
	chmod 0755 /etc/init.d/ci-builds
	rc-update add sshd default
	rc-update add ci-builds default
else
	fail "no systemd and no OpenRC: cannot start the guest contract's services"
fi

## the build user (made by cloud-init from the seed) ----------------------------
# "*": no password, but not locked, so sshd accepts keys even without PAM
usermod -p '*' build 2>/dev/null || sed -i 's/^build:[^:]*:/build:*:/' /etc/shadow
bash=$(command -v bash) || fail "bash is not installed"
usermod -s "$bash" build 2>/dev/null || sed -i "s|^\(build:.*:\)[^:]*\$|\1$bash|" /etc/passwd
printf 'build ALL=(ALL) NOPASSWD: ALL\nDefaults:build !requiretty\n' >/etc/sudoers.d/builds
chmod 0440 /etc/sudoers.d/builds
cat >/home/build/.gitconfig <<'EOS'
[user]
	name = builds.sr.ht
	email = builds@sr.ht
[init]
	defaultBranch = master
EOS
chown build:build /home/build/.gitconfig
echo build >/etc/hostname
# sudo looks the host name up: without a hosts entry every sudo warns
grep -qs '^[^#]*[[:space:]]build\([[:space:]]\|$\)' /etc/hosts || printf '127.0.1.1\tbuild\n' >>/etc/hosts

## no cloud-init on later boots; its rendered network config stays ---------------
mkdir -p /etc/cloud
touch /etc/cloud/cloud-init.disabled
trap - EXIT
echo "CI-OS-RELEASE $(base64 -w0 /etc/os-release 2>/dev/null || base64 /etc/os-release | tr -d '\n')" >"$con"
sync
echo "CI-PREPARED family=$fam control=$control kernel=$(uname -r)" >"$con"
say "done"
