#!/usr/bin/env bash
# cpswap review of one stack for a pull or merge request (called by .github/workflows/cpswap-review.yml
# and .gitlab-ci.yml): `cpswap check` and `cpswap plan --format markdown` against the merge base.
#
#   ci/review.sh STACK MERGE_BASE OUT_DIR
#
# Writes OUT_DIR/check.txt, plan.md, plan.err and comment.md (the one comment CI keeps updated: a
# hidden marker, a refusal's or an error's message on top, the plan, the check). Observation is
# read-only and on only when the CPSWAP_ETCD_*_DATA credentials are set (scope them for reading).
# Exit: 0 the plan is clean, 1 refused or a rule is violated, 2 invalid stack config.
set -uo pipefail
if [ "$#" -ne 3 ]; then echo "usage: ci/review.sh STACK MERGE_BASE OUT_DIR" >&2; exit 2; fi
stack=$1 base=$2 out=$3
mkdir -p "$out"
observe=()
if [ -n "${CPSWAP_ETCD_CACERT_DATA:-}" ] && [ -n "${CPSWAP_ETCD_CERT_DATA:-}" ] && [ -n "${CPSWAP_ETCD_KEY_DATA:-}" ]; then
  observe=(--observe)
  echo "cpswap review: observation on (read-only, credentials from the CI secret store)"
else
  echo "cpswap review: observation off (no CPSWAP_ETCD_* credentials configured)"
fi
cpswap check --stack "$stack" --base "$base" "${observe[@]}" > "$out/check.txt" 2>&1
check_rc=$?
cpswap plan --stack "$stack" --base "$base" --format markdown "${observe[@]}" > "$out/plan.md" 2> "$out/plan.err"
plan_rc=$?
cpswap ci comment --stack "$stack" --plan "$out/plan.md" --plan-error "$out/plan.err" --plan-exit "$plan_rc" \
  --check "$out/check.txt" --check-exit "$check_rc" --details-url "${CPSWAP_DETAILS_URL:-}" > "$out/comment.md"
cat "$out/check.txt"
if [ "$plan_rc" -ne 0 ]; then
  echo "cpswap review: stack $stack: cpswap plan exited $plan_rc:" >&2
  grep -m 5 -E '^> - REFUSED|^cpswap:' "$out/plan.md" "$out/plan.err" >&2 || cat "$out/plan.err" >&2
  exit "$plan_rc"
fi
exit "$check_rc"
