#!/bin/sh
# Chromium and ChromeDriver for the operator page's browser tests (Debian packages, never a
# downloaded browser build), installed when missing. Silent when they are there; one line when
# it installs them or cannot.
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "make test: chromium and chromedriver are missing: install them (Debian: apt-get install chromium chromium-driver) and run make test again" >&2
    exit 1
fi
log=$(mktemp)
# The package lists once: not again when another prerequisite (cluster-test-deps) just did it.
fresh=$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -60 2>/dev/null | head -n 1)
if { { [ -n "$fresh" ] || apt-get update -qq; } && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >"$log" 2>&1; then
    rm -f "$log"
    echo "make test: installed chromium and chromium-driver (Debian packages) for the operator page's browser tests"
else
    echo "make test: could not install chromium and chromium-driver with apt-get ($(tail -n 1 "$log")); full log: $log" >&2
    exit 1
fi
