#!/usr/bin/env bash
# Interop proof against the REAL OpenSSF model-signing package from PyPI, both directions:
#
#   gauntlet signs      -> `model_signing verify key` accepts (and rejects once tampered)
#   model_signing signs -> gauntlet verifies          (and rejects once tampered)
#
# for P-256 (SEC1 and PKCS#8 keys) and P-384, with the signature outside and inside the folder.
# Exits non-zero on the first disagreement. Needs python3 (venv + pip, network for the first
# install), openssl and cargo.
#
#   models/artifact/tests/interop/model_signing_interop.sh
#   MS_VENV=/path/to/venv ...   # reuse a venv (created with model-signing==1.1.1 if missing)
set -euo pipefail
cd "$(dirname "$0")/../../../.."   # repository root

venv="${MS_VENV:-${TMPDIR:-/tmp}/gauntlet-model-signing-venv}"
if [ ! -x "$venv/bin/model_signing" ]; then
  echo "== creating $venv with model-signing 1.1.1"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check model-signing==1.1.1 pyopenssl
fi
ms="$venv/bin/model_signing"
echo "== $("$venv/bin/pip" show model-signing | grep -E '^Version') of model-signing"

echo "== building the gauntlet command"
cargo build --quiet -p gauntlet
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
gauntlet="$target_dir/debug/gauntlet"
# The same argument order as model_signing: MODEL KEY SIGNATURE / MODEL SIGNATURE PUBLIC_KEY.
g_sign() { "$gauntlet" sign "$1" --private-key "$2" --signature "$3"; }
g_verify() { "$gauntlet" verify "$1" --signature "$2" --public-key "$3" --json; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
# expect WANT DESCRIPTION [--log PATTERN] COMMAND...
#   WANT: SUCCESS (exit 0), FAILURE (any non-zero exit), or INVALID (exit 1 exactly: gauntlet's
#   "verified, and the signature does not hold", as opposed to 2, "could not run").
#   --log PATTERN: the output must also match this extended regex (the failure is for the
#   right reason).
expect() {
  local want="$1" what="$2" pattern=""; shift 2
  if [ "$1" = --log ]; then pattern="$2"; shift 2; fi
  local rc=0
  "$@" >"$work/last.log" 2>&1 || rc=$?
  local ok=false
  case "$want" in
    SUCCESS) [ "$rc" -eq 0 ] && ok=true ;;
    FAILURE) [ "$rc" -ne 0 ] && ok=true ;;
    INVALID) [ "$rc" -eq 1 ] && ok=true ;;
  esac
  if $ok && [ -n "$pattern" ] && ! grep -Eq "$pattern" "$work/last.log"; then ok=false; fi
  if $ok; then pass "$what ($want)"; else
    fail "$what: wanted $want${pattern:+ matching /$pattern/}, got exit $rc"
    sed 's/^/     /' "$work/last.log"
  fi
}

# Keys.
keys="$work/keys"; mkdir -p "$keys"
openssl ecparam -name prime256v1 -genkey -noout -out "$keys/p256-sec1.key.pem"
openssl ec -in "$keys/p256-sec1.key.pem" -pubout -out "$keys/p256-sec1.pub.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$keys/p256-pkcs8.key.pem"
openssl pkey -in "$keys/p256-pkcs8.key.pem" -pubout -out "$keys/p256-pkcs8.pub.pem"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp384r1 -out "$keys/p384.key.pem"
openssl pkey -in "$keys/p384.key.pem" -pubout -out "$keys/p384.pub.pem"
openssl ecparam -name prime256v1 -genkey -noout -out "$keys/wrong.key.pem"
openssl ec -in "$keys/wrong.key.pem" -pubout -out "$keys/wrong.pub.pem" 2>/dev/null

