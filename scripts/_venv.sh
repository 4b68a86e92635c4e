# Sourced by scripts/demo and scripts/test: make .venv with Python >= 3.11 and install keyproxy into it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pick_python() {
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  echo "keyproxy needs Python 3.11 or newer" >&2; return 1
}
if [ ! -x .venv/bin/python ]; then
  "$(pick_python)" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${KEYPROXY_EXTRAS:-test}]" 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -c 'import keyproxy' # fail here, not later, if the install did not work
