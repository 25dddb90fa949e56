#!/usr/bin/env bash
# The whole product on its embedded default stack: `bash infra/dev.sh`.
# Creates ./.venv on first use; extra arguments go to `journeys dev`.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
cd "$(dirname "$0")/.."
exec journeys dev "$@"
