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
#                     power button (so graceful stop works); a shell reads
#                     and answers on the serial console (ttyS0)
#   initrd-poweroff.gz  same marker, then the guest powers itself off after
#                     about 1 s (for restart-policy tests)
#   initrd-ignore-acpi.gz  like initrd.gz but ignores the power button (for
#                     stop-timeout tests)
#   initrd-disk-marker.gz  like initrd.gz, but when a virtio disk /dev/vda
#                     exists it writes marker records into it instead of
#                     ticks (for the failover tests' proof that two copies of
#                     a VM never ran at once; parsed by test/helpers/disk-marker.ts):
#                     the disk is 8 regions of 1024 sectors of 512 bytes. At
#                     boot the guest reads the whole disk once: the last
#                     counter of every earlier boot ("seen": <boot_id>:<n>,...
#                     or "-") and the first region no boot used, which it
#                     claims. Then every 250 ms it writes record n (0, 1, ...)
#                     into sector region*1024 + n mod 1024 with dd conv=fsync:
#                       "DROVER-MARK <boot_id> <region> <n> <epoch_ms> <seen>"
#                     space-padded to 511 bytes and a newline. boot_id is the
#                     kernel's random boot id; epoch_ms is the guest's clock
#                     (busybox adjtimex: microsecond resolution), which the
#                     kernel set at boot from the RTC: within 1.5 s behind
#                     and 0.5 s ahead of the host (test/helpers/disk-marker.ts
#                     says why). Each record is also printed on the serial
#                     console. Without /dev/vda
#                     it prints "DROVER-MARK-NODISK" and ticks like initrd.gz.
#
# Every initrd honours a kernel command line switch: with "drover.burn=1"
# init starts a shell loop that keeps one vCPU busy ("DROVER-BURN" on the
# console), beside whatever else it does (for the CPU load tests).
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
  if [ "$mode" = disk-marker ]; then
    # virtio-blk is a module in Debian's cloud kernel; insmod does not resolve
    # dependencies, so they are numbered in load order.
    mkdir -p "$root/lib/modules/virtio"
    local i=0 m f
    for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
      f=$(modinfo -k "$kver" -F filename "$m" 2>/dev/null || true)
      case "$f" in
        /*.ko) cp "$f" "$root/lib/modules/virtio/$i-$m.ko" ;;
        /*.ko.xz) xz -dc "$f" > "$root/lib/modules/virtio/$i-$m.ko" ;;
        /*.ko.zst) zstd -qdc "$f" > "$root/lib/modules/virtio/$i-$m.ko" ;;
        *) ;; # built in (or absent)
      esac
      i=$((i+1))
    done
  fi
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
case " \$(cat /proc/cmdline) " in *" drover.burn=1 "*) echo "DROVER-BURN"; (while :; do :; done) & ;; esac
if [ "\$MODE" = poweroff ]; then sleep 1; echo "DROVER-GUEST-POWEROFF"; poweroff -f; fi
if [ "\$MODE" = disk-marker ]; then
  for m in /lib/modules/virtio/*.ko; do [ -f "\$m" ] && insmod "\$m" 2>/dev/null; done
  w=0; while [ ! -b /dev/vda ] && [ \$w -lt 30 ]; do sleep 0.1; w=\$((w+1)); done
  if [ -b /dev/vda ]; then
    K=1024; R=8
    boot=\$(cat /proc/sys/kernel/random/boot_id)
    # What earlier boots left: the last counter of each, and the first unused region.
    set -- \$(dd if=/dev/vda bs=65536 count=\$((R*K/128)) iflag=direct 2>/dev/null | tr -d '\\000' | awk '
      \$1 == "DROVER-MARK" { n = \$4 + 0; if (!(\$2 in m) || n > m[\$2]) m[\$2] = n; if (\$3 + 1 > free) free = \$3 + 1 }
      END { s = ""; for (b in m) s = s (s == "" ? "" : ",") b ":" m[b]; print (s == "" ? "-" : s), free + 0 }')
    seen=\$1; r=\$2
    [ "\$r" -lt \$R ] || r=\$((R-1))
    echo "DROVER-MARK-SEEN \$boot region \$r saw \$seen"
    n=0
    while true; do
      ms=\$(adjtimex | awk '/time.tv_sec/ { s = \$2 } /time.tv_usec/ { u = \$2 } END { printf "%d%03d", s, int(u / 1000) }')
      rec="DROVER-MARK \$boot \$r \$n \$ms \$seen"
      printf '%-511s\n' "\$rec" | dd of=/dev/vda bs=512 seek=\$((r*K + n%K)) count=1 iflag=fullblock conv=notrunc,fsync 2>/dev/null
      echo "\$rec"
      n=\$((n+1))
      sleep 0.25
    done
  fi
  echo "DROVER-MARK-NODISK"
fi
# A shell on the serial console (drover vm console, the dashboard's serial tab): prompt "/ # ".
# No setsid: a shell that took ttyS0 as its controlling terminal would stop the ticks below.
if [ "\$MODE" = idle ]; then sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1' & fi
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
build_initrd initrd-disk-marker.gz disk-marker
echo "guest built in $out"
