#!/usr/bin/env bash
# Install (if needed) Debian's Chromium and its chromedriver, which the web page's browser
# tests drive through Selenium (tests/test_web.py), and Debian's Firefox ESR, driven through
# Marionette (tests/test_web_firefox.py): no browser is ever downloaded by a test tool.
# Needs root (apt-get). Fonts for emoji come along so screenshots show them.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
    || ! command -v firefox-esr >/dev/null || ! fc-list 2>/dev/null | grep -qi "color emoji"; then
    apt-get update -qq >&2
    apt-get install -y -qq chromium chromium-driver firefox-esr fonts-noto-color-emoji >&2
fi
chromium --version >&2
firefox-esr --version >&2
