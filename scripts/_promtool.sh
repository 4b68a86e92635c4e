# Sourced by scripts/test: make sure promtool (Debian's prometheus package) is there for the alert-rule tests.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing promtool (Debian package prometheus) for the alert-rule tests..." >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y --no-install-recommends prometheus \
      || { apt-get update && apt-get install -y --no-install-recommends prometheus; }; } >/dev/null 2>&1 \
      || echo "could not install promtool; the alert-rule tests will fail" >&2
  else
    echo "promtool is missing: install Debian's prometheus package (sudo apt-get install prometheus)" >&2
  fi
fi
