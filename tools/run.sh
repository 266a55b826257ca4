#!/usr/bin/env bash
# run.sh: the README's main command. Installs what is missing, builds,
# and runs the transport self-check (the node, ternd, replaces this step
# once it exists).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh build
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j "$(nproc)"
exec build/release/tools/tern-selfcheck "$@"
