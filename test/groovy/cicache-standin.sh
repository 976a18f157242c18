#!/bin/sh
# Stand-in for the cicache helper in the Groovy step tests (the real helper is exercised by
# LiveCliTest). Records its arguments, one call per line, arguments separated by \037, in
# $CICACHE_STANDIN_DIR/calls; saves its stdin to $CICACHE_STANDIN_DIR/<command>.stdin when
# there is one; prints $CICACHE_STANDIN_DIR/<command>.out and exits with <command>.status
# (default: no output, 0). <command> skips the global options; registry/docker/mount
# commands are named with their subcommand, e.g. registry-login.
dir=${CICACHE_STANDIN_DIR:?CICACHE_STANDIN_DIR is not set}
# `--version` answers like the real helper (CICACHE_STANDIN_VERSION, default the library's) and is not recorded.
if [ "$*" = --version ]; then echo "cicache ${CICACHE_STANDIN_VERSION:-0.1.0}"; exit 0; fi
for a in "$@"; do printf '%s\037' "$a"; done >>"$dir/calls"
# `--report-html FILE` gets $CICACHE_STANDIN_DIR/report.html when a test put one there.
prev=
for a in "$@"; do
  if [ "$prev" = --report-html ] && [ -f "$dir/report.html" ]; then cp "$dir/report.html" "$a"; fi
  prev=$a
done
printf '\n' >>"$dir/calls"
cmd=
while [ $# -gt 0 ]; do
  case "$1" in
    --store|--scope|--fallback-scope|--progress|--config|--timeout) shift 2 ;;
    -*) shift ;;
    *) cmd=$1; shift; break ;;
  esac
done
case "$cmd" in
  registry|docker|mount) cmd="$cmd-${1:-}" ;;
esac
if [ ! -t 0 ]; then cat >"$dir/$cmd.stdin"; fi
[ -f "$dir/$cmd.out" ] && cat "$dir/$cmd.out"
if [ -f "$dir/$cmd.status" ]; then exit "$(cat "$dir/$cmd.status")"; fi
exit 0
