#!/usr/bin/env bash
# Step 3 of the action (action.yml), run whatever the outcome: append gauntlet's summary.md to
# the job's step summary and, on a pull request, post it as a comment that replaces this step's
# comment from an earlier push (found by a hidden marker), so a pull request carries one
# up-to-date summary per gauntlet step instead of one per push.
#
# GAUNTLET_SUMMARY_FILE (from run.sh; empty when gauntlet wrote none, e.g. exit 2 or no
# `markdown` format), GAUNTLET_EXIT_CODE, GAUNTLET_STEP_SUMMARY and GAUNTLET_COMMENT
# (`true`/`false`), GAUNTLET_COMMENT_KEY, GAUNTLET_SUITE and GAUNTLET_OUT (for the marker),
# GAUNTLET_PYTHON, GH_TOKEN. A comment that cannot be posted (a fork's read-only token) is a
# warning, not a failure: the verdict is the exit code's, in the last step.
set -euo pipefail

python="${GAUNTLET_PYTHON:-python3}"
code="${GAUNTLET_EXIT_CODE:-}"
file="${GAUNTLET_SUMMARY_FILE:-}"

body="$(mktemp)"
trap 'rm -f "$body"' EXIT
if [ -n "$file" ] && [ -f "$file" ]; then
  cat "$file" > "$body"
else
  # No summary.md: say why instead of publishing nothing.
  case "$code" in
    2) reason="gauntlet could not run (exit 2): bad input or an unreadable file; the run step's log names it." ;;
    '') reason="gauntlet did not run (the install step failed)." ;;
    *) reason="gauntlet exited with $code but wrote no summary.md (is \`markdown\` among the formats?)." ;;
  esac
  printf '## gauntlet\n\n❌ %s\n' "$reason" > "$body"
fi

for flag in "${GAUNTLET_STEP_SUMMARY:-true}" "${GAUNTLET_COMMENT:-false}"; do
  case "$flag" in
    true | false) ;;
    *) echo "::error title=gauntlet::the inputs \`summary\` and \`comment\` are \`true\` or \`false\`, got '$flag'" >&2; exit 2 ;;
  esac
done

if [ "${GAUNTLET_STEP_SUMMARY:-true}" = true ]; then
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$body" >> "$GITHUB_STEP_SUMMARY"
    echo "summary appended to the step summary"
  else
    echo "GITHUB_STEP_SUMMARY is not set; no step summary written"
  fi
fi

[ "${GAUNTLET_COMMENT:-false}" = true ] || exit 0

pr=""
if [ -n "${GITHUB_EVENT_PATH:-}" ] && [ -f "$GITHUB_EVENT_PATH" ]; then
  pr=$("$python" -c 'import json, sys
event = json.load(open(sys.argv[1], encoding="utf-8"))
number = (event.get("pull_request") or {}).get("number")
print(number if isinstance(number, int) else "")' "$GITHUB_EVENT_PATH")
fi
if [ -z "$pr" ]; then
  echo "::notice title=gauntlet::not a pull-request event; no comment posted"
  exit 0
fi

key="${GAUNTLET_COMMENT_KEY:-job=${GITHUB_JOB:-} suite=${GAUNTLET_SUITE:-embedded default} out=${GAUNTLET_OUT:-gauntlet-out}}"
# One line, no comment terminator, so the marker stays an HTML comment whatever the key holds.
key=$(printf '%s' "$key" | tr '\n\r' '  ' | sed 's/--/- -/g')
marker="<!-- gauntlet-summary: $key -->"
comment="$(mktemp)"
trap 'rm -f "$body" "$comment"' EXIT
# A pull-request comment holds at most 65,536 characters; cut a long summary at a line end.
"$python" - "$body" "$comment" "$marker" <<'PY'
import sys
body = open(sys.argv[1], encoding="utf-8").read()
limit = 60000
if len(body) > limit:
    body = body[: body.rfind("\n", 0, limit) + 1] + "\n… (cut: the full summary is in the step summary and summary.md)\n"
with open(sys.argv[2], "w", encoding="utf-8") as out:
    out.write(sys.argv[3] + "\n" + body)
PY

repo="${GITHUB_REPOSITORY:?GITHUB_REPOSITORY is not set}"
existing=$(gh api --paginate "repos/$repo/issues/$pr/comments" \
  --jq ".[] | select(.body | startswith($(printf '%s' "$marker" | "$python" -c 'import json, sys; print(json.dumps(sys.stdin.read()))'))) | .id" \
  2>/dev/null | tail -n 1) || existing=""
if [ -n "$existing" ]; then
  if gh api --method PATCH "repos/$repo/issues/comments/$existing" -F "body=@$comment" > /dev/null; then
    echo "updated comment $existing on pull request #$pr"
  else
    echo "::warning title=gauntlet::could not update comment $existing on pull request #$pr (does the token have pull-requests: write?)"
  fi
elif gh api --method POST "repos/$repo/issues/$pr/comments" -F "body=@$comment" > /dev/null; then
  echo "commented on pull request #$pr"
else
  echo "::warning title=gauntlet::could not comment on pull request #$pr (a fork's token is read-only; does the token have pull-requests: write?)"
fi
