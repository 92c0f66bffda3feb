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
mkdir -p "$R/etc/systemd/system/sysinit.target.wants"
for u in ci-net ci-fwcfg-keys; do
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
	--include-modules=virtio_pci,virtio_mmio,virtio_blk,virtio_net,virtio_rng,qemu_fw_cfg "$KVER"
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
