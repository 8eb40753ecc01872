#!/usr/bin/env bash
# Installs the Debian binaries the test suite runs as real peers (and the browser the page tests
# drive); does nothing when they are there.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v prometheus-node-exporter >/dev/null 2>&1 || need+=(prometheus-node-exporter)
# The status page's tests drive Debian's chromium with Playwright (tests/test_page.py).
[[ -x /usr/bin/chromium ]] || need+=(chromium)
((${#need[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
    echo "install-test-deps: missing ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
    exit 1
fi
echo "install-test-deps: apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# The packages' postinst scripts try to start services; without systemd that fails harmlessly.
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
