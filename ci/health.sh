#!/usr/bin/env bash
# The scheduled read-only health check of one stack (called by .github/workflows/cpswap-health.yml and
# the scheduled GitLab pipeline). `cpswap status` does not exist yet: this is
# `cpswap plan --observe --json` (read-only etcd and Kubernetes reads, short timeout) judged by
# `cpswap ci health`, which fails when a member is unhealthy, is a learner, is missing from etcd, or
# the live or last deployed membership differs from the stack file, naming the slot and the edit.
#
#   ci/health.sh STACK OUT_DIR        writes OUT_DIR/plan.json and OUT_DIR/health.md
set -uo pipefail
if [ "$#" -ne 2 ]; then echo "usage: ci/health.sh STACK OUT_DIR" >&2; exit 2; fi
stack=$1 out=$2
mkdir -p "$out"
if [ -z "${CPSWAP_ETCD_CACERT_DATA:-}" ] || [ -z "${CPSWAP_ETCD_CERT_DATA:-}" ] || [ -z "${CPSWAP_ETCD_KEY_DATA:-}" ]; then
  echo "cpswap health: stack $stack: observation is not configured (CPSWAP_ETCD_CACERT_DATA, CPSWAP_ETCD_CERT_DATA, CPSWAP_ETCD_KEY_DATA); nothing checked" | tee "$out/health.md"
  exit 0
fi
cpswap plan --stack "$stack" --observe --json > "$out/plan.json" 2> "$out/plan.err"
rc=$?
if [ "$rc" -eq 2 ] || [ ! -s "$out/plan.json" ]; then
  { echo "## cpswap health: stack $stack: the plan could not be made"; echo; echo '```text'; cat "$out/plan.err"; echo '```'; } > "$out/health.md"
  cat "$out/health.md" >&2
  exit 2
fi
cpswap ci health --stack "$stack" --plan "$out/plan.json" > "$out/health.md"
rc=$?
cat "$out/health.md"
exit "$rc"
