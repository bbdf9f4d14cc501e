#!/usr/bin/env bash
# proxdeck's provisioning runner: runs one app's provisioning script detached on the guest, so
# that a dropped SSH connection or a killed proxdeck does not stop it, and never two at once.
#
#   runner.sh start  STATE RUN   the script on stdin; stops an earlier run still going (TERM to
#                                its process group, up to 10 s, then KILL), then starts RUN in a
#                                session of its own and returns
#   runner.sh follow STATE RUN N prints RUN's log from line N+1 as it grows (`R alive` after
#                                10 s without a line), then `R end STATUS LINES` once RUN
#                                has ended
#   runner.sh stop   STATE WHY   stops the run going, if any (cancel, removal of the app)
#
# STATE (the app's run/provision folder, root's, 0700) holds: lock (held by the run going, with
# flock), current (the newest run's id), RUN.pid (its process group), RUN.log (its output,
# each line tagged `O ` for stdout or `E ` for stderr), RUN.status (its exit status, written
# once it has ended) and history (`start RUN TIME` / `end RUN TIME STATUS` lines). The script
# itself (it may hold secrets) is RUN.sh, 0600, removed once it has run. Every file is root's
# and private: the log holds the script's output, never the script.
set -euo pipefail
umask 077

mode=${1:-} state=${2:-}
case "$state" in
  /*/run/provision) ;;
  *)
    printf 'proxdeck: the runner refuses the folder %s\n' "$state" >&2
    exit 2
    ;;
esac
for tool in flock setsid; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    printf 'proxdeck: %s is missing on the guest (install util-linux or busybox)\n' "$tool" >&2
    exit 2
  fi
done

now() { date +%s.%N 2>/dev/null || date +%s; }
valid_run() { case "$1" in '' | *[!A-Za-z0-9-]*) return 1 ;; esac; }
group_alive() { [ -n "$1" ] && kill -0 -- "-$1" 2>/dev/null; }
note() { printf 'R note %s\n' "$*"; }

# Ends the newest run for good, fd 9 open on the lock: TERM to its process group, up to 10 s
# for it to go, then KILL; takes the lock; records the end (status 143) if the run could not.
end_current() {
  local why=$1 run pgid
  run=$(cat "$state/current" 2>/dev/null || true)
  valid_run "$run" || run=
  pgid=
  if [ -n "$run" ]; then
    pgid=$(cat "$state/$run.pid" 2>/dev/null || true)
  fi
  case "$pgid" in '' | *[!0-9]* | 0 | 1) pgid= ;; esac
  if [ -n "$run" ] && [ -e "$state/$run.status" ]; then
    # It has ended: its supervisor is on its way out.
    for _ in $(seq 1 25); do
      if flock -n 9 && ! group_alive "$pgid"; then break; fi
      sleep 0.2
    done
  fi
  if ! flock -n 9 || group_alive "$pgid"; then
    note "an earlier provisioning run ($run, process group ${pgid:-unknown}) is still going on the guest: stopping it ($why)"
    if [ -n "$pgid" ]; then kill -TERM -- "-$pgid" 2>/dev/null || true; fi
    for _ in $(seq 1 50); do
      if flock -n 9 && ! group_alive "$pgid"; then break; fi
      sleep 0.2
    done
    if ! flock -n 9 || group_alive "$pgid"; then
      note "the earlier run did not stop within 10 s: killing it"
      if [ -n "$pgid" ]; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
      # Busybox's flock has no -w: wait in steps.
      for _ in $(seq 1 100); do
        flock -n 9 && break
        sleep 0.2
      done
      if ! flock -n 9; then
        printf 'proxdeck: the earlier provisioning run %s does not let go of %s; look for it with ps -ef on the guest\n' "$run" "$state/lock" >&2
        exit 1
      fi
      for _ in $(seq 1 25); do
        group_alive "$pgid" || break
        sleep 0.2
      done
    fi
  fi
  if [ -n "$run" ] && [ ! -e "$state/$run.status" ]; then
    printf 'E proxdeck: this provisioning run was stopped: %s\n' "$why" >>"$state/$run.log"
    printf 'end %s %s 143\n' "$run" "$(now)" >>"$state/history"
    printf '143\n' >"$state/$run.status"
    rm -f "$state/$run.sh"
  fi
}

# Prints the lines of the tagged log $1 after line $2 up to its last complete line; sets
# `printed` to the new count.
print_from() {
  local total
  total=$(wc -l <"$1")
  if [ "$total" -gt "$2" ]; then
    sed -n "$(($2 + 1)),${total}p;${total}q" "$1"
  fi
  printed=$total
}

# Reads lines, writes each tagged with $1 (a last line without a newline included).
tag() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s %s\n' "$1" "$line"
  done
}

case "$mode" in
  start)
    run=${3:-}
    valid_run "$run" || { printf 'proxdeck: bad run id %s\n' "$run" >&2; exit 2; }
    # The app's folder and its parents as the recipe expects them (readable on the way
    # down); the runner's own folder private.
    (umask 022 && mkdir -p "$state")
    chmod 700 "$state"
    cat >"$state/.incoming-$run"
    printf '%s\n' "$BASH_EXECUTION_STRING" >"$state/runner.sh.new"
    mv -f "$state/runner.sh.new" "$state/runner.sh"
    exec 9>>"$state/lock"
    end_current "a newer run ($run) starts"
    mv -f "$state/.incoming-$run" "$state/$run.sh"
    : >"$state/$run.log"
    rm -f "$state/$run.status" "$state/$run.pid"
    printf '%s\n' "$run" >"$state/current"
    # Keep the ten newest logs.
    # shellcheck disable=SC2012 # names are proxdeck's own run ids
    ls -1t "$state"/*.log 2>/dev/null | tail -n +11 | while IFS= read -r old; do
      rm -f "$old" "${old%.log}.status" "${old%.log}.pid"
    done
    # The lock passes to the detached run through fd 9; this process lets go of it on exit.
    setsid bash "$state/runner.sh" supervise "$state" "$run" </dev/null >/dev/null 2>&1 &
    for _ in $(seq 1 100); do
      [ -s "$state/$run.pid" ] && break
      sleep 0.05
    done
    [ -s "$state/$run.pid" ] || { printf 'proxdeck: the provisioning run did not start on the guest\n' >&2; exit 1; }
    printf 'R started %s %s\n' "$run" "$(cat "$state/$run.pid")"
    ;;
  supervise)
    run=${3:-}
    valid_run "$run" || exit 2
    printf '%s\n' "$$" >"$state/$run.pid"
    printf 'start %s %s\n' "$run" "$(now)" >>"$state/history"
    log="$state/$run.log"
    set +e
    (
      bash -euo pipefail "$state/$run.sh" </dev/null 2>&1 1>&3 3>&- | tag E >>"$log"
      exit "${PIPESTATUS[0]}"
    ) 3>&1 9>&- | tag O >>"$log" 9>&-
    rc=${PIPESTATUS[0]}
    set -e
    rm -f "$state/$run.sh"
    printf 'end %s %s %s\n' "$run" "$(now)" "$rc" >>"$state/history"
    printf '%s\n' "$rc" >"$state/$run.status.new"
    mv -f "$state/$run.status.new" "$state/$run.status"
    ;;
  follow)
    run=${3:-} printed=${4:-0}
    valid_run "$run" || { printf 'proxdeck: bad run id %s\n' "$run" >&2; exit 2; }
    case "$printed" in '' | *[!0-9]*) printed=0 ;; esac
    log="$state/$run.log"
    [ -e "$log" ] || { printf 'proxdeck: no provisioning run %s on the guest (its log is gone)\n' "$run" >&2; exit 3; }
    pgid=$(cat "$state/$run.pid" 2>/dev/null || true)
    lost=0 quiet=0
    while [ ! -e "$state/$run.status" ]; do
      before=$printed
      print_from "$log" "$printed"
      # A line now and then, so that proxdeck can tell a quiet run from a dead connection.
      if [ "$printed" -eq "$before" ]; then quiet=$((quiet + 1)); else quiet=0; fi
      if [ "$quiet" -ge 33 ]; then
        printf 'R alive\n'
        quiet=0
      fi
      if ! group_alive "$pgid"; then
        lost=$((lost + 1))
        # Gone without a status (a reboot, a kill from outside): the end is not coming.
        [ "$lost" -lt 5 ] || break
      fi
      sleep 0.3
    done
    print_from "$log" "$printed"
    printf 'R end %s %s\n' "$(cat "$state/$run.status" 2>/dev/null || echo lost)" "$printed"
    ;;
  stop)
    why=${3:-stopped}
    [ -d "$state" ] || exit 0
    exec 9>>"$state/lock"
    end_current "$why"
    ;;
  *)
    printf 'proxdeck: unknown runner mode %s\n' "$mode" >&2
    exit 2
    ;;
esac
