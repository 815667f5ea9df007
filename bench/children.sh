#!/usr/bin/env bash
# What an agent leaves behind, counted (BENCHMARKS.md, "Agents' children").
#
# The agent ignores TERM and HUP, leaves a child running and becomes a
# `sleep` itself. Its processes are counted by the marks the daemon gave it
# (GT_TOWN_ROOT and GT_ROLE in /proc/PID/environ) after: a restart of the
# agent after it crashed, then a shutdown; a supervision restart after its
# pane died; the daemon killed with SIGKILL, then its tmux server; then a
# daemon with end_leftovers. Last, what one look for leftovers costs:
# `gt daemon status --json` (which makes one) timed with the host as it is
# and with 1,000 more processes.
#
# Usage: bench/children.sh [GT]   (default: target/release/gt)
# Needs tmux. Every process it starts is ended by PID when it exits.
set -euo pipefail

GT=$(realpath "${1:-target/release/gt}")
work=$(mktemp -d /tmp/gt-children-XXXXXX)
agent="trap '' TERM HUP; sleep 1000 & exec sleep 600"
extra=()
towns=()

# PIDs of live processes carrying GT_TOWN_ROOT=$1 (and GT_ROLE=mayor).
marked() {
    local p
    for p in /proc/[0-9]*; do
        grep -qzx "GT_TOWN_ROOT=$1" "$p/environ" 2>/dev/null || continue
        grep -qzx "GT_ROLE=mayor" "$p/environ" 2>/dev/null || continue
        grep -q '^State:.*[ZX]' "$p/status" 2>/dev/null && continue
        echo "${p#/proc/}"
    done
}
count() { marked "$1" | wc -l; }

cleanup() {
    set +e
    local t
    for t in "${towns[@]}"; do
        [ -f "$t/daemon/daemon.pid" ] && kill -9 "$(cat "$t/daemon/daemon.pid")" 2>/dev/null
        tmux -L "$(sock "$t")" kill-server 2>/dev/null
        for pid in $(marked "$t"); do kill -9 "$pid" 2>/dev/null; done
    done
    if ((${#extra[@]})); then kill -9 "${extra[@]}" 2>/dev/null; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Sets $t to a new town named $1 with config $2 (merged into the
# defaults), its tmux server named after it.
town() {
    t=$work/$1
    mkdir -p "$t/daemon"
    towns+=("$t")
    python3 -c 'import json,sys; c={"tmux_socket":sys.argv[1],"agent_command":["sh","-c",sys.argv[2]],
"prime_delay":"100ms","kill_grace":"500ms","heartbeat_interval":"1h"}; c.update(json.loads(sys.argv[3]));
print(json.dumps(c))' "$(sock "$t")" "$agent" "$2" >"$t/daemon/config.json"
}
sock() { echo "$(basename "$(dirname "$1")")-$(basename "$1")"; }
gt() { local t=$1; shift; "$GT" --town "$t" daemon "$@"; }
pane() { tmux -L "$(sock "$1")" display -p -t =gt-mayor: '#{pane_dead} #{pane_pid}' 2>/dev/null; }
# Waits up to 10 s for "$@" to succeed.
until_ok() { for _ in $(seq 200); do "$@" && return 0; sleep 0.05; done; return 1; }
two() { [ "$(count "$1")" -eq 2 ]; }
live_pane_not() { local p; p=$(pane "$1") && [ "${p%% *}" = 0 ] && [ "${p#* }" != "$2" ]; }
no_session() { ! tmux -L "$(sock "$1")" has-session -t =gt-mayor 2>/dev/null; }

echo "gt: $GT"
echo "processes carrying the Mayor's marks, after..."

town restart '{}'
gt "$t" start >/dev/null
gt "$t" send restart --from mayor --wait >/dev/null
until_ok two "$t"
p=$(pane "$t"); kill -9 "${p#* }"
until_ok no_session "$t"
echo "  the agent crashed (its child left):          $(count "$t")"
gt "$t" send restart --from mayor --wait >/dev/null
sleep 0.5
echo "  restart of the crashed agent:                $(count "$t")"
gt "$t" send shutdown --from mayor --wait >/dev/null
echo "  shutdown:                                    $(count "$t")"
gt "$t" stop >/dev/null

town supervised '{"supervise":["mayor"],"supervise_interval":"200ms"}'
gt "$t" start >/dev/null
until_ok two "$t"
until_ok test -n "$(ls "$t/daemon/processed" 2>/dev/null)"
p=$(pane "$t"); old=${p#* }; kill -9 "$old"
until_ok live_pane_not "$t" "$old"
sleep 0.5
echo "  supervision restart after the pane died:     $(count "$t")"
gt "$t" stop >/dev/null

town crashed '{"heartbeat_interval":"1s"}'
daemon=$(gt "$t" start | sed -n 's/.*(PID \([0-9]*\)).*/\1/p')
gt "$t" send restart --from mayor --wait >/dev/null
until_ok two "$t"
kill -9 "$daemon"
tmux -L "$(sock "$t")" kill-server
sleep 0.5
echo "  daemon SIGKILLed, then tmux kill-server:     $(count "$t")"
echo "    status --json leftovers.count:             $(gt "$t" status --json | python3 -c 'import json,sys; l=json.load(sys.stdin).get("leftovers"); print(l and l["count"])')"
python3 -c 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c["end_leftovers"]=True; json.dump(c,open(p,"w"))' "$t/daemon/config.json"
if gt "$t" start >/dev/null 2>&1; then
    for _ in $(seq 100); do [ "$(count "$t")" -eq 0 ] && break; sleep 0.1; done
    echo "  a daemon with end_leftovers, 10 s later:     $(count "$t")"
    gt "$t" stop >/dev/null
else
    echo "  a daemon with end_leftovers:                 refused to start (unknown key)"
fi

echo "one look for leftovers (gt daemon status --json, mean of 20):"
town look '{}'
time_status() {
    local start end
    start=$(date +%s%N)
    for _ in $(seq 20); do gt "$t" status --json >/dev/null || true; done
    end=$(date +%s%N)
    local procs=(/proc/[0-9]*)
    echo "$(( (end - start) / 20000000 )) ms with ${#procs[@]} processes"
}
echo "  $(time_status)"
for _ in $(seq 1000); do
    GT_TOWN_ROOT=/elsewhere GT_ROLE=mayor sleep 600 </dev/null >/dev/null 2>&1 &
    extra+=($!)
    disown $!
done
echo "  $(time_status)"
