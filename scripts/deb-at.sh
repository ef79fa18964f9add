#!/bin/bash
# The .deb of an earlier commit, built the way that commit's `make deb` built it (the tracked tree,
# dpkg-buildpackage -us -uc -b), for the upgrade test of `make systemd-test`. Cached by commit:
# build/deb-at/<full hash>/ holds the package once built, and later runs print it without rebuilding.
#
#   scripts/deb-at.sh COMMIT    -> prints the path of defender-agent_<version>_all.deb
set -euo pipefail

commit=$(git rev-parse --verify --quiet "${1:?usage: scripts/deb-at.sh COMMIT}^{commit}") \
  || { echo "deb-at: no commit $1 in this repository" >&2; exit 1; }
top=$(git rev-parse --show-toplevel)
dir="$top/build/deb-at/$commit"
shopt -s nullglob
built=("$dir"/defender-agent_*_all.deb)
if [ ${#built[@]} -eq 1 ]; then
  echo "${built[0]}"
  exit 0
fi
rm -rf "$dir"
mkdir -p "$dir/src"
git -C "$top" archive "$commit" | tar -x -C "$dir/src"
(cd "$dir/src" && dpkg-buildpackage -us -uc -b >"$dir/build.log" 2>&1) \
  || { tail -40 "$dir/build.log" >&2; echo "deb-at: building $commit failed ($dir/build.log)" >&2; exit 1; }
rm -rf "$dir/src"
built=("$dir"/defender-agent_*_all.deb)
[ ${#built[@]} -eq 1 ] || { echo "deb-at: $commit built ${#built[@]} packages, expected one" >&2; exit 1; }
echo "${built[0]}"
