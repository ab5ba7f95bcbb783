#!/usr/bin/env bash
# Step 4 of the action (action.yml): fail the step with gauntlet's own exit code (1 a gate or
# sanity check failed, 2 it could not run), after the summary has been published.
set -euo pipefail
code="${GAUNTLET_EXIT_CODE:-}"
case "$code" in
  0) exit 0 ;;
  1) echo "::error title=gauntlet::a gate or sanity check failed (exit 1); see the step summary" >&2 ;;
  2) echo "::error title=gauntlet::gauntlet could not run (exit 2); see the log of the run step" >&2 ;;
  '') echo "::error title=gauntlet::gauntlet did not run" >&2; exit 2 ;;
  *) echo "::error title=gauntlet::gauntlet exited with $code" >&2 ;;
esac
exit "$code"
