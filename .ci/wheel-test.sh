#!/usr/bin/env bash
# The pip-installable gauntlet, end to end: builds the wheel with maturin (pyproject.toml,
# `bindings = "bin"`), checks its metadata against the Cargo workspace, installs it into a fresh
# venv, runs the embedded default from there (`gauntlet run`, the README's first command) and
# checks its exit code and results.json, then tests the GitHub Action (action.yml) with the same
# wheel (action/tests/test.sh). `just wheel` runs it; docs/distribution.md says what it costs.
#
# Environment: GAUNTLET_WHEEL_PROFILE (default dev: a test of the packaging, not a wheel to
# publish; `release` for one), GAUNTLET_WHEEL_VENV (default $TMPDIR/gauntlet-maturin-venv) for
# maturin, CARGO_TARGET_DIR as cargo's (the wheel goes to $CARGO_TARGET_DIR/wheels-PROFILE).
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

profile="${GAUNTLET_WHEEL_PROFILE:-dev}"
target="${CARGO_TARGET_DIR:-target}"
tools="${GAUNTLET_WHEEL_VENV:-${TMPDIR:-/tmp}/gauntlet-maturin-venv}"
[ -x "$tools/bin/pip" ] || python3 -m venv "$tools"
"$tools/bin/pip" install --quiet --disable-pip-version-check 'maturin==1.16.0'

wheels="$target/wheels-$profile"
rm -rf "$wheels"
start=$(date +%s)
"$tools/bin/maturin" build --profile "$profile" --out "$wheels"
echo "wheel built in $(($(date +%s) - start)) s (profile $profile)"
shopt -s nullglob
built=("$wheels"/*.whl)
shopt -u nullglob
[ ${#built[@]} -eq 1 ] || { echo "expected one wheel in $wheels, found ${#built[@]}" >&2; exit 1; }
wheel="$(realpath "${built[0]}")"
echo "wheel: $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"

# The wheel's metadata says what the workspace says, and it carries the binary and nothing else.
cargo metadata --no-deps --format-version 1 --manifest-path harness/Cargo.toml > "$wheels/metadata.json"
python3 - "$wheel" "$wheels/metadata.json" <<'PY'
import json, sys, zipfile
wheel, metadata = sys.argv[1], sys.argv[2]
package = next(p for p in json.load(open(metadata))["packages"] if p["name"] == "gauntlet")
version, licence = package["version"], package["license"]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    dist_info = f"gauntlet_robustness-{version}.dist-info"
    meta = z.read(f"{dist_info}/METADATA").decode()
    fields = {}
    for line in meta.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value)
    script = f"gauntlet_robustness-{version}.data/scripts/gauntlet"
    mode = z.getinfo(script).external_attr >> 16
    licence_file = f"{dist_info}/licenses/LICENSE"
    licence_text = z.read(licence_file) if licence_file in names else None
problems = []
if fields.get("Name") != ["gauntlet-robustness"]:
    problems.append(f"Name {fields.get('Name')}")
if fields.get("Version") != [version]:
    problems.append(f"Version {fields.get('Version')}, the workspace has {version}")
if fields.get("License-Expression") != [licence]:
    problems.append(f"License-Expression {fields.get('License-Expression')}, the workspace has {licence}")
if not fields.get("Classifier"):
    problems.append("no classifiers")
if fields.get("Description-Content-Type", [""])[0].split(";")[0] != "text/markdown":
    problems.append("the README is not the long description")
if not mode & 0o111:
    problems.append(f"{script} is not executable (mode {oct(mode)})")
# The licence's text: named in the metadata and carried, byte for byte the repository's file.
if fields.get("License-File") != ["LICENSE"]:
    problems.append(f"License-File {fields.get('License-File')}, expected ['LICENSE']")
if licence_text is None:
    problems.append(f"no {licence_file} in the wheel")
elif licence_text != open("LICENSE", "rb").read():
    problems.append(f"{licence_file} differs from the repository's LICENSE")
others = [n for n in names if n != script and not n.startswith(dist_info + "/")]
if others:
    problems.append(f"unexpected files in the wheel: {others}")
if problems:
    sys.exit("wheel metadata: " + "; ".join(problems))
print(f"ok: wheel metadata (gauntlet-robustness {version}, {licence} with its LICENSE text, one executable: {script})")
PY

# A fresh venv, as a user's: `pip install` puts `gauntlet` on its PATH.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "$wheel"
found="$(PATH="$work/venv/bin:$PATH" command -v gauntlet)"
[ "$found" = "$work/venv/bin/gauntlet" ] || { echo "gauntlet on PATH is $found, not the venv's" >&2; exit 1; }
version="$(python3 -c 'import json, sys; print(next(p["version"] for p in json.load(open(sys.argv[1]))["packages"] if p["name"] == "gauntlet"))' "$wheels/metadata.json")"
[ "$("$found" --version)" = "gauntlet $version" ] || { echo "gauntlet --version says '$("$found" --version)', expected 'gauntlet $version'" >&2; exit 1; }

# The README's first command, from the installed wheel, in an empty folder.
mkdir "$work/run"
status=0
start=$(date +%s)
(cd "$work/run" && PATH="$work/venv/bin:$PATH" gauntlet run --quiet) > "$work/run.log" 2>&1 || status=$?
[ "$status" -eq 0 ] || { cat "$work/run.log" >&2; echo "the installed gauntlet's embedded default exited $status, expected 0" >&2; exit 1; }
[ -f "$work/run/gauntlet-out/results.json" ] || { echo "no gauntlet-out/results.json after the embedded default" >&2; exit 1; }
python3 - "$work/run/gauntlet-out/results.json" "$version" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
assert results["gauntlet_version"] == sys.argv[2], results["gauntlet_version"]
assert results["attacks"] and all(g["passed"] for g in results["gates"]), "gates"
PY
echo "ok: the installed wheel ran the embedded default in $(($(date +%s) - start)) s (exit 0, results.json written)"

bash action/tests/test.sh "$wheel"
