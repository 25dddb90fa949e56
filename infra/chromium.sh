# Source me: makes sure Debian's Chromium is there for the console's browser tests
# (tests/test_console_browser.py), installing the `chromium` package when it is missing
# and this shell may (root with apt-get). Playwright drives it; it downloads no browser.
if [ -z "${JOURNEYS_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "Installing Chromium for the browser tests (apt-get install chromium) ..." >&2
        apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "No Chromium: the browser tests are skipped (install Debian's chromium, or set" \
             "JOURNEYS_CHROMIUM to a Chromium binary)" >&2
    fi
fi
