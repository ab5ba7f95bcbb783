#!/usr/bin/env bash
# Step 1 of the action (action.yml): install gauntlet into a fresh virtual environment.
#
# GAUNTLET_WHEEL: a wheel's path (a glob matching exactly one file is expanded) or URL; when
# empty, GAUNTLET_PACKAGE, a pip requirement; when that is empty too, `gauntlet-robustness` at
# the version of the workspace this action was checked out from, so `uses: …@v0.2.0` runs
# gauntlet 0.2.0. GAUNTLET_PYTHON makes the venv (default python3).
#
# Outputs: `gauntlet` (the executable's path); the venv's bin folder is added to GITHUB_PATH so
# later steps of the job can call `gauntlet` (e.g. `gauntlet report`).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
python="${GAUNTLET_PYTHON:-python3}"
wheel="${GAUNTLET_WHEEL:-}"
package="${GAUNTLET_PACKAGE:-}"

if [ -n "$wheel" ]; then
  case "$wheel" in
    http://* | https://*) requirement="$wheel" ;;
    *)
      # A glob such as dist/*.whl: exactly one match, or a clear error.
      shopt -s nullglob
      # shellcheck disable=SC2206 # the glob is meant to expand
      matches=($wheel)
      shopt -u nullglob
      if [ ${#matches[@]} -ne 1 ]; then
        echo "::error title=gauntlet::input \`wheel\` = '$wheel' matches ${#matches[@]} files; it must name exactly one wheel" >&2
        exit 2
      fi
      requirement="${matches[0]}"
      ;;
  esac
elif [ -n "$package" ]; then
  requirement="$package"
else
  version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$here/../Cargo.toml")
  if [ -z "$version" ]; then
    echo "::error title=gauntlet::no version under [workspace.package] in $here/../Cargo.toml; set the input \`wheel\` or \`package\`" >&2
    exit 2
  fi
  requirement="gauntlet-robustness==$version"
fi

venv="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/gauntlet-venv"
rm -rf "$venv"
"$python" -m venv "$venv"
echo "installing $requirement"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$requirement"

gauntlet="$venv/bin/gauntlet"
if [ ! -x "$gauntlet" ]; then
  echo "::error title=gauntlet::$requirement installed no \`gauntlet\` executable into $venv/bin" >&2
  exit 2
fi
"$gauntlet" --version
echo "gauntlet=$gauntlet" >> "${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
[ -z "${GITHUB_PATH:-}" ] || echo "$venv/bin" >> "$GITHUB_PATH"
