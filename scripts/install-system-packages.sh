#!/usr/bin/env bash
# Programs the tests drive for real, installed without side effects on the machine:
# - Chromium and ChromeDriver (dashboard browser tests): Debian's packages, which start no service.
# - Prometheus and promtool (scrape test, config check): unpacked from Debian's package into
#   .tools/prometheus/, never installed, so no daemon, unit, user or boot-time service appears.
# Installs only what is missing. Chromium needs root or sudo; Prometheus needs neither once the
# package lists are current.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root=()
[[ $(id -u) -eq 0 ]] || as_root=(sudo)
refreshed=false
refresh_lists() {
  $refreshed || { "${as_root[@]}" apt-get update -q; refreshed=true; }
}

install_chromium() {
  [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] && return 0
  echo "installing chromium chromium-driver (Debian packages)"
  local apt=(env DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q
             --no-install-recommends chromium chromium-driver)
  # Package lists on a fresh machine may be stale; refresh them only when the first try fails.
  "${apt[@]}" || { refresh_lists && "${apt[@]}"; }
}

unpack_prometheus() {
  local target=.tools/prometheus
  [[ -x $target/usr/bin/prometheus && -x $target/usr/bin/promtool ]] && return 0
  echo "unpacking prometheus into $target (not installed: no service is started or enabled)"
  local scratch
  scratch=$(mktemp -d)
  chmod 777 "$scratch"   # apt-get download fetches as the _apt user
  trap 'rm -rf "$scratch"' RETURN
  (cd "$scratch" && apt-get download -q prometheus) \
    || { refresh_lists && (cd "$scratch" && apt-get download -q prometheus); }
  rm -rf "$target"
  mkdir -p "$target"
  dpkg-deb -x "$scratch"/prometheus_*.deb "$target"
}

install_chromium
unpack_prometheus
