#!/usr/bin/env bash
# Runs every client example of docs/examples against a running roomcast and checks that each
# one authenticates and prints the message event of a message posted through REST; also checks
# that each docs page still includes its examples verbatim.
#
#   ROOMCAST_URL=http://127.0.0.1:8080 ROOMCAST_DATA_DIR=<the server's data dir> \
#     docs/examples/check.sh [example…]
#
# Environment:
#   ROOMCAST_URL        the server (default http://127.0.0.1:8080)
#   ROOMCAST_BIN        the roomcast binary, for `roomcast token` (default: `roomcast` on PATH,
#                       else target/release/roomcast)
#   ROOMCAST_DATA_DIR   the server's data directory, whose jwt_secret signs the tokens (or
#                       ROOMCAST_JWT_SECRET; both are read by `roomcast token` itself)
#   DOCS_EXAMPLES_WORK  where the Python venv and the Node packages are installed, once
#                       (default ${TMPDIR:-/tmp}/roomcast-docs-examples); needs network the
#                       first time (pip, npm)
#   PYTHON              a Python with websockets, python-socketio and aiohttp to use
#                       instead of the venv
# Examples: virola.py virola.mjs osu.py osu.mjs big.py big.mjs rechat.py rechat-v2.mjs
# rechat-v4.mjs (default: all).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DOCS=$(dirname "$HERE")
URL=${ROOMCAST_URL:-http://127.0.0.1:8080}
BIN=${ROOMCAST_BIN:-$(command -v roomcast || echo "$DOCS/../target/release/roomcast")}
WORK=${DOCS_EXAMPLES_WORK:-${TMPDIR:-/tmp}/roomcast-docs-examples}
RUN=$(date +%s)-$$

# example → page, the event name it prints, how it runs (py, ws, sio2, sio4)
declare -A PAGE=([virola.py]=virola [virola.mjs]=virola [osu.py]=osu [osu.mjs]=osu
  [big.py]=big [big.mjs]=big [rechat.py]=rechat [rechat-v2.mjs]=rechat [rechat-v4.mjs]=rechat)
declare -A EVENT=([virola.py]=TextMessagesCreated [virola.mjs]=TextMessagesCreated
  [osu.py]=chat.message.new [osu.mjs]=chat.message.new [big.py]=new [big.mjs]=new
  [rechat.py]=Message.Sent [rechat-v2.mjs]=Message.Sent [rechat-v4.mjs]=Message.Sent)
declare -A RUNNER=([virola.py]=py [virola.mjs]=ws [osu.py]=py [osu.mjs]=ws [big.py]=py
  [big.mjs]=ws [rechat.py]=py [rechat-v2.mjs]=sio2 [rechat-v4.mjs]=sio4)
EXAMPLES=("$@")
[ ${#EXAMPLES[@]} -gt 0 ] || EXAMPLES=(virola.py virola.mjs osu.py osu.mjs big.py big.mjs
  rechat.py rechat-v2.mjs rechat-v4.mjs)

# The dependencies, installed once into $WORK.
mkdir -p "$WORK"
if [ -z "${PYTHON:-}" ]; then
  if [ ! -x "$WORK/venv/bin/python" ]; then
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install -q websockets python-socketio aiohttp
  fi
  PYTHON=$WORK/venv/bin/python
fi
for spec in ws:ws@8 sio2:socket.io-client@2 sio4:socket.io-client@4; do
  dir=$WORK/node-${spec%%:*}
  if [ ! -d "$dir/node_modules" ]; then
    mkdir -p "$dir"
    echo '{"private": true}' >"$dir/package.json"
    (cd "$dir" && npm install --silent --no-audit --no-fund "${spec#*:}")
  fi
done

token() { "$BIN" token --user "$1" ${2:+--role "$2"}; }
SERVICE=$(token docs-backend service)
ALICE=docs-alice-$RUN
BOB=docs-bob-$RUN
ALICE_TOKEN=$(token "$ALICE")
BOB_TOKEN=$(token "$BOB")
ROOM=$(curl -sf -X POST "$URL/api/v1/rooms" -H "Authorization: Bearer $SERVICE" \
  -d "{\"name\":\"docs-$RUN\",\"members\":[\"$ALICE\",\"$BOB\"]}" |
  "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["room"]["id"])' 2>/dev/null) ||
  { echo "cannot create a room at $URL (is the server running, and its data directory given?)"; exit 1; }
echo "server $URL, room $ROOM, users $ALICE and $BOB"

post() {
  curl -sf -o /dev/null -X POST "$URL/api/v1/rooms/$ROOM/messages" \
    -H "Authorization: Bearer $BOB_TOKEN" -d "{\"text\":\"$1\"}"
}

failed=0
for example in "${EXAMPLES[@]}"; do
  runner=${RUNNER[$example]:?unknown example $example}
  out=$WORK/$example.out
  case $runner in
    py) cmd=("$PYTHON" "$HERE/$example") ;;
    *) cp "$HERE/$example" "$WORK/node-$runner/" && cmd=(node "$WORK/node-$runner/$example") ;;
  esac
  ROOMCAST_URL=$URL ROOMCAST_TOKEN=$ALICE_TOKEN "${cmd[@]}" >"$out" 2>&1 &
  pid=$!
  # Wait until it says it is connected (authenticated), then post until it has its event:
  # room subscriptions follow the connection by a few ring hops, so a first post may precede
  # them (a client catches up through REST history, as the pages say).
  for _ in $(seq 50); do
    grep -q '^connected' "$out" && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.2
  done
  text="hello from $BOB to $example"
  for _ in $(seq 8); do
    kill -0 $pid 2>/dev/null || break
    post "$text"
    for _ in $(seq 5); do
      kill -0 $pid 2>/dev/null || break
      sleep 0.2
    done
  done
  kill $pid 2>/dev/null || true
  rc=0
  wait $pid || rc=$?
  if [ $rc -eq 0 ] && grep -q "^${EVENT[$example]} .*$text" "$out"; then
    echo "ok    $example: $(grep "^${EVENT[$example]} " "$out" | head -1)"
  else
    echo "FAIL  $example (exit $rc):"
    sed 's/^/      /' "$out"
    failed=1
  fi
done

# Catch-up through REST history: every message posted above is there, in order.
if curl -sf "$URL/api/v1/rooms/$ROOM/messages?after=0&limit=500" -H "Authorization: Bearer $ALICE_TOKEN" |
  "$PYTHON" -c 'import json, sys; m = json.load(sys.stdin)["messages"]; assert m and [x["id"] for x in m] == sorted(x["id"] for x in m)'; then
  echo "ok    history ?after=0 lists the posted messages in id order"
else
  echo "FAIL  history ?after=0"
  failed=1
fi

# Each page includes its examples verbatim.
for example in "${EXAMPLES[@]}"; do
  page=$DOCS/${PAGE[$example]}.md
  if ! "$PYTHON" -c 'import sys; sys.exit(open(sys.argv[1]).read().strip() not in open(sys.argv[2]).read())' \
    "$HERE/$example" "$page"; then
    echo "FAIL  $page does not include docs/examples/$example verbatim"
    failed=1
  fi
done

exit $failed
