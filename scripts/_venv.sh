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
# installed once per pyproject.toml and extras: a second run starts at once
stamp=".venv/.keyproxy-installed"
want="$(sha256sum pyproject.toml | cut -c1-16) ${KEYPROXY_EXTRAS:-test}"
if ! grep -qxF "$want" "$stamp" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
  # the build backend's notices (a page about editable installs) go to a log, shown only if the install fails
  echo "installing keyproxy and its ${KEYPROXY_EXTRAS:-test} extras into .venv (once) ..." >&2
  if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${KEYPROXY_EXTRAS:-test}]" \
      > .venv/install.log 2>&1; then
    grep -v "^WARNING: Location" .venv/install.log >&2
    echo "keyproxy: installing into .venv failed (log above, and in .venv/install.log)" >&2
    exit 1
  fi
  .venv/bin/python -c 'import keyproxy' && echo "$want" >> "$stamp"
fi
.venv/bin/python -c 'import keyproxy' # fail here, not later, if the install did not work
