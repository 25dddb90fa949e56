# Source me: makes sure Debian's Postfix is there for the bounce end-to-end test
# (tests/test_bounces_postfix.py, Postfix as the relay), installing the `postfix` package
# when it is missing and this shell may (root with apt-get). The package is installed
# without a configuration ("No configuration"), so no system instance starts: the test
# runs its own instance from a temporary directory (`postfix -c <dir>`).
if [ -z "${JOURNEYS_POSTFIX:-}" ] && ! command -v postfix >/dev/null 2>&1 \
    && [ ! -x /usr/sbin/postfix ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "Installing Postfix for the bounce tests (apt-get install postfix) ..." >&2
        echo "postfix postfix/main_mailer_type select No configuration" \
            | debconf-set-selections 2>/dev/null || true
        apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            postfix >/dev/null 2>&1 \
            || echo "Postfix could not be installed: the Postfix bounce test is skipped" >&2
    else
        echo "No Postfix: the Postfix bounce test is skipped (install Debian's postfix," \
             "or set JOURNEYS_POSTFIX to the postfix command)" >&2
    fi
fi
