#!/bin/sh
# One shard of a nightly run, then an attempt to merge (the pod entry point
# of the Kubernetes Indexed Job; baked into the image as
# /usr/local/bin/shard-and-merge).
#
# Kubernetes sets JOB_COMPLETION_INDEX; NIGHTSCREEN_SHARDS must equal the
# Job's completions. Exit 1 from `run` (some input files unreadable: rows in
# OUT/errors) is a finished shard, not a failed pod. `merge` exits 3 while
# other shards are still running: the last shard to finish merges.
set -u
: "${NIGHTSCREEN_INPUT:?}" "${NIGHTSCREEN_OUT:?}"
night="${NIGHT:-$(date -u +%Y-%m-%d)}"
out="$NIGHTSCREEN_OUT/$night"
nightscreen run --quiet --config "${NIGHTSCREEN_CONFIG:-/opt/nightscreen/configs/desp.toml}" \
  --input "$NIGHTSCREEN_INPUT" --out "$out" "$@"
rc=$?
[ "$rc" -le 1 ] || exit "$rc"
nightscreen merge "$out"
rc=$?
case "$rc" in 0|1|3) exit 0 ;; *) exit "$rc" ;; esac
