#!/usr/bin/env bash
# What one call of the device tool (`run`) carries, and how to keep it under its 64 MiB limit.
#
# A call sends the tracked files, the untracked files git does not ignore, and the paths named in
# `carry` (/work/.library/device/README.md). The shipped weights and their ONNX twins
# (src/ferlab/pretrained/, ~90 MiB) are tracked, so with them no call fits, let alone one that
# also carries the 43.7 MiB data pack (.devdata, maintainers/scripts/pack_data.py). No GPU script needs them:
# it trains from the pack and brings its checkpoint back in $OUT. So before the device calls,
# untrack them (they stay on disk, and git ignores them locally), and afterwards track them again:
#
#   bash maintainers/scripts/device_tree.sh size [PATH...]   MiB a call would carry now (PATH...: what `carry` names)
#   bash maintainers/scripts/device_tree.sh slim             untrack src/ferlab/pretrained/*.safetensors and *.onnx
#   bash maintainers/scripts/device_tree.sh restore          track them again; the tree is as before `slim`
#
# A GPU script that needs one shipped model (e.g. a teacher) names its file in `carry`: an ignored
# path that `carry` names travels. `slim` refuses while anything is staged, and `restore` must run
# before the next commit (a commit in between would delete the weights from the project).
set -euo pipefail
cd "$(dirname "$0")/../.."
EXCLUDE=$(git rev-parse --git-path info/exclude)
MARK=$(git rev-parse --git-path ferlab-device-slim)
BEGIN="# ferlab device_tree.sh slim: begin"
END="# ferlab device_tree.sh slim: end"
WEIGHTS=(src/ferlab/pretrained/*.safetensors src/ferlab/pretrained/*.onnx)

mib() {  # NUL-separated paths on stdin -> total MiB of the regular files among them
  xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {printf "%.1f", s / 1048576}'
}

case "${1:-}" in
  size)
    shift
    tree=$(git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
             [ -f "$f" ] && printf '%s\0' "$f"; done | mib)
    carried=0.0
    if [ $# -gt 0 ]; then carried=$(find "$@" -type f -print0 | mib); fi
    total=$(awk -v a="$tree" -v b="$carried" 'BEGIN {printf "%.1f", a + b}')
    echo "working tree ${tree} MiB + carry ${carried} MiB = ${total} MiB (limit 64 MiB)"
    awk -v t="$total" 'BEGIN {exit !(t <= 64)}' || { echo "over the limit: see bash maintainers/scripts/device_tree.sh slim"; exit 1; }
    ;;
  slim)
    [ -e "$MARK" ] && { echo "already slim (bash maintainers/scripts/device_tree.sh restore undoes it)"; exit 1; }
    git diff --cached --quiet || { echo "refusing: changes are staged; commit or unstage them first"; exit 1; }
    git rm -r -q --cached -- "${WEIGHTS[@]}"
    mkdir -p "$(dirname "$EXCLUDE")"
    printf '%s\n/src/ferlab/pretrained/*.safetensors\n/src/ferlab/pretrained/*.onnx\n%s\n' "$BEGIN" "$END" >> "$EXCLUDE"
    : > "$MARK"
    echo "untracked ${#WEIGHTS[@]} weight files (still on disk); run 'bash maintainers/scripts/device_tree.sh restore' before committing"
    ;;
  restore)
    [ -e "$MARK" ] || { echo "not slim: nothing to restore"; exit 0; }
    git reset -q -- src/ferlab/pretrained
    sed -i "/^$BEGIN\$/,/^$END\$/d" "$EXCLUDE"
    rm -f "$MARK"
    echo "the shipped weights are tracked again"
    ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
