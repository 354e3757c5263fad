#!/usr/bin/env bash
# Installs what drover needs and is missing: Debian packages (once, with one
# `apt-get update`) and the npm dependencies. Safe to run again: it does
# nothing when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  etcd-server          # the cluster state store (embedded by `drover up`, used by tests)
  qemu-system-x86      # the hypervisor
  qemu-utils           # qemu-img
  qemu-block-extra     # qemu's rbd driver, for disks on Ceph (spec.disks[].rbd)
  busybox-static       # the test guest's userland
  cpio                 # packs the test guest's initramfs
  linux-image-cloud-amd64  # the test guest's kernel (only /boot/vmlinuz-* is used)
  iproute2             # ip: tap devices, bridges, network namespaces
  procps               # ps, pkill for tests
  awscli               # tests and the backup benchmark cross-check what drover put into S3
  prometheus           # promtool: the observability test checks /metrics with Prometheus' own parser
  python3-dirq         # the accounting test reads apel-outgoing/ with the queue library ssmsend uses
  openssl              # the API test makes a throwaway certificate to check HTTPS
  chromium             # the dashboard's browser tests (driven by playwright-core; no browser download)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The unprivileged user every qemu runs as (agent config qemu_user; docs/security.md, "Confined qemu").
if ! getent passwd drover-qemu >/dev/null; then
  echo "install-deps: creating the system user drover-qemu"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" useradd --system --no-create-home --shell /usr/sbin/nologin drover-qemu
fi

stamp=node_modules/.drover-installed
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  echo "install-deps: installing npm dependencies"
  npm ci --no-audit --no-fund
  touch "$stamp"
fi
