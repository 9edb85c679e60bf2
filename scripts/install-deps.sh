#!/usr/bin/env bash
# Install what weir needs to build and test, from Debian 12's packages.
# LuaJIT is OpenResty's maintained branch (luajit2): Debian's plain luajit
# snapshot (git 20220320) has the JIT bug that ends pairs() loops early
# (docs/adr/0004-luajit2.md); installing luajit2 replaces it.
# Safe to run again; runs apt-get update only when the package lists are
# older than a day (or missing).
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  luajit2 libluajit2-5.1-dev
  libyaml-dev libsqlite3-dev libssl-dev
  lua-busted lua-check sqlite3
  libpq-dev libhiredis-dev postgresql redis-server openssl ca-certificates
  libmicrohttpd-dev nettle-dev libedit-dev curl tzdata luarocks
  libseccomp-dev libpcre2-dev
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
stamp=/var/lib/apt/periodic/update-success-stamp
lists=$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)
if [ -z "$lists" ]; then
  $SUDO apt-get update -q
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
: "$stamp"
