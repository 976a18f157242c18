# cicache: the incremental extract of one cache mount, run by the extract helper build
# (crates/cicache-docker/src/dance/incremental.rs). POSIX sh with find, stat -c, awk, cut,
# and cpio or cp -a: busybox has them all.
#
#   sh extract-changed.sh MOUNT LOCAL_LIST OUT
#
# MOUNT       the cache mount's target
# LOCAL_LIST  one line "SIZE MTIME ./PATH" for each file and symlink of the workspace copy
# OUT         gets OUT/list (the same lines for the mount), OUT/dirs ("MODE ./PATH" for each
#             directory of the mount), and OUT/files/, a copy of every file and symlink of
#             the mount whose line is not in LOCAL_LIST (new, or changed in size or mtime)
set -e
mount=$1
local_list=$2
out=$3
mkdir -p "$out/files"
cd "$mount"
find . ! -type d -exec stat -c '%s %Y %n' {} + > "$out/list"
find . -type d -exec stat -c '%a %n' {} + > "$out/dirs"
# FILENAME, not NR == FNR: the local list may be empty.
awk 'FILENAME == ARGV[1] { have[$0] = 1; next } !($0 in have)' "$local_list" "$out/list" |
  cut -d' ' -f3- > /tmp/cicache-changed
if command -v cpio > /dev/null 2>&1; then
  cpio -o -H newc < /tmp/cicache-changed 2> /dev/null | (cd "$out/files" && cpio -i -d -m 2> /dev/null)
else
  while IFS= read -r f; do
    mkdir -p "$out/files/${f%/*}"
    cp -a "$f" "$out/files/$f"
  done < /tmp/cicache-changed
fi
