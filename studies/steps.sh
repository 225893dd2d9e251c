# needs_value, step and resume for loop.sh and studies/*.sh, which source this file before parsing their flags; step
# reads out (their output folder). Each line of a study is one step; a step that finished leaves a marker in
# OUT/done and is skipped next time, so re-running a script continues where it stopped.

needs_value() {  # needs_value PLACEHOLDER "$@" in a flag parser: the flag in $2 must come with its value
  if [ $# -lt 3 ] || [[ $3 == --* ]]; then echo "error: $2 needs a value: $2 $1" >&2; exit 2; fi
}

step() {  # step NAME COMMAND...: run COMMAND once; a marker in OUT/done records that it finished
  local tag
  tag=$(basename "$0" .sh)
  if [ -e "$out/done/$1" ]; then echo "[$tag] skip $1 (done)"; return; fi
  echo "[$tag] $(date +%H:%M:%S) $1"
  "${@:2}"
  touch "$out/done/$1"
}

resume() { [ -e "$1" ] && echo --resume || true; }  # resume CHECKPOINT: an interrupted run continues
