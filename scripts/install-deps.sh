#!/usr/bin/env bash
# Installs the Debian 12 packages dojang builds, tests and demonstrates with. Idempotent: a
# machine that has them all is left alone (no apt-get update, no network).
set -euo pipefail

packages=(
  # build
  meson ninja-build pkg-config g++ clang libclang-rt-14-dev
  libssl-dev libp11-dev libp11-kit-dev libpcsclite-dev libsqlite3-dev libtomlplusplus-dev
  libcli11-dev nlohmann-json3-dev libcpp-httplib-dev libassuan-dev libgpg-error-dev libsystemd-dev catch2
  # tokens, readers and the real clients the tests drive
  softhsm2 opensc opensc-pkcs11 pcscd pcsc-tools vsmartcard-vpcd yubico-piv-tool ykcs11 p11-kit
  libnss3-tools openssh-client openssl libengine-pkcs11-openssl gnutls-bin curl sqlite3
  procps psmisc util-linux tmux pinentry-curses python3
  # the servers and browsers of the real-client tests (never started as services: see below)
  nginx-light openssh-server chromium firefox-esr
  # the scheduler's desktop notifications, seen on a private session bus in the tests
  dbus-daemon dbus-bin python3-dbus
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "dojang: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# nginx and openssh-server start their services on install, listening on every address. The tests
# start their own on 127.0.0.1, so the packages' services must not run: a policy-rc.d answering
# 101 ("action forbidden") for this install keeps invoke-rc.d from starting them (a container's
# own policy-rc.d is kept as it is), and under systemd they are disabled afterwards.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# dojang install-deps.sh: no services started during this install\nexit 101\n' |
    "${sudo_cmd[@]}" tee "$policy" >/dev/null
  "${sudo_cmd[@]}" chmod 755 "$policy"
  own_policy=1
fi
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
if [ "$own_policy" -eq 1 ]; then
  "${sudo_cmd[@]}" rm -f "$policy"
fi
[ "${status:-0}" -eq 0 ] || exit "$status"
for package in "${missing[@]}"; do
  case "$package" in
    nginx-light) service=nginx ;;
    openssh-server) service=ssh ;;
    *) continue ;;
  esac
  if [ -d /run/systemd/system ]; then
    "${sudo_cmd[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
done
