#!/bin/sh
# redis-server and HAProxy for the cluster tests (Debian packages), installed when missing.
# Silent when they are there; one line when it installs them or cannot.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
if have redis-server && have redis-cli && have haproxy; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "make test: redis-server and haproxy are missing: install them (Debian: apt-get install redis-server haproxy) and run make test again" >&2
    exit 1
fi
log=$(mktemp)
if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server haproxy; } >"$log" 2>&1; then
    rm -f "$log"
    echo "make test: installed redis-server and haproxy (Debian packages) for the cluster tests"
else
    echo "make test: could not install redis-server and haproxy with apt-get ($(tail -n 1 "$log")); full log: $log" >&2
    exit 1
fi
