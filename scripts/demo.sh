#!/usr/bin/env bash
# The main job, on the embedded defaults: a SoftHSM token behind dojangd; a key generated on the
# token through dojang-pkcs11.so; dojang-ca (the embedded CMP CA) issuing a SignKorea 범용 개인
# certificate for that key over CMP, with the private key never leaving the token; the
# certificate stored on the token; and pkcs11-tool and openssl signing through dojang.
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
cat >"$work/dojangd.toml" <<TOML
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

step "4. An EC P-256 key generated on the token (sensitive, never extractable, CKA_LOCAL)"
pkcs11-tool --module "$module" --login --pin "$pin" --keypairgen --key-type EC:prime256v1 \
  --id 01 --label signkey 2>&1 | sed -n '1,6p'

step "5. dojang-ca, the embedded CMP CA with Korean profiles"
ca=$root/build/src/ca/dojang-ca
"$ca" init --dir "$work/ca" >/dev/null
"$ca" serve --dir "$work/ca" --port 0 >"$work/ca.out" 2>"$work/ca.log" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/ca.out" 2>/dev/null && break; sleep 0.05; done
ca_url=$(sed -n 's/^dojang-ca listening on http:\/\/\([^/]*\)\/.*/\1/p' "$work/ca.out" | head -n 1)
echo "CA at $ca_url"
"$ca" enroll-code --dir "$work/ca" --profile signkorea-general-personal \
  --subject "cn=홍길동()0001234567890123,ou=개인" --json >"$work/code.json"
ref=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["reference"])' "$work/code.json")
code=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["authorization_code"])' "$work/code.json")
fee_oid=2.25.291284094336645414261949578006134921605.1
echo "참조번호 $ref, 인가코드 $code, fee 4,400 KRW acknowledged"

step "6. Enrolment over CMP (ir): the proof of possession is signed on the token through dojang"
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
key_uri="pkcs11:token=$label;object=signkey;type=private;pin-value=$pin"
OPENSSL_CONF=$work/openssl.cnf openssl cmp -cmd ir -server "$ca_url" -path / \
  -trusted "$work/ca/ca.cert.pem" -ref "$ref" -secret "pass:$code" \
  -engine pkcs11 -keyform ENGINE -newkey "$key_uri" -subject "/CN=applicant" \
  -certout "$work/cert.pem" -geninfo "$fee_oid:int:4400" 2>&1 | grep -v '^CMP info' || true
test -s "$work/cert.pem"
openssl x509 -in "$work/cert.pem" -noout -subject -enddate -nameopt utf8

step "7. The certificate goes onto the token beside its key"
openssl x509 -in "$work/cert.pem" -outform DER -out "$work/cert.der"
pkcs11-tool --module "$module" --login --pin "$pin" --write-object "$work/cert.der" --type cert \
  --id 01 --label signkey >/dev/null
"$root/build/src/cli/dojang" certs

step "8. Signing through dojang: pkcs11-tool and openssl, verified against the certificate"
echo "dojang: the seal a Korean presses to sign" >"$work/document.txt"
openssl x509 -in "$work/cert.pem" -pubkey -noout >"$work/pub.pem"
openssl dgst -sha256 -binary "$work/document.txt" >"$work/document.sha256"
pkcs11-tool --module "$module" --login --pin "$pin" --sign --id 01 -m ECDSA \
  --signature-format openssl -i "$work/document.sha256" -o "$work/sig.pkcs11-tool" 2>/dev/null
openssl dgst -sha256 -verify "$work/pub.pem" -signature "$work/sig.pkcs11-tool" "$work/document.txt"
OPENSSL_CONF=$work/openssl.cnf openssl dgst -sha256 -engine pkcs11 -keyform engine -sign "$key_uri" \
  -out "$work/sig.openssl" "$work/document.txt" 2>/dev/null
openssl dgst -sha256 -verify "$work/pub.pem" -signature "$work/sig.openssl" "$work/document.txt"

step "9. The private key never left the token"
pkcs11-tool --module "$module" --login --pin "$pin" --list-objects --type privkey 2>/dev/null | grep -E "Private Key|Access"
echo "(dojangd also refuses CKA_VALUE and CKA_PRIVATE_EXPONENT of private keys with CKR_ATTRIBUTE_SENSITIVE)"

step "Done: the demo's daemon, CA and token are removed on exit"
