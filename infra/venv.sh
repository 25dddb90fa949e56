# Source me: makes sure ./.venv exists and has the project (and its dev extra)
# installed for the current pyproject.toml, then puts it first on PATH.
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="${JOURNEYS_VENV:-$_root/.venv}"
_python="${PYTHON:-python3}"
if ! "$_python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Journeys needs Python 3.11 or newer as '$_python' (set PYTHON=... to choose one)" >&2
    exit 1
fi
[ -x "$_venv/bin/python" ] || "$_python" -m venv "$_venv"
_stamp="$_venv/.journeys-installed"
_want="$(cat "$_root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
    echo "Installing Journeys into $_venv ..." >&2
    "$_venv/bin/python" -m pip install --quiet --upgrade pip
    "$_venv/bin/python" -m pip install --quiet -e "$_root[dev]"
    echo "$_want" > "$_stamp"
fi
export PATH="$_venv/bin:$PATH"
