#!/usr/bin/env bash
# Validate the CI examples against their published schemas:
#   github-actions.yml         against SchemaStore's github-workflow schema, as vendored by
#                               check-jsonschema (PyPI, `--builtin-schema vendor.github-workflows`)
#   kubernetes-indexed-job.yaml against the Kubernetes API schemas shipped by
#                               kubernetes-validate (PyPI), strict (unknown fields refused)
# Both install from PyPI into a venv (GAUNTLET_SCHEMA_VENV, default $TMPDIR/gauntlet-ci-schemas).
# With GAUNTLET_SCHEMA_OFFLINE=1 nothing is installed: the check is skipped (exit 0, with a
# message) when the tools are not already in the venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${GAUNTLET_SCHEMA_VENV:-${TMPDIR:-/tmp}/gauntlet-ci-schemas}"
if [ ! -x "$venv/bin/check-jsonschema" ] || [ ! -x "$venv/bin/kubernetes-validate" ]; then
  if [ "${GAUNTLET_SCHEMA_OFFLINE:-0}" = 1 ]; then
    echo "skipped: check-jsonschema and kubernetes-validate are not installed in $venv"
    exit 0
  fi
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    check-jsonschema==0.39.0 kubernetes-validate==1.37.0
fi
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "$here/github-actions.yml"
"$venv/bin/kubernetes-validate" --strict --kubernetes-version 1.33.0 "$here/kubernetes-indexed-job.yaml"
echo "ok: the CI examples match their schemas"
