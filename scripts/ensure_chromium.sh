#!/bin/sh
# The page's browser test (tests/test_page.py) drives Debian's `chromium` package: never a
# browser that Playwright would download. Install it when it is missing and this machine can
# (root with apt-get, as on CI); never fail the build over it. Without it the test skips and
# says why, except on CI, where it fails: CI must test the page in a real browser.
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt-get) for the page's browser test"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1; then
        echo "could not install chromium; tests/test_page.py will skip (or fail on CI)"
    fi
else
    echo "no chromium: tests/test_page.py will skip (install Debian's chromium, or set RAGGED_CHROMIUM)"
fi
exit 0
