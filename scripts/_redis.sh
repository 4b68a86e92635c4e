# Sourced by scripts/test: redis-server (Debian's package) for the fleet tests ([shared_state], a real Redis).
# The tests start their own server on a free loopback port; the package's own service is not used.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server (Debian package) for the fleet tests..." >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y --no-install-recommends redis-server \
      || { apt-get update && apt-get install -y --no-install-recommends redis-server; }; } >/dev/null 2>&1 \
      || echo "could not install redis-server; the fleet tests will fail" >&2
  else
    echo "redis-server is missing: install Debian's redis-server package (sudo apt-get install redis-server)" >&2
  fi
fi
