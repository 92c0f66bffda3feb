#!/bin/sh
# customize.sh ROOT PUBKEY [EXTRA_CA_DIR]
#
# mmdebstrap customize hook: turns a fresh minbase tree into a CI guest that
# boots fast under TCG (the measurements behind each choice are in
# images.md §2-3). Runs on the host as root; commands that must run inside
# the tree go through chroot. Guest contract: user "build" (uid 1000) with
# passwordless sudo, home /home/build, bash, git, ~/.gitconfig, key-only SSH,
# "CI-SSH-READY" on the serial console once sshd accepts logins, apt lists
# baked in.
set -eu
R=$1
PUB=$2
CA=${3:-}
KVER=$(ls "$R/lib/modules" | sort -V | tail -n 1)

in_root() { chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# put MODE PATH: write stdin to PATH inside the tree
put() { mkdir -p "$(dirname "$R$2")"; cat >"$R$2"; chmod "$1" "$R$2"; }
mask() { for u in "$@"; do ln -sf /dev/null "$R/etc/systemd/system/$u"; done; }

echo "customize: kernel $KVER"

## identity, time, fstab, apt behaviour ----------------------------------------
echo build >"$R/etc/hostname"
put 0644 /etc/hosts <<'EOF'
127.0.0.1	localhost
127.0.1.1	build
::1		localhost ip6-localhost ip6-loopback
EOF
# The kernel mounts root read-write (root=/dev/vda rw); every job writes to
# its own throw-away overlay, so no fsck and no remount.
echo '/dev/vda / ext4 rw,noatime 0 0' >"$R/etc/fstab"
ln -sf /usr/share/zoneinfo/Etc/UTC "$R/etc/localtime"
echo Etc/UTC >"$R/etc/timezone"
put 0644 /etc/apt/apt.conf.d/60builds <<'EOF'
APT::Install-Recommends "false";
Acquire::Languages "none";
EOF

## network: QEMU user networking is always 10.0.2.15/24 via 10.0.2.2 with DNS
## on 10.0.2.3. A static oneshot is 4 s faster than networkd under TCG; the
## NIC keeps its kernel name (eth0) on every machine type.
mkdir -p "$R/etc/systemd/network"
ln -sf /dev/null "$R/etc/systemd/network/99-default.link"
rm -f "$R/etc/resolv.conf"
echo 'nameserver 10.0.2.3' >"$R/etc/resolv.conf"
put 0755 /usr/local/sbin/ci-net <<'EOF'
#!/bin/sh
# Static address for QEMU user networking.
for d in /sys/class/net/e*; do nic=${d##*/}; break; done
ip -batch - <<EON
link set lo up
link set $nic up
address add 10.0.2.15/24 dev $nic
route add default via 10.0.2.2
EON
EOF
put 0644 /etc/systemd/system/ci-net.service <<'EOF'
[Unit]
Description=Static network for QEMU user networking
DefaultDependencies=no
Before=network.target ssh.service
Wants=network.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/ci-net
[Install]
WantedBy=sysinit.target
EOF

## per-job SSH key: QEMU -fw_cfg name=opt/ci/authorized_keys,file=KEY.pub.
## When present it replaces the key baked into the image.
put 0755 /usr/local/sbin/ci-fwcfg-keys <<'EOF'
#!/bin/sh
k=/sys/firmware/qemu_fw_cfg/by_name/opt/ci/authorized_keys/raw
[ -e "$k" ] || modprobe -q qemu_fw_cfg 2>/dev/null || true
if [ -r "$k" ]; then
	install -m 0644 "$k" /run/ci-authorized_keys
	: >/home/build/.ssh/authorized_keys
fi
exit 0
EOF
put 0644 /etc/systemd/system/ci-fwcfg-keys.service <<'EOF'
[Unit]
Description=Per-job SSH key from QEMU fw_cfg
DefaultDependencies=no
Before=ssh.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/ci-fwcfg-keys
[Install]
WantedBy=sysinit.target
EOF
## resume control channel: a VM resumed from a snapshot (runner/snapshot.go)
## is every job's copy of one boot, so the runner gives it its own identity
## over virtio-serial port org.builds.ctl: the per-job SSH key, the host's
## clock, fresh entropy (reseeding the kernel's CRNG) and a machine id;
## stale SSH sessions of the snapshot's own boot are killed. Lines are
## "<command> <base64 argument>"; "done" is answered "ok". In a cold boot
## the channel stays idle. CI-CTL-READY on the console says it listens.
## The agent is C (ci-ctl.c), so a resume costs no fork or exec.
mkdir -p "$R/usr/local/src"
put 0644 /usr/local/src/ci-ctl.c <<'EOF'
/* ci-ctl: the resume control channel agent (see customize.sh). One C
 * program, no fork or exec per command: under TCG every exec costs tens
 * of milliseconds, and a resumed job waits for this. */
#include <dirent.h>
#include <fcntl.h>
#include <linux/random.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "org.builds.ctl"

static int b64val(int c) {
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* b64dec decodes in into out (at most max bytes); returns the length. */
static int b64dec(const char *in, unsigned char *out, int max) {
	int n = 0, bits = 0, acc = 0;
	for (; *in && *in != '='; in++) {
		int v = b64val((unsigned char)*in);
		if (v < 0) continue;
		acc = (acc << 6) | v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n < max) out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return n;
}

static int find_port(char *dev, size_t size) {
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *e;
	int found = 0;
	if (!d) return 0;
	while (!found && (e = readdir(d))) {
		char path[512], name[64] = "";
		FILE *f;
		if (e->d_name[0] == '.') continue;
		snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
		if (!(f = fopen(path, "r"))) continue;
		if (fgets(name, sizeof name, f) && strncmp(name, PORT_NAME, strlen(PORT_NAME)) == 0) {
			snprintf(dev, size, "/dev/%s", e->d_name);
			found = 1;
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

/* put replaces path with data through a temporary file and a rename. */
static void put(const char *path, const unsigned char *data, int n, mode_t mode) {
	char tmp[512];
	int fd;
	snprintf(tmp, sizeof tmp, "%s.ci-ctl", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode)) < 0) return;
	if (write(fd, data, n) == n && fchmod(fd, mode) == 0 && close(fd) == 0)
		rename(tmp, path);
	else
		close(fd), unlink(tmp);
}

static void set_time(const char *s) {
	struct timespec ts = {0, 0};
	char *dot;
	ts.tv_sec = strtoll(s, &dot, 10);
	if (*dot == '.') ts.tv_nsec = strtol(dot + 1, NULL, 10);
	clock_settime(CLOCK_REALTIME, &ts);
}

/* reseed credits buf to the entropy pool and reseeds the CRNG at once. */
static void reseed(const unsigned char *buf, int n) {
	struct { struct rand_pool_info info; unsigned char buf[256]; } e;
	int fd = open("/dev/urandom", O_WRONLY);
	if (fd < 0 || n <= 0) return;
	if (n > (int)sizeof e.buf) n = sizeof e.buf;
	memcpy(e.buf, buf, n);
	e.info.entropy_count = n * 8;
	e.info.buf_size = n;
	ioctl(fd, RNDADDENTROPY, &e);
	ioctl(fd, RNDRESEEDCRNG);
	close(fd);
}

/* kill_sessions ends the SSH sessions of the saved boot (their peer is
 * gone); the listening sshd is left alone. */
static void kill_sessions(void) {
	DIR *d = opendir("/proc");
	struct dirent *e;
	if (!d) return;
	while ((e = readdir(d))) {
		char path[300], cmd[64] = "";
		int fd, n;
		if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
		snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
		if ((fd = open(path, O_RDONLY)) < 0) continue;
		n = read(fd, cmd, sizeof cmd - 1);
		close(fd);
		if (n > 0 && strncmp(cmd, "sshd: build", 11) == 0)
			kill(atoi(e->d_name), SIGKILL);
	}
	closedir(d);
}

static void command(int port, char *line) {
	unsigned char arg[4096];
	char *sp = strchr(line, ' ');
	int n = 0;
	if (sp) *sp = 0, n = b64dec(sp + 1, arg, sizeof arg - 1);
	arg[n] = 0;
	if (!strcmp(line, "key")) {
		int fd;
		put("/run/ci-authorized_keys", arg, n, 0644);
		if ((fd = open("/home/build/.ssh/authorized_keys", O_WRONLY | O_TRUNC)) >= 0) close(fd);
	} else if (!strcmp(line, "time")) {
		set_time((char *)arg);
	} else if (!strcmp(line, "seed")) {
		reseed(arg, n);
	} else if (!strcmp(line, "id")) {
		put("/etc/machine-id", arg, n, 0444);
	} else if (!strcmp(line, "kill")) {
		kill_sessions();
	} else if (!strcmp(line, "done")) {
		if (write(port, "ok\n", 3) != 3) perror("ci-ctl: answer");
	}
}

int main(void) {
	char dev[300], buf[16384];
	int port, len = 0;
	FILE *con;
	while (!find_port(dev, sizeof dev)) usleep(200000);
	while ((port = open(dev, O_RDWR)) < 0) usleep(200000);
	if ((con = fopen("/dev/console", "w"))) fputs("CI-CTL-READY\n", con), fclose(con);
	for (;;) {
		char *nl;
		/* a read ends at once while no host is connected: wait, retry */
		int n = read(port, buf + len, sizeof buf - 1 - len);
		if (n <= 0) { usleep(100000); continue; }
		len += n;
		buf[len] = 0;
		while ((nl = strchr(buf, '\n'))) {
			*nl = 0;
			command(port, buf);
			len -= nl + 1 - buf;
			memmove(buf, nl + 1, len + 1);
		}
		if (len >= (int)sizeof buf - 1) len = 0; /* a line too long: drop it */
	}
}
EOF
in_root gcc -O2 -Wall -o /usr/local/sbin/ci-ctl /usr/local/src/ci-ctl.c
put 0644 /etc/systemd/system/ci-ctl.service <<'EOF'
[Unit]
Description=Resume control channel (per-job identity after a snapshot resume)
DefaultDependencies=no
After=ci-fwcfg-keys.service
[Service]
ExecStart=/usr/local/sbin/ci-ctl
Restart=always
[Install]
WantedBy=sysinit.target
EOF

mkdir -p "$R/etc/systemd/system/sysinit.target.wants"
for u in ci-net ci-fwcfg-keys ci-ctl; do
	ln -sf "/etc/systemd/system/$u.service" "$R/etc/systemd/system/sysinit.target.wants/$u.service"
done

## the build user ---------------------------------------------------------------
in_root useradd --create-home --uid 1000 --shell /bin/bash --groups sudo build
# "*": no password, but not locked, so sshd accepts keys even without PAM
in_root usermod --password '*' build
put 0440 /etc/sudoers.d/build <<'EOF'
build ALL=(ALL) NOPASSWD: ALL
Defaults:build !requiretty
EOF
install -d -m 0700 "$R/home/build/.ssh"
install -m 0600 "$PUB" "$R/home/build/.ssh/authorized_keys"
# the identity builds.sr.ht's images commit with (behaviour.md §3.4)
put 0644 /home/build/.gitconfig <<'EOF'
[user]
	name = builds.sr.ht
	email = builds@sr.ht
[init]
	defaultBranch = master
EOF
in_root chown -R build:build /home/build

## sshd: one host key, one KEX, no PAM: 0.55 s per new connection under TCG
## instead of 0.95 s. Started early (sysinit, no basic.target ordering),
## without "sshd -t", and without /run/nologin, which would refuse logins
## until the whole boot finished. It stays ordered after the network and the
## per-job key (Debian's unit adds After=network.target, which a drop-in
## cannot remove), so the marker means logins work.
rm -f "$R"/etc/ssh/ssh_host_rsa_key* "$R"/etc/ssh/ssh_host_ecdsa_key* "$R"/etc/ssh/ssh_host_dsa_key*
put 0644 /etc/ssh/sshd_config.d/builds.conf <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
PrintMotd no
PrintLastLog no
AuthorizedKeysFile .ssh/authorized_keys /run/ci-authorized_keys
EOF
put 0644 /etc/systemd/system/ssh.service.d/builds.conf <<'EOF'
[Unit]
DefaultDependencies=no
After=systemd-journald.socket ci-net.service ci-fwcfg-keys.service
Before=shutdown.target
Conflicts=shutdown.target
[Service]
ExecStartPre=
ExecStartPost=/bin/sh -c 'echo CI-SSH-READY >/dev/console'
EOF
ln -sf /lib/systemd/system/ssh.service "$R/etc/systemd/system/sysinit.target.wants/ssh.service"
ln -sf /dev/null "$R/etc/tmpfiles.d/systemd-nologin.conf"

## trimmed systemd: every unit costs 0.1-1 s under TCG (masking units a
## release does not have is harmless; the later names are trixie's). /tmp
## stays on the job's disk rather than a RAM-sized tmpfs. Coldplug
## (systemd-udev-trigger) is masked: the initrd already loaded the virtio
## drivers; udevd still handles hot-plug. A job that needs coldplug runs
## "sudo udevadm trigger && sudo udevadm settle".
mask systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service \
	getty-static.service getty@tty1.service serial-getty@ttyS0.service \
	dev-hugepages.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
	sys-fs-fuse-connections.mount sys-kernel-config.mount kmod-static-nodes.service \
	systemd-modules-load.service modprobe@configfs.service modprobe@dm_mod.service \
	modprobe@efi_pstore.service modprobe@fuse.service modprobe@loop.service \
	modprobe@drm.service systemd-network-generator.service systemd-pstore.service \
	systemd-random-seed.service systemd-update-utmp.service \
	systemd-update-utmp-runlevel.service systemd-journal-flush.service \
	systemd-sysusers.service systemd-remount-fs.service systemd-firstboot.service \
	systemd-machine-id-commit.service systemd-binfmt.service \
	proc-sys-fs-binfmt_misc.automount systemd-hwdb-update.service \
	systemd-journal-catalog-update.service ldconfig.service systemd-tmpfiles-clean.timer \
	systemd-ask-password-console.path systemd-ask-password-wall.path \
	systemd-rfkill.socket apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
	e2scrub_reap.service fstrim.timer dpkg-db-backup.timer \
	systemd-udev-trigger.service \
	systemd-udev-load-credentials.service systemd-tpm2-setup-early.service \
	systemd-tpm2-setup.service systemd-pcrphase.service systemd-pcrphase-sysinit.service \
	systemd-confext.service systemd-sysext.service systemd-boot-random-seed.service \
	ssh.socket sshd-keygen.service \
	tmp.mount run-lock.mount systemd-tmpfiles-setup-dev-early.service systemd-update-done.service
# Installed as on builds.sr.ht, but kept out of the boot path: the guest
# clock comes from the host at boot and a job is short, so timesyncd is
# disabled (not masked: "sudo systemctl start systemd-timesyncd" works),
# and dbus starts on the first connection to its socket, not at boot.
rm -f "$R"/etc/systemd/system/*.wants/systemd-timesyncd.service "$R"/etc/systemd/system/dbus-org.freedesktop.timesync1.service
rm -f "$R"/etc/systemd/system/*.wants/dbus.service
mkdir -p "$R/etc/systemd/system-generators"
for g in cryptsetup debug getty gpt-auto hibernate-resume integritysetup rc-local run \
	system-update sysv veritysetup ssh tpm2 factory-reset import bless-boot; do
	ln -sf /dev/null "$R/etc/systemd/system-generators/systemd-$g-generator"
done
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$R/etc/systemd/journald.conf.d/builds.conf"
# KVM modules self-test at load and are useless in a TCG guest
printf 'blacklist kvm\nblacklist kvm_amd\nblacklist kvm_intel\n' >"$R/etc/modprobe.d/builds.conf"

## alternative PID 1 for boot mode "ciinit" (init=/usr/local/sbin/ci-init):
## about 1.5 s faster, but no systemd services in the job.
put 0755 /usr/local/sbin/ci-init <<'EOF'
#!/bin/sh
# Minimal PID 1: API filesystems, network, per-job key, sshd, then reap.
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o mode=0755,nosuid devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
mkdir -p /run/sshd /run/lock
chmod 1777 /run/lock
echo build >/proc/sys/kernel/hostname
ci-net
ci-fwcfg-keys
/usr/local/sbin/ci-ctl &
/usr/sbin/sshd -D -e &
# port 22 (0x0016) in LISTEN state appears in /proc/net/tcp
until grep -q '^ *[0-9]*: 00000000:0016 ' /proc/net/tcp; do sleep 0.05; done
echo CI-SSH-READY
trap 'sync; echo o >/proc/sysrq-trigger' TERM USR2
while :; do sleep 3600 & wait $!; done
EOF

## tiny initramfs: a static init that loads the virtio (and fw_cfg) modules
## and mounts root. 155 KiB, 0.25 s, instead of initramfs-tools' udev-based
## 15 MB initrd (3-4 s under TCG), which stays in /boot as the fallback.
in_root mktirfs -o /boot/initrd.tiny -m no -M no \
	--include-modules=virtio_pci,virtio_mmio,virtio_blk,virtio_net,virtio_rng,virtio_console,qemu_fw_cfg "$KVER"
chmod 0644 "$R/boot/initrd.tiny"

## smaller tree: no docs, man pages or translations (also for later installs)
put 0644 /etc/dpkg/dpkg.cfg.d/01-builds-nodoc <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
find "$R/usr/share/doc" -mindepth 2 ! -name copyright -type f -delete 2>/dev/null || true
rm -rf "$R"/usr/share/man/* "$R"/usr/share/info/*
find "$R/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

## extra CA certificates ([images] extra-ca), e.g. for an intercepting proxy
if [ -n "$CA" ]; then
	for c in "$CA"/*.crt; do
		[ -e "$c" ] || continue
		install -m 0644 "$c" "$R/usr/local/share/ca-certificates/"
		echo "customize: extra CA ${c##*/}"
	done
	in_root update-ca-certificates >/dev/null
fi

## apt: keep the lists mmdebstrap downloaded (--skip=cleanup/apt) and a fresh
## package cache, so jobs install without an in-guest "apt-get update"
## (18-33 s under TCG); drop the downloaded .debs.
rm -f "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/archives/partial/*
in_root apt-cache gencaches >/dev/null
echo "customize: done"
