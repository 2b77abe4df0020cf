#!/usr/bin/env bash
# Debian packages the tests drive as real programs: Chromium (dashboard browser tests) and
# Prometheus (scrapes a running system). Installs only what is missing; needs root or sudo.
set -euo pipefail

declare -A wanted=([chromium]=/usr/bin/chromium [chromium-driver]=/usr/bin/chromedriver
                   [prometheus]=/usr/bin/prometheus)
missing=()
for package in "${!wanted[@]}"; do
  [[ -x "${wanted[$package]}" ]] || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

as_root=()
[[ $(id -u) -eq 0 ]] || as_root=(sudo)
apt_install() {
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends "$@"
}
echo "installing ${missing[*]}"
# Package lists on a fresh machine may be stale; refresh them only when the first try fails.
apt_install "${missing[@]}" || { "${as_root[@]}" apt-get update -q && apt_install "${missing[@]}"; }
