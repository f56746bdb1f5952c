#!/usr/bin/env bash
# The main job, on the embedded defaults: a SoftHSM token behind dojangd; dojang-ca (the embedded
# CMP CA); `dojang enroll` getting a SignKorea 범용 개인 certificate that expires soon for a key
# generated on the token; `dojang renew` renewing it through the guide's four steps with a new
# key generated on the token; pkcs11-tool and openssl signing with the renewed key through dojang;
# the journal entry and the CA's ledger. No private key ever leaves the token.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

./scripts/install-deps.sh
./scripts/build.sh src/daemon/dojangd pkcs11/dojang-pkcs11.so src/cli/dojang src/ca/dojang-ca >/dev/null

work=$(mktemp -d /tmp/dojang-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

module=$root/build/pkcs11/dojang-pkcs11.so
label=dojang-demo
pin=1234

step "1. A token: SoftHSM, in $work"
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" >"$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin 12345678 >/dev/null

step "2. dojangd, the per-user daemon that owns the token"
# The demo runs unattended, with no display to show a PIN prompt on: its token is in application
# mode (programs give the PIN, as below). On a desktop, leave [pin] out: dojangd then asks through
# pinentry itself (README, "PIN prompts").
cat >"$work/dojangd.toml" <<TOML
[pin]
mode = "application"

[[backend]]
name = "softhsm"
module = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"
TOML
export DOJANG_SOCKET=$work/dojang.sock DOJANG_NO_AUTOSTART=1
"$root/build/src/daemon/dojangd" --foreground --socket "$DOJANG_SOCKET" --config "$work/dojangd.toml" \
  2>"$work/dojangd.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$DOJANG_SOCKET" ] && break; sleep 0.05; done
"$root/build/src/cli/dojang" status

step "3. pkcs11-tool sees the token through dojang-pkcs11.so"
pkcs11-tool --module "$module" -L

step "4. dojang-ca, the embedded CMP CA with Korean profiles (20-day certificates, so they expire soon)"
ca=$root/build/src/ca/dojang-ca
"$ca" init --dir "$work/ca" >/dev/null
"$ca" serve --dir "$work/ca" --port 0 --test-validity-days 20 >"$work/ca.out" 2>"$work/ca.log" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/ca.out" 2>/dev/null && break; sleep 0.05; done
ca_url=$(sed -n 's/^dojang-ca listening on \(http:\/\/[^ ]*\).*/\1/p' "$work/ca.out" | head -n 1)
echo "CA at $ca_url"
export XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state
mkdir -p "$XDG_CONFIG_HOME/dojang"
cat >"$XDG_CONFIG_HOME/dojang/renewal.toml" <<TOML
[ca.dojang-ca]
url = "$ca_url"
trusted = "$work/ca/ca.cert.pem"
validity_days = 20
TOML
"$ca" enroll-code --dir "$work/ca" --profile signkorea-general-personal \
  --subject "cn=홍길동()0001234567890123,ou=개인" --json >"$work/code.json"
ref=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["reference"])' "$work/code.json")
code=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["authorization_code"])' "$work/code.json")
echo "참조번호 (reference number) $ref, 인가코드 (authorization code) $code"

dojang=$root/build/src/cli/dojang
step "5. dojang enroll: a key generated on the token, CMP ir with the reference number, the certificate stored"
echo "$pin" | "$dojang" enroll --ref "$ref" --code "$code" --label signkey --accept-fee 4400 --pin-stdin

step "6. dojang certs: the days left, and \"renew now\""
"$dojang" certs

step "7. dojang renew: the four steps (the certificate, the PIN, the 4,400 KRW fee, the result)"
echo "$pin" | "$dojang" renew signkey --pin-stdin --accept-fee 4400 | tee "$work/renew.txt"
key_id=$(sed -n 's/^  new key: CKA_ID \([0-9a-f]*\) .*/\1/p' "$work/renew.txt")
"$dojang" certs

step "8. Signing with the renewed key through dojang: pkcs11-tool and openssl, verified against the new certificate"
pkcs11-tool --module "$module" --read-object --type cert --id "$key_id" -o "$work/cert.der" >/dev/null
openssl x509 -inform DER -in "$work/cert.der" -noout -subject -startdate -enddate -nameopt utf8
openssl x509 -inform DER -in "$work/cert.der" -pubkey -noout >"$work/pub.pem"
echo "dojang: the seal a Korean presses to sign" >"$work/document.txt"
openssl dgst -sha256 -binary "$work/document.txt" >"$work/document.sha256"
pkcs11-tool --module "$module" --login --pin "$pin" --sign --id "$key_id" -m ECDSA \
  --signature-format openssl -i "$work/document.sha256" -o "$work/sig.pkcs11-tool" 2>/dev/null
openssl dgst -sha256 -verify "$work/pub.pem" -signature "$work/sig.pkcs11-tool" "$work/document.txt"
cat >"$work/openssl.cnf" <<CNF
openssl_conf = init
[init]
engines = engines
[engines]
pkcs11 = pkcs11
[pkcs11]
engine_id = pkcs11
MODULE_PATH = $module
init = 0
CNF
key_uri="pkcs11:token=$label;id=$(echo "$key_id" | sed 's/../%&/g');type=private;pin-value=$pin"
OPENSSL_CONF=$work/openssl.cnf openssl dgst -sha256 -engine pkcs11 -keyform engine -sign "$key_uri" \
  -out "$work/sig.openssl" "$work/document.txt" 2>/dev/null
openssl dgst -sha256 -verify "$work/pub.pem" -signature "$work/sig.openssl" "$work/document.txt"

step "9. The private keys never left the token"
pkcs11-tool --module "$module" --login --pin "$pin" --list-objects --type privkey 2>/dev/null | grep -E "Private Key|label|Access"
echo "(dojangd also refuses CKA_VALUE and CKA_PRIVATE_EXPONENT of private keys with CKR_ATTRIBUTE_SENSITIVE)"

step "10. The journal and the CA's ledger"
"$dojang" renew --history
"$ca" ledger --dir "$work/ca"

step "Done: the demo's daemon, CA and token are removed on exit"
