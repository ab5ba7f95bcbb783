#!/usr/bin/env bash
# Step 2 of the action (action.yml): `gauntlet run`, whose exit code is recorded, not returned,
# so that the summary is published whatever the outcome; exit.sh fails the step afterwards.
#
# GAUNTLET_BIN (from install.sh), GAUNTLET_SUITE (empty: the embedded default), GAUNTLET_OUT,
# GAUNTLET_FORMATS (empty: the suite's own), GAUNTLET_ARGS (split on whitespace).
#
# Outputs: exit-code, out, results and summary (paths, empty when the file was not written).
set -euo pipefail

gauntlet="${GAUNTLET_BIN:?GAUNTLET_BIN is not set (did the install step run?)}"
out="${GAUNTLET_OUT:-gauntlet-out}"

args=(run)
[ -z "${GAUNTLET_SUITE:-}" ] || args+=("$GAUNTLET_SUITE")
args+=(--out "$out")
[ -z "${GAUNTLET_FORMATS:-}" ] || args+=(--format "$GAUNTLET_FORMATS")
extra=()
[ -z "${GAUNTLET_ARGS:-}" ] || read -r -a extra <<< "$GAUNTLET_ARGS"

# ${extra[@]+…}: an empty array under `set -u` is an error in bash before 4.4 (macOS's).
echo "gauntlet ${args[*]} ${extra[*]+${extra[*]}}"
code=0
"$gauntlet" "${args[@]}" ${extra[@]+"${extra[@]}"} || code=$?

results=""
summary=""
[ ! -f "$out/results.json" ] || results="$out/results.json"
[ ! -f "$out/summary.md" ] || summary="$out/summary.md"
{
  echo "exit-code=$code"
  echo "out=$out"
  echo "results=$results"
  echo "summary=$summary"
} >> "${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
echo "gauntlet exited with $code"
