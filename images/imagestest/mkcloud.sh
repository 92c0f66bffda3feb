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
# OUT-uefi.qcow2 is the same system on a UEFI-only disk: GPT with an EFI
# system partition (FAT, GRUB as EFI/BOOT/BOOTX64.EFI) and the ext4 root,
# no BIOS boot partition.
# Needs root (mmdebstrap into a directory, chroot for grub-mkimage), no
# loop devices and no mounts; mkfs.vfat and mcopy for the ESP.
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
	--include=linux-image-cloud-amd64,initramfs-tools,grub-pc-bin,grub-efi-amd64-bin,systemd-sysv,udev,kmod,cloud-init,cloud-guest-utils,openssh-server,sudo,ifupdown,iproute2,netbase,ca-certificates,e2fsprogs,build-essential,less \
	--customize-hook='echo "LABEL=cloudimg-rootfs / ext4 rw,discard,errors=remount-ro 0 1" >"$1/etc/fstab"' \
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
# no_timer_check, as Fedora's cloud images pass: under TCG on a loaded
# host the kernel's IO-APIC timer check can fail and panic
cat >"$tree/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set default=0
set timeout=0
menuentry "Debian GNU/Linux (cloud)" {
	linux /boot/$kernel root=LABEL=cloudimg-rootfs ro no_timer_check console=tty0 console=ttyS0,115200
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
rm -f "$raw"

# UEFI: GPT, the ESP (64 MiB at 1 MiB) holding GRUB as the removable-media
# loader EFI/BOOT/BOOTX64.EFI, which finds the root by its label; the root
# from 65 MiB to the end
uefi=$work/uefi.raw
truncate -s 3G "$uefi"
printf 'label: gpt\nstart=2048, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=133120, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' | sfdisk -q "$uefi"
usize=$(( $(stat -c %s "$uefi") / 1024 - 66560 - 1024 ))
mkfs.ext4 -q -F -L cloudimg-rootfs -E offset=$((133120 * 512)),nodiscard -d "$tree" "$uefi" "${usize}k"
printf 'search --no-floppy --label cloudimg-rootfs --set=root\nset prefix=($root)/boot/grub\n' >"$work/early.cfg"
cp "$work/early.cfg" "$tree/early.cfg"
chroot "$tree" grub-mkimage -O x86_64-efi -o /bootx64.efi -c /early.cfg -p /boot/grub \
	part_gpt ext2 fat search search_label normal linux configfile serial terminal echo test efi_gop
esp=$work/esp.img
mkfs.vfat -C -n ESP "$esp" 65536 >/dev/null
mmd -i "$esp" ::/EFI ::/EFI/BOOT
mcopy -i "$esp" "$tree/bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
dd if="$esp" of="$uefi" bs=512 seek=2048 conv=notrunc status=none
qemu-img convert -c -f raw -O qcow2 "$uefi" "${out%.qcow2}-uefi.qcow2.tmp"
mv "${out%.qcow2}-uefi.qcow2.tmp" "${out%.qcow2}-uefi.qcow2"
mv "$out.tmp" "$out"
