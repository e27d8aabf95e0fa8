#!/usr/bin/env bash
# Opens the lab's five terminals in one tmux session: the dbserver, three frontends and a
# shell for the cli, each in the repository root, using the bin/ links that ./build.sh makes.
#
#   lab/tmux.sh                 open (or re-open) the layout and attach to it
#   Ctrl-b d                    leave it running in the background; `tmux attach -t gclab` returns
#   Ctrl-b o                    move to the next pane (or click it)
#   tmux kill-session -t gclab  stop everything: each server shuts down cleanly
#   Ctrl-b z                    zoom the pane you are in to the whole window, and back
#
# The panes are laid out two across, the cli pane along the bottom. A frontend's start-up
# line is 151 characters, so no start-up line wraps in a terminal at least 303 columns wide;
# 60 rows give each pane 19, enough for `bin/gclab cli stats` in the cli pane. Smaller works
# too: a long line then takes two rows.
set -euo pipefail

session=${GCLAB_TMUX_SESSION:-gclab}
# Where the panes start; the tests point this at a scratch directory.
workdir=${GCLAB_WORKDIR:-$(cd "$(dirname "$0")/.." && pwd)}

if ! command -v tmux >/dev/null 2>&1; then
    echo "lab/tmux.sh needs tmux. Install it with 'sudo apt-get install tmux' (Debian, Ubuntu)," >&2
    echo "'sudo dnf install tmux' (Fedora) or 'brew install tmux' (macOS), or open five terminals" >&2
    echo "by hand as lab/README.md describes." >&2
    exit 1
fi
if [ ! -x "$workdir/bin/gclab" ]; then
    echo "There is no $workdir/bin/gclab yet: run ./build.sh first." >&2
    exit 1
fi
if tmux has-session -t "$session" 2>/dev/null; then
    echo "A tmux session '$session' is already open. Attach to it with 'tmux attach -t $session'," >&2
    echo "or stop it with 'tmux kill-session -t $session' and run lab/tmux.sh again." >&2
    exit 1
fi

# One pane per terminal the lab pages name, titled with that name.
tmux new-session -d -s "$session" -n lab -x 200 -y 50 -c "$workdir"
tmux set-option -t "$session" pane-border-status top >/dev/null
tmux set-option -t "$session" pane-border-format ' #{pane_title} ' >/dev/null
# Every command names its pane by id: run from inside another tmux session, an untargeted
# command would land in the pane that ran this script.
pane=$(tmux display-message -p -t "$session:lab.0" '#{pane_id}')
tmux select-pane -t "$pane" -T dbserver
tmux send-keys -t "$pane" 'bin/dbserver' Enter
for port in 8001 8002 8003; do
    pane=$(tmux split-window -P -F '#{pane_id}' -t "$session:lab" -c "$workdir")
    tmux select-pane -t "$pane" -T "frontend-$port"
    tmux send-keys -t "$pane" "bin/frontend -port $port" Enter
    tmux select-layout -t "$session:lab" tiled >/dev/null
done
pane=$(tmux split-window -P -F '#{pane_id}' -t "$session:lab" -c "$workdir")
tmux select-pane -t "$pane" -T cli
tmux select-layout -t "$session:lab" tiled >/dev/null
tmux send-keys -t "$pane" "# the cli terminal: try  bin/cli -set -key foo -value bar  then  bin/cli -cget -key foo" Enter
tmux send-keys -t "$pane" "# leave with Ctrl-b d (servers keep running); stop all with  tmux kill-session -t $session" Enter
tmux send-keys -t "$pane" "# no line wraps at 303x60 or larger; Ctrl-b z zooms a pane to the whole window and back" Enter

if [ "${GCLAB_TMUX_DETACHED:-0}" = 1 ]; then
    echo "opened tmux session '$session'; attach with 'tmux attach -t $session'"
elif [ -n "${TMUX:-}" ]; then
    tmux switch-client -t "$session"
else
    tmux attach -t "$session"
fi
