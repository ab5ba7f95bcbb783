#!/usr/bin/env bash
# Tests of the GitHub Action (action.yml) on this machine, with a built gauntlet wheel:
#
# 1. action.yml against SchemaStore's github-action schema (vendored by check-jsonschema, from
#    PyPI, pinned), and a broken copy of it that the schema must reject (the validator validates);
# 2. action.yml run step by step by run_action.py (its own runner for what the action uses) in
#    four situations, with a stand-in `gh` (tests/gh) that records the comment calls:
#    - a passing suite on a pull request: every step succeeds, exit-code 0, the step summary is
#      gauntlet's summary.md, a new comment carrying the marker and the summary is posted, the
#      venv's bin folder is on GITHUB_PATH;
#    - a failing gate on a pull request that already has this step's comment: the last step
#      fails with 1, the summary says failed, the earlier comment is updated (PATCH), not added;
#    - a suite that does not exist: exit 2, the step summary says it could not run, the step
#      fails with 2, no comment outside a pull request;
#    - a wheel glob that matches nothing: the install step fails, the summary still says so,
#      the run and the exit step are skipped.
#
# Usage: action/tests/test.sh WHEEL   (.ci/wheel-test.sh builds the wheel and calls this)
# Environment: GAUNTLET_ACTION_TEST_VENV (default $TMPDIR/gauntlet-action-test-venv).
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true

wheel="$(realpath "${1:?usage: action/tests/test.sh WHEEL}")"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
tests="$repo/action/tests"

venv="${GAUNTLET_ACTION_TEST_VENV:-${TMPDIR:-/tmp}/gauntlet-action-test-venv}"
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
# check-jsonschema vendors SchemaStore's schemas (vendor.github-actions) and brings ruamel.yaml,
# which run_action.py reads action.yml with.
"$venv/bin/pip" install --quiet --disable-pip-version-check 'check-jsonschema==0.39.0'
py="$venv/bin/python"

fail() { echo "action test FAILED: $*" >&2; exit 1; }

echo "-- action.yml against SchemaStore's github-action schema"
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-actions "$repo/action.yml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A composite `run` step must name its shell: the schema must refuse the copy without one.
"$py" - "$repo/action.yml" "$work/broken-action.yml" <<'PY'
import sys
from ruamel.yaml import YAML
yaml = YAML(typ="safe")
action = yaml.load(open(sys.argv[1], encoding="utf-8"))
del action["runs"]["steps"][0]["shell"]
yaml.dump(action, open(sys.argv[2], "w", encoding="utf-8"))
PY
if "$venv/bin/check-jsonschema" --builtin-schema vendor.github-actions "$work/broken-action.yml" > "$work/broken.log" 2>&1; then
  fail "the schema accepted a composite step without \`shell\`"
fi
echo "ok: a step without \`shell\` is rejected"

# One situation: a fresh workspace folder, runner files and event; runs the action there.
# scenario NAME EVENT_JSON COMMENTS_JSON [--input k=v]...; sets $dir; returns the action's code.
scenario() {
  local name="$1" event="$2" comments="$3"
  shift 3
  dir="$work/$name"
  mkdir -p "$dir/runner-temp"
  : > "$dir/step-summary.md"
  : > "$dir/path"
  : > "$dir/gh.log"
  printf '%s' "$event" > "$dir/event.json"
  printf '%s' "$comments" > "$dir/comments.json"
  cp "$wheel" "$dir/"
  echo "-- scenario: $name"
  local code=0
  (
    cd "$dir"
    env -u GITHUB_STEP_SUMMARY -u GITHUB_OUTPUT \
      PATH="$tests:$PATH" \
      GITHUB_STEP_SUMMARY="$dir/step-summary.md" GITHUB_PATH="$dir/path" \
      GITHUB_EVENT_PATH="$dir/event.json" GITHUB_REPOSITORY="owner/repo" GITHUB_JOB="robustness" \
      RUNNER_TEMP="$dir/runner-temp" \
      FAKE_GH_LOG="$dir/gh.log" FAKE_GH_COMMENTS="$dir/comments.json" \
      "$py" "$tests/run_action.py" "$repo/action.yml" "$dir/report.json" "$@"
  ) > "$dir/log" 2>&1 || code=$?
  return "$code"
}

