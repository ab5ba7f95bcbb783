"""Run the composite action in action.yml the way GitHub's runner does, on this machine.

It reads action.yml itself (not a copy of its steps), so a wrong input name, a step output that
no step sets, or a missing `if: always()` fails the tests instead of the first real workflow.
What it implements of the runner is what action.yml uses, and it refuses anything else:

- `${{ inputs.NAME }}` (the given value, else the input's default, itself expanded),
  `${{ steps.ID.outputs.NAME }}` (empty when unset, as on GitHub) and `${{ github.token }}`;
- a step's `if:` absent (runs only while every earlier step succeeded) or `always()`;
- `shell: bash` steps, run as `bash --noprofile --norc -eo pipefail FILE` with the step's `env`,
  GITHUB_ACTION_PATH, and fresh GITHUB_OUTPUT files, whose `key=value` lines become outputs;
- the action's `outputs`, expanded after the last step.

Usage: run_action.py ACTION_YML REPORT_JSON [--input NAME=VALUE]... [--token TOKEN]
The environment (GITHUB_STEP_SUMMARY, GITHUB_PATH, GITHUB_EVENT_PATH, RUNNER_TEMP …) is the
caller's. REPORT_JSON gets {"steps": [{"id", "name", "outcome", "exit_code"}], "outputs": {…}};
the exit code is 0 when every step succeeded, else that of the first failed step.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

from ruamel.yaml import YAML

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


class Unsupported(Exception):
    pass


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    action_path, report_path = argv[1], argv[2]
    given, token = {}, "fake-token"
    rest = argv[3:]
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--input":
            name, _, val = value.partition("=")
            given[name] = val
        elif flag == "--token":
            token = value
        else:
            sys.exit(f"unknown flag {flag}")

    with open(action_path, encoding="utf-8") as f:
        action = YAML(typ="safe").load(f)
    declared = action.get("inputs", {})
    for name in given:
        if name not in declared:
            raise Unsupported(f"input `{name}` is not declared in {action_path}")
    runs = action["runs"]
    if runs.get("using") != "composite":
        raise Unsupported("only composite actions")

    step_outputs = {}

    def expand(text, depth=0):
        if not isinstance(text, str):
            return "" if text is None else str(text).lower() if isinstance(text, bool) else str(text)

        def one(match):
            expr = match.group(1)
            parts = expr.split(".")
            if parts[0] == "inputs" and len(parts) == 2:
                name = parts[1]
                if name not in declared:
                    raise Unsupported(f"`{expr}`: no input `{name}` in action.yml")
                if name in given:
                    return given[name]
                if depth > 3:
                    raise Unsupported(f"`{expr}`: default refers to itself")
                return expand(declared[name].get("default", ""), depth + 1)
            if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
                ids = [s.get("id") for s in runs["steps"]]
                if parts[1] not in ids:
                    raise Unsupported(f"`{expr}`: no step with id `{parts[1]}`")
                return step_outputs.get(parts[1], {}).get(parts[3], "")
            if expr == "github.token":
                return token
            raise Unsupported(f"expression `{expr}` is not supported by this test runner")

        return EXPRESSION.sub(one, text)

    action_dir = os.path.dirname(os.path.abspath(action_path))
    report = {"steps": [], "outputs": {}}
    failed_code = 0
    for index, step in enumerate(runs["steps"]):
        known = {"name", "id", "if", "shell", "env", "run"}
        if set(step) - known:
            raise Unsupported(f"step {index}: keys {sorted(set(step) - known)}")
        condition = step.get("if")
        if condition not in (None, "always()"):
            raise Unsupported(f"step {index}: `if: {condition}`")
        if step.get("shell") != "bash":
            raise Unsupported(f"step {index}: shell must be bash")
        entry = {"id": step.get("id"), "name": step.get("name"), "outcome": "skipped", "exit_code": None}
        report["steps"].append(entry)
        if failed_code and condition != "always()":
            continue
        env = dict(os.environ)
        env.update({k: expand(v) for k, v in (step.get("env") or {}).items()})
        env["GITHUB_ACTION_PATH"] = action_dir
        with tempfile.TemporaryDirectory() as tmp:
            out_file = os.path.join(tmp, "output")
            open(out_file, "w").close()
            script = os.path.join(tmp, "step.sh")
            with open(script, "w", encoding="utf-8") as f:
                f.write(expand(step["run"]))
            env["GITHUB_OUTPUT"] = out_file
            print(f"::group::{step.get('name')}", flush=True)
            code = subprocess.call(["bash", "--noprofile", "--norc", "-eo", "pipefail", script], env=env)
            print("::endgroup::", flush=True)
            outputs = {}
            with open(out_file, encoding="utf-8") as f:
                for line in f.read().splitlines():
                    if "<<" in line.split("=", 1)[0]:
                        raise Unsupported(f"step {index}: multi-line outputs are not supported here")
                    key, sep, value = line.partition("=")
                    if not sep:
                        raise Unsupported(f"step {index}: output line without `=`: {line!r}")
                    outputs[key] = value
        if step.get("id"):
            step_outputs[step["id"]] = outputs
        entry["outcome"] = "success" if code == 0 else "failure"
        entry["exit_code"] = code
        if code and not failed_code:
            failed_code = code

    for name, spec in (action.get("outputs") or {}).items():
        report["outputs"][name] = expand(spec.get("value", ""))
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return failed_code


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Unsupported as e:
        print(f"run_action.py: {e}", file=sys.stderr)
        sys.exit(99)
