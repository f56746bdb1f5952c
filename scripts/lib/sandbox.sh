# A throwaway dojang world for the demo, the tmux test and the renewal benchmark, sourced by bash:
# a SoftHSM token, dojangd serving it, dojang-ca on loopback and a renewal.toml pointing at it,
# all under one temporary directory that `sandbox_cleanup` (trapped on EXIT) removes.
#
#   source scripts/lib/sandbox.sh
#   sandbox_start BUILD_DIR TOKEN_LABEL PIN [dojang-ca serve options...]
#   sandbox_enrol LABEL [dojang enroll options...]      # dojang enroll with a fresh reference code
#
# Sets: sandbox_work, sandbox_ca_url, DOJANG_SOCKET, DOJANG_MODULE, SOFTHSM2_CONF, XDG_*.

sandbox_pids=()
sandbox_cleanup() {
  for pid in "${sandbox_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${sandbox_work:-}" ] && rm -rf "$sandbox_work"
}

sandbox_start() {  # build_dir token_label pin [ca serve args...]
  sandbox_build=$1 sandbox_label=$2 sandbox_pin=$3
  shift 3
  sandbox_work=$(mktemp -d /tmp/dojang-sandbox.XXXXXX)
  mkdir -p "$sandbox_work/tokens"
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$sandbox_work" \
    >"$sandbox_work/softhsm2.conf"
  export SOFTHSM2_CONF=$sandbox_work/softhsm2.conf
  softhsm2-util --init-token --free --label "$sandbox_label" --pin "$sandbox_pin" --so-pin 12345678 >/dev/null

  # SANDBOX_PIN_SETTINGS: lines of dojangd's [pin] table (default: dojangd's own, prompt mode).
  printf '[pin]\n%s\n[[backend]]\nname = "softhsm"\nmodule = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"\n' \
    "${SANDBOX_PIN_SETTINGS:-}" >"$sandbox_work/dojangd.toml"
  export DOJANG_SOCKET=$sandbox_work/dojang.sock DOJANG_NO_AUTOSTART=1
  export DOJANG_MODULE=$sandbox_build/pkcs11/dojang-pkcs11.so
  "$sandbox_build/src/daemon/dojangd" --foreground --socket "$DOJANG_SOCKET" --config "$sandbox_work/dojangd.toml" \
    2>"$sandbox_work/dojangd.log" &
  sandbox_pids+=($!)
  for _ in $(seq 200); do [ -S "$DOJANG_SOCKET" ] && break; sleep 0.05; done

  sandbox_ca=$sandbox_build/src/ca/dojang-ca
  "$sandbox_ca" init --dir "$sandbox_work/ca" >/dev/null
  "$sandbox_ca" serve --dir "$sandbox_work/ca" --port 0 "$@" >"$sandbox_work/ca.out" 2>"$sandbox_work/ca.log" &
  sandbox_pids+=($!)
  for _ in $(seq 200); do grep -q listening "$sandbox_work/ca.out" 2>/dev/null && break; sleep 0.05; done
  sandbox_ca_url=$(sed -n 's/^dojang-ca listening on \(http:\/\/[^ ]*\).*/\1/p' "$sandbox_work/ca.out" | head -n 1)

  export XDG_CONFIG_HOME=$sandbox_work/config XDG_STATE_HOME=$sandbox_work/state
  mkdir -p "$XDG_CONFIG_HOME/dojang"
  local validity=""
  if [ "${1:-}" = "--test-validity-days" ]; then validity="validity_days = $2"; fi
  printf '[ca.dojang-ca]\nurl = "%s"\ntrusted = "%s"\n%s\n' "$sandbox_ca_url" "$sandbox_work/ca/ca.cert.pem" \
    "$validity" >"$XDG_CONFIG_HOME/dojang/renewal.toml"
}

# A reference number and authorization code for a SignKorea 범용 개인 certificate:
# sets sandbox_ref and sandbox_code.
sandbox_code() {
  "$sandbox_ca" enroll-code --dir "$sandbox_work/ca" --profile "${1:-signkorea-general-personal}" \
    --subject "cn=홍길동()0001234567890123,ou=개인" --json >"$sandbox_work/code.json"
  sandbox_ref=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["reference"])' "$sandbox_work/code.json")
  sandbox_code=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["authorization_code"])' \
    "$sandbox_work/code.json")
}

sandbox_enrol() {  # label [dojang enroll options...]
  local label=$1
  shift
  sandbox_code
  echo "$sandbox_pin" | "$sandbox_build/src/cli/dojang" enroll --ref "$sandbox_ref" --code "$sandbox_code" \
    --label "$label" --accept-fee 4400 --pin-stdin "$@"
}
