#!/usr/bin/env bash
# The baseline the benchmark compares `gt daemon` with: the inbox consumer a
# user would otherwise write in an afternoon. An `inotifywait -m` loop claims
# each request by moving it to processing/, validates it with jq, files it
# under processed/ or failed/ and writes a .result.json sidecar beside it,
# following the same directory contract as the daemon. It executes nothing
# (like the daemon's --dry-run) and, like most such scripts, does not scan
# the inbox at start nor recover from inotify queue overflows. It writes the
# sidecar after moving the request (the daemon does it the other way round),
# which is why the bench times both to the sidecar written.
#
# usage: baseline-inotifywait.sh TOWN/daemon      (needs inotify-tools and jq)
set -u

dir=${1:?usage: baseline-inotifywait.sh TOWN/daemon}
inbox=$dir/inbox
for tool in inotifywait jq; do
    if ! command -v "$tool" >/dev/null; then
        echo "baseline: $tool not found: install inotify-tools and jq (apt-get install -y inotify-tools jq)" >&2
        exit 127
    fi
done
mkdir -p "$inbox" "$dir/processing" "$dir/processed" "$dir/failed"

valid='type == "object"
  and (.from | type == "string")
  and (.action | IN("cycle", "restart", "shutdown"))
  and (.timestamp | type == "string")'

handle() {
    local name=$1 claimed outcome error
    case $name in
        .*) return ;;    # an in-progress write
        *.json) ;;
        *) return ;;
    esac
    claimed=$dir/processing/$name
    mv -- "$inbox/$name" "$claimed" 2>/dev/null || return 0    # taken already
    if jq -e "$valid" "$claimed" >/dev/null 2>&1; then
        outcome=processed error=null
    else
        outcome=failed error='"invalid request"'
    fi
    mv -- "$claimed" "$dir/$outcome/$name"
    jq -c --arg outcome "$outcome" --argjson error "$error" \
        --arg at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --argjson pid $$ \
        '{outcome: $outcome, error: $error, from: .from, action: .action,
          session: null, finished_at: $at, daemon_pid: $pid}' \
        "$dir/$outcome/$name" >"$dir/$outcome/$name.result.json" 2>/dev/null ||
        printf '{"outcome":"%s","error":%s,"daemon_pid":%d}\n' "$outcome" "$error" $$ \
            >"$dir/$outcome/$name.result.json"
}

inotifywait -m -e moved_to -e close_write --format '%f' "$inbox" |
    while IFS= read -r name; do
        handle "$name"
    done
