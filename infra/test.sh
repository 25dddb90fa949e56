#!/usr/bin/env bash
# The test suite on real parts: `bash infra/test.sh` (extra arguments go to pytest).
set -euo pipefail
source "$(dirname "$0")/venv.sh"
source "$(dirname "$0")/chromium.sh"
source "$(dirname "$0")/postfix.sh"
cd "$(dirname "$0")/.."
exec python -m pytest "$@"
