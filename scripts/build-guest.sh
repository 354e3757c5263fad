#!/usr/bin/env bash
# Builds the demo/test guest with no download: the kernel from Debian's
# linux-image-cloud-amd64 and a busybox-static initramfs whose init prints a
# marker on the serial console and then idles.
#
#   scripts/build-guest.sh OUTDIR
#
# Produces in OUTDIR:
#   vmlinuz           the host's cloud kernel (copied)
#   initrd.gz         init prints "DROVER-GUEST-READY", then a counter line
#                     "DROVER-TICK <n>" every second; powers off on the ACPI
#                     power button (so graceful stop works)
#   initrd-poweroff.gz  same marker, then the guest powers itself off after
#                     about 1 s (for restart-policy tests)
#   initrd-ignore-acpi.gz  like initrd.gz but ignores the power button (for
#                     stop-timeout tests)
set -euo pipefail
out=${1:?usage: build-guest.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$kernel" ] || { echo "build-guest: no /boot/vmlinuz-*-cloud-amd64; install linux-image-cloud-amd64" >&2; exit 1; }
kver=${kernel#/boot/vmlinuz-}
busybox=/bin/busybox  # from busybox-static: the guest has no libc
[ -x "$busybox" ] || { echo "build-guest: $busybox is missing; install busybox-static" >&2; exit 1; }

cp "$kernel" "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"

build_initrd() { # name mode
  local name=$1 mode=$2 root
  root=$(mktemp -d)
  trap 'rm -rf "$root"' RETURN
  mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,etc/acpi/PWRF,lib/modules,var/log,var/run}
  cp "$busybox" "$root/bin/busybox"
  for m in kernel/drivers/input/evdev.ko kernel/drivers/acpi/button.ko; do
    [ -f "/lib/modules/$kver/$m" ] && cp "/lib/modules/$kver/$m" "$root/lib/modules/"
  done
  printf '#!/bin/busybox sh\n/bin/busybox poweroff -f\n' > "$root/etc/acpi/PWRF/00000080"
  chmod +x "$root/etc/acpi/PWRF/00000080"
  cat > "$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
MODE=$mode
if [ "\$MODE" != ignore-acpi ]; then
  for m in /lib/modules/*.ko; do insmod "\$m" 2>/dev/null; done
  acpid -c /etc/acpi -l /dev/null 2>/dev/null
fi
echo "DROVER-GUEST-READY \$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
if [ "\$MODE" = poweroff ]; then sleep 1; echo "DROVER-GUEST-POWEROFF"; poweroff -f; fi
n=0
while true; do n=\$((n+1)); echo "DROVER-TICK \$n"; sleep 1; done
INIT
  chmod +x "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/$name.tmp"
  mv "$out/$name.tmp" "$out/$name"
}
build_initrd initrd.gz idle
build_initrd initrd-poweroff.gz poweroff
build_initrd initrd-ignore-acpi.gz ignore-acpi
echo "guest built in $out"
