#!/bin/sh
# Install the browser of the dashboard's browser tests (tests/dashboard/test_browser.py): Debian's
# chromium, driven by Playwright (Playwright's own browser download does not work offline).
# Idempotent and never fails the build: without chromium, the browser tests are skipped.

if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    exit 0
fi

note() {
    echo "install-browser: $1; the dashboard browser tests will be skipped" >&2
    exit 0
}

command -v apt-get >/dev/null 2>&1 || note "no chromium and no apt-get to install it"

if [ "$(id -u)" -eq 0 ]; then
    run_as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    run_as_root="sudo -n"
else
    note "no chromium, and installing it needs root (sudo apt-get install chromium)"
fi

export DEBIAN_FRONTEND=noninteractive
if ! $run_as_root apt-get install -y -qq chromium >/dev/null 2>&1; then
    $run_as_root apt-get update -qq >/dev/null 2>&1
    $run_as_root apt-get install -y -qq chromium >/dev/null 2>&1 || note "apt-get could not install chromium"
fi
command -v chromium >/dev/null 2>&1 || note "chromium is still missing after apt-get"
echo "install-browser: installed $(chromium --version 2>/dev/null | head -n 1)"
