#!/usr/bin/env bash
# run.sh: the README's main command. Installs what is missing, builds, makes
# a node for a local test domain on first use (tern-data/, ignored by git),
# and runs it in the foreground on its embedded SQLite database until
# Ctrl-C or SIGTERM.
#   TERN_DOMAIN  domain of a new node (default tern.test)
#   TERN_LISTEN  client address of a new node (default 127.0.0.1:7370)
#   TERN_DIR     the node's directory (default tern-data)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh build
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j "$(nproc)"
dir=${TERN_DIR:-tern-data}
if [ ! -f "$dir/ternd.conf" ]; then
	build/release/node/ternd init --domain "${TERN_DOMAIN:-tern.test}" \
		--dir "$dir" --listen "${TERN_LISTEN:-127.0.0.1:7370}"
	echo "Invite codes: build/release/node/ternd invite -c $dir/ternd.conf --count 3"
fi
exec build/release/node/ternd run -c "$dir/ternd.conf"
