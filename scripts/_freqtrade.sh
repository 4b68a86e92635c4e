# Sourced by scripts/test (after _venv.sh): freqtrade, a whole bot framework, in its own virtual environment
# for tests/e2e/test_freqtrade.py; installed once per version (about a minute), then reused.
FREQTRADE_VERSION=2026.9
if [ "$(cat .venv-freqtrade/.installed 2>/dev/null)" != "$FREQTRADE_VERSION" ]; then
  echo "installing freqtrade $FREQTRADE_VERSION into .venv-freqtrade (once) ..." >&2
  rm -rf .venv-freqtrade
  "$(pick_python)" -m venv .venv-freqtrade
  if .venv-freqtrade/bin/python -m pip install --quiet --disable-pip-version-check "freqtrade==$FREQTRADE_VERSION" \
      > .venv-freqtrade/install.log 2>&1; then
    echo "$FREQTRADE_VERSION" > .venv-freqtrade/.installed
  else
    echo "could not install freqtrade (.venv-freqtrade/install.log): tests/e2e/test_freqtrade.py will fail" >&2
  fi
fi
