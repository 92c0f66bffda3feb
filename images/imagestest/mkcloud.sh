#!/bin/sh
# mkcloud.sh OUT.qcow2 ARCHIVE-URL SECURITY-URL|none [CA-FILE...]
#
# Makes a cloud image the way distributions make theirs (Debian's
# genericcloud, Ubuntu's cloudimg): a partitioned disk (MBR, one ext4
# partition at 1 MiB), GRUB in the MBR gap, the stock kernel and
# initramfs-tools' initrd, Debian's cloud-init package reading NoCloud
# seeds, growpart, ifupdown, openssh-server and sudo. Nothing of builds is
# in it: no build user, no host key, no fw_cfg hook, no ready marker;
# `builds image import-cloud` has to add all of that through its seed.
# build-essential is in it (Ubuntu's and Fedora's cloud images have no
# compiler either, but installing gcc under TCG would take most of the
# test's time; the import still installs git, bash and the rest).
# CA-FILEs (a site's intercepting proxy) go into the trust store.
# Needs root (mmdebstrap into a directory, chroot for grub-mkimage), no
# loop devices and no mounts.
set -eu
out=$1 archive=$2 security=$3
shift 3
work=$(mktemp -d "${out%/*}/.mkcloud.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/tree
suites="deb $archive bookworm main
deb $archive bookworm-updates main"
[ "$security" = none ] || suites="$suites
deb $security bookworm-security main"

mmdebstrap --variant=minbase --mode=root --format=directory \
	--include=linux-image-cloud-amd64,initramfs-tools,grub-pc-bin,systemd-sysv,udev,kmod,cloud-init,cloud-guest-utils,openssh-server,sudo,ifupdown,iproute2,netbase,ca-certificates,e2fsprogs,build-essential,less \
	--customize-hook='echo "/dev/vda1 / ext4 rw,discard,errors=remount-ro 0 1" >"$1/etc/fstab"' \
	--customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
	bookworm "$tree" - <<EOF
$suites
EOF

for ca in "$@"; do
	cp "$ca" "$tree/usr/local/share/ca-certificates/$(basename "$ca" .crt).crt"
done
[ $# -eq 0 ] || chroot "$tree" update-ca-certificates >/dev/null
# a distribution's image ships without a machine id: each boot makes one
: >"$tree/etc/machine-id"
echo localhost >"$tree/etc/hostname"

kernel=$(cd "$tree/boot" && ls vmlinuz-* | head -n1)
initrd=initrd.img-${kernel#vmlinuz-}
[ -f "$tree/boot/$initrd" ] || { echo "mkcloud: no $initrd in the tree" >&2; exit 1; }
mkdir -p "$tree/boot/grub"
cp -r "$tree/usr/lib/grub/i386-pc" "$tree/boot/grub/"
cat >"$tree/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set default=0
set timeout=0
menuentry "Debian GNU/Linux (cloud)" {
	linux /boot/$kernel root=/dev/vda1 ro console=tty0 console=ttyS0,115200
	initrd /boot/$initrd
}
EOF

# the disk: 3 GiB, MBR, partition 1 from sector 2048 to the end, bootable
raw=$work/disk.raw
truncate -s 3G "$raw"
echo 'start=2048, type=83, bootable' | sfdisk -q "$raw"
psize=$(( $(stat -c %s "$raw") / 1024 - 1024 ))
mkfs.ext4 -q -F -L cloudimg-rootfs -E offset=1048576,nodiscard -d "$tree" "$raw" "${psize}k"

# GRUB: boot.img's code in the MBR (the partition table stays), core.img
# (reading ext2 on msdos partition 1) in the gap before it
chroot "$tree" grub-mkimage -O i386-pc -o /core.img -p '(hd0,msdos1)/boot/grub' \
	biosdisk part_msdos ext2 normal linux configfile serial terminal echo test
dd if="$tree/usr/lib/grub/i386-pc/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$tree/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none
[ "$(stat -c %s "$tree/core.img")" -lt $((2047 * 512)) ] || { echo "mkcloud: core.img does not fit" >&2; exit 1; }

qemu-img convert -c -f raw -O qcow2 "$raw" "$out.tmp"
mv "$out.tmp" "$out"