# A model folder with nested, hidden, binary and git files (git files are ignored by both).
make_model() {
  local dir="$1"
  rm -rf "$dir"; mkdir -p "$dir/weights/shards" "$dir/a" "$dir/.git" "$dir/tokenizer"
  python3 -c "import sys; sys.stdout.buffer.write(bytes((i * 131 + 7) % 256 for i in range(3 * 1048576 + 17)))" > "$dir/weights/model.bin"
  printf 'shard one\n' > "$dir/weights/shards/00001.bin"
  printf '{"vocab": 10}\n' > "$dir/tokenizer/tokenizer.json"
  printf 'alpha\n' > "$dir/a.txt"
  printf 'beta\n' > "$dir/a/b.txt"
  printf 'hidden\n' > "$dir/.hidden"
  : > "$dir/empty"
  printf 'ref: refs/heads/main\n' > "$dir/.git/HEAD"
  printf '*.tmp\n' > "$dir/.gitignore"
}
flip_byte() { python3 - "$1" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x01
open(p, "wb").write(b)
PY
}

for key in p256-sec1 p256-pkcs8 p384; do
  for placement in outside inside; do
    model="$work/model-$key-$placement"
    make_model "$model"
    if [ "$placement" = inside ]; then sig="$model/model.sig"; else sig="$work/model-$key.sig"; fi

    echo "== $key, signature $placement the folder"
    # gauntlet -> model-signing
    expect SUCCESS "gauntlet signs" g_sign "$model" "$keys/$key.key.pem" "$sig"
    expect SUCCESS "model_signing verifies gauntlet's signature" \
      "$ms" verify key "$model" --signature "$sig" --public_key "$keys/$key.pub.pem"
    expect FAILURE "model_signing rejects gauntlet's signature with the wrong key" --log "Key mismatch" \
      "$ms" verify key "$model" --signature "$sig" --public_key "$keys/wrong.pub.pem"
    printf 'new\n' > "$model/weights/added.bin"
    expect FAILURE "model_signing rejects an added file (gauntlet-signed)" --log "Extra files.*added.bin" \
      "$ms" verify key "$model" --signature "$sig" --public_key "$keys/$key.pub.pem"
    expect INVALID "gauntlet rejects an added file (gauntlet-signed)" --log '"extra_file"' \
      g_verify "$model" "$sig" "$keys/$key.pub.pem"
    rm "$model/weights/added.bin"

    # model-signing -> gauntlet
    rm -f "$sig"
    expect SUCCESS "model_signing signs" \
      "$ms" sign key "$model" --private_key "$keys/$key.key.pem" --signature "$sig"
    expect SUCCESS "gauntlet verifies model_signing's signature" \
      g_verify "$model" "$sig" "$keys/$key.pub.pem"
    expect INVALID "gauntlet rejects model_signing's signature with the wrong key" --log '"wrong_key"' \
      g_verify "$model" "$sig" "$keys/wrong.pub.pem"
    printf 'changed\n' > "$model/.git/HEAD"
    expect SUCCESS "gauntlet ignores .git changes" g_verify "$model" "$sig" "$keys/$key.pub.pem"
    expect SUCCESS "model_signing ignores .git changes" \
      "$ms" verify key "$model" --signature "$sig" --public_key "$keys/$key.pub.pem"
    flip_byte "$model/weights/model.bin"
    expect INVALID "gauntlet rejects a one-byte flip (model_signing-signed)" --log '"modified_file"' \
      g_verify "$model" "$sig" "$keys/$key.pub.pem"
    expect FAILURE "model_signing rejects a one-byte flip (its own signature)" --log "Hash mismatch for .*weights/model.bin" \
      "$ms" verify key "$model" --signature "$sig" --public_key "$keys/$key.pub.pem"
    flip_byte "$model/weights/model.bin"
    mv "$model/a.txt" "$model/a.renamed"
    expect INVALID "gauntlet rejects a renamed file (model_signing-signed)" --log '"missing_file"' \
      g_verify "$model" "$sig" "$keys/$key.pub.pem"
    mv "$model/a.renamed" "$model/a.txt"
    expect SUCCESS "gauntlet verifies again once restored" g_verify "$model" "$sig" "$keys/$key.pub.pem"
  done
done

if [ "$failures" -ne 0 ]; then
  echo "model-signing interop: $failures disagreement(s)"
  exit 1
fi
echo "model-signing interop: all checks agree"
