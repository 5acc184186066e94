#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver are on this machine for the browser tests
# (tests/it/browser.rs): install Debian's chromium and chromium-driver when /usr/bin/chromium
# or /usr/bin/chromedriver is missing. Idempotent; prints what it does. Needs root (or sudo).
set -euo pipefail

log() { printf '[ensure-chromium] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  log "Chromium and chromedriver are installed ($(/usr/bin/chromedriver --version 2>/dev/null | head -n1))"
  exit 0
fi

log "installing Debian's chromium and chromium-driver"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  log "installed ($(/usr/bin/chromedriver --version 2>/dev/null | head -n1))"
else
  log "chromium or chromedriver is still missing after the install"
  exit 1
fi
