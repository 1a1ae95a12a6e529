#!/usr/bin/env bash
# The swap on merge (called by .github/workflows/cpswap-deploy.yml and .gitlab-ci.yml, in a protected
# environment, one run per stack at a time):
#
#   ci/deploy.sh STACK OUT_DIR
#
# 1. `cpswap plan --json` (the run record starts with what is about to run; a refusal stops here,
#    before any pulumi call);
# 2. `pulumi up --policy-pack policies --yes` with SSH_AUTH_SOCK unset (a stale agent socket fails every
#    remote command of pulumi-command, which prefers the agent when the variable is set);
# 3. only when `up` succeeded: `.cpswap/applied-STACK.json` from `pulumi stack output --json` (after a
#    failed `up` the stack outputs may already hold the new membership; the file must not move).
# OUT_DIR (the run record: plan.json, plan.md, up.log, summary.md) is kept as an artifact with the
# PVC-recovery journals (.cpswap/recovery/); the steps' run record (.cpswap/runs/STACK/steps.jsonl, read by
# `cpswap status`) lands in the same directory, one run per CI job (CPSWAP_RUN_ID); snapshots (.cpswap/snapshots/) are not: they hold every
# cluster Secret and go only where the stack config says. A failure's summary.md names the failed
# step and says that re-running converges.
set -uo pipefail
if [ "$#" -ne 2 ]; then echo "usage: ci/deploy.sh STACK OUT_DIR" >&2; exit 2; fi
stack=$1 out=$2
unset SSH_AUTH_SOCK
# the run record's run id (cpswap/executors/runrecord.py): this CI job, on GitHub Actions or GitLab CI
export CPSWAP_RUN_ID="${CPSWAP_RUN_ID:-${GITHUB_RUN_ID:+github-$GITHUB_RUN_ID-${GITHUB_RUN_ATTEMPT:-1}}${CI_JOB_ID:+gitlab-$CI_JOB_ID}}"
mkdir -p "$out"
fail() {  # $1 = the CI step that failed, $2 = its exit code, $3 = its log in OUT_DIR
  cpswap ci failure --stack "$stack" --log "$out/$3" --plan "$out/plan.json" --step "$1" > "$out/summary.md"
  cat "$out/summary.md" >&2
  exit "$2"
}
cpswap plan --stack "$stack" --json > "$out/plan.json" 2> "$out/plan.err"
rc=$?
if [ "$rc" -ne 0 ]; then
  cpswap plan --stack "$stack" > "$out/plan.txt" 2>> "$out/plan.err"
  cat "$out/plan.txt" "$out/plan.err" > "$out/plan.log"
  fail "cpswap plan (refused or invalid: nothing was run)" "$rc" plan.log
fi
cpswap plan --stack "$stack" --format markdown > "$out/plan.md"
echo "cpswap deploy: stack $stack: pulumi up --policy-pack policies --yes"
pulumi up --stack "$stack" --policy-pack policies --yes --non-interactive 2>&1 | tee "$out/up.log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then fail "pulumi up" "$rc" up.log; fi
mkdir -p .cpswap
if ! pulumi stack output --stack "$stack" --json > "$out/outputs.json" 2> "$out/outputs.err"; then
  fail "pulumi stack output (up succeeded; re-run to record the membership)" 1 outputs.err
fi
mv "$out/outputs.json" ".cpswap/applied-$stack.json"
{ echo "## cpswap deploy of stack $stack succeeded"; echo
  echo "\`.cpswap/applied-$stack.json\` now holds the deployed membership."; echo
  cat "$out/plan.md"; } > "$out/summary.md"
echo "cpswap deploy: stack $stack: up succeeded; wrote .cpswap/applied-$stack.json"