# check DIR PYTHON-EXPRESSIONS: asserts over report (the runner's JSON), summary (the step
# summary's text), calls (gh's argument lists), body (the comment posted, or None), path.
check() {
  "$py" - "$1" "$2" <<'PY' || { cat "$1/log" >&2; fail "scenario $(basename "$1")"; }
import json, os, sys
d = sys.argv[1]
report = json.load(open(f"{d}/report.json", encoding="utf-8"))
summary = open(f"{d}/step-summary.md", encoding="utf-8").read()
calls = [json.loads(line) for line in open(f"{d}/gh.log", encoding="utf-8")]
body = open(f"{d}/gh.log.body", encoding="utf-8").read() if os.path.exists(f"{d}/gh.log.body") else None
path = open(f"{d}/path", encoding="utf-8").read()
outcomes = [s["outcome"] for s in report["steps"]]
for line in sys.argv[2].strip().splitlines():
    assert eval(line), f"{line}\n  steps: {report['steps']}\n  outputs: {report['outputs']}\n  summary: {summary[:300]!r}\n  gh: {calls}"
PY
  echo "ok: $(basename "$1")"
}

# A small suite on the bundled model and data (seconds even in a debug build).
suite() {
  cat > "$1" <<EOF
version = 1
name = "action test"
seed = 0
batch_size = 64

[model]
spec = "embedded:fashion-mnist-small-cnn"
weights = "embedded:fashion-mnist-small-cnn"

[dataset]
format = "idx"
path = "embedded:fashion-mnist-test-1k"
limit = 64

[[attack]]
name = "fgsm"
epsilons = [0.05]

[gate]
min_clean_accuracy = $2
EOF
}
mkdir -p "$work/suites"
suite "$work/suites/pass.toml" 0.5
suite "$work/suites/fail.toml" 0.99
pr_event='{"pull_request": {"number": 7}}'

scenario pass "$pr_event" '[{"id": 11, "body": "an unrelated comment"}]' \
  --input "wheel=*.whl" --input "suite=$work/suites/pass.toml" --input comment=true --input "args=--seed 3 --quiet" ||
  { cat "$dir/log" >&2; fail "pass: the action failed"; }
check "$dir" '
outcomes == ["success", "success", "success", "success"]
report["outputs"]["exit-code"] == "0"
report["outputs"]["results"] == "gauntlet-out/results.json" and os.path.isfile(f"{d}/gauntlet-out/results.json")
json.load(open(f"{d}/gauntlet-out/results.json"))["seed"] == 3
summary == open(f"{d}/gauntlet-out/summary.md", encoding="utf-8").read()
"✅ passed" in summary
[c[:3] for c in calls] == [["api", "--paginate", "repos/owner/repo/issues/7/comments"], ["api", "--method", "POST"]]
calls[1][3] == "repos/owner/repo/issues/7/comments"
body.startswith("<!-- gauntlet-summary: job=robustness suite=") and body.split("\n", 1)[1] == summary
path.strip() == f"{d}/runner-temp/gauntlet-venv/bin"
'

# The same marker as the pass scenario's comment would carry, so the step updates it.
marker="<!-- gauntlet-summary: job=robustness suite=$work/suites/fail.toml out=gauntlet-out -->"
comments=$("$py" -c 'import json, sys; print(json.dumps([{"id": 11, "body": "an unrelated comment"}, {"id": 42, "body": sys.argv[1] + "\nlast push"}]))' "$marker")
code=0
scenario fail-gate "$pr_event" "$comments" \
  --input "wheel=$(basename "$wheel")" --input "suite=$work/suites/fail.toml" --input comment=true || code=$?
[ "$code" -eq 1 ] || { cat "$dir/log" >&2; fail "fail-gate: the action exited $code, expected 1"; }
check "$dir" '
outcomes == ["success", "success", "success", "failure"]
report["steps"][3]["exit_code"] == 1 and report["outputs"]["exit-code"] == "1"
"❌ failed (1 gate failed)" in summary
[c[:4] for c in calls][1] == ["api", "--method", "PATCH", "repos/owner/repo/issues/comments/42"]
len(calls) == 2
body.split("\n", 1)[1] == summary
'

code=0
scenario missing-suite '{"push": {}}' '[]' \
  --input "wheel=*.whl" --input "suite=no-such-suite.toml" --input comment=true || code=$?
[ "$code" -eq 2 ] || { cat "$dir/log" >&2; fail "missing-suite: the action exited $code, expected 2"; }
check "$dir" '
outcomes == ["success", "success", "success", "failure"]
report["outputs"]["exit-code"] == "2" and report["outputs"]["results"] == ""
"could not run (exit 2)" in summary
calls == []
'

code=0
scenario no-wheel "$pr_event" '[]' --input "wheel=dist/*.whl" || code=$?
[ "$code" -eq 2 ] || { cat "$dir/log" >&2; fail "no-wheel: the action exited $code, expected 2"; }
check "$dir" '
outcomes == ["failure", "skipped", "success", "skipped"]
"did not run" in summary
report["outputs"]["exit-code"] == ""
'
grep -q "matches 0 files" "$dir/log" || fail "no-wheel: the install step did not say why"

echo "action tests: 4 scenarios and the schema check passed"
