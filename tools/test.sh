#!/usr/bin/env bash
# test.sh: builds tern and runs every test. This is the README's test
# command and what .ci/run calls.
#   1. a normal build with -Wall -Wextra -Werror, and the whole suite;
#   2. a build with AddressSanitizer + UndefinedBehaviorSanitizer (leak
#      checking on), and the whole suite again;
#   3. the libFuzzer targets (clang), each run for TERN_FUZZ_SECONDS
#      (default 60) from its committed seed corpus; a crash fails.
# Build trees go to build/ (ignored by git). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
jobs=$(nproc)
fuzz_seconds=${TERN_FUZZ_SECONDS:-60}

bash tools/deps.sh test

step() { printf '\n==== %s\n' "$*"; }

step "build (warnings are errors)"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTERN_WERROR=ON >/dev/null
cmake --build build/release -j "$jobs"

step "test suite"
(cd build/release && ctest -j "$jobs" --output-on-failure) | tee build/release-ctest.log

step "build with AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DTERN_SANITIZE=ON >/dev/null
cmake --build build/asan -j "$jobs"

step "test suite under ASan/UBSan"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
(cd build/asan && ctest -j "$jobs" --output-on-failure) | tee build/asan-ctest.log

step "fuzzers (${fuzz_seconds} s each)"
cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	-DTERN_FUZZ=ON -DTERN_TESTS=OFF >/dev/null
cmake --build build/fuzz -j "$jobs"
fuzz_fail=0
pids=()
names=()
# Largest input each target needs: a whole message, a frame script, a
# handshake transcript, an HTTP request with its largest body, a DNS
# answer (one byte of record type, then a UDP message of up to 4096).
declare -A max_len=([msg]=71680 [frame]=70000 [noise_responder]=16384 [http]=80000 [pt]=33000 [sig]=4096 [dnsans]=4096)
for t in msg frame noise_responder http pt sig dnsans; do
	work=build/fuzz/corpus-$t
	rm -rf "$work" && mkdir -p "$work"
	cp tests/fuzz/corpus/$t/* "$work"/
	(cd build/fuzz && ./fuzz_$t -max_total_time="$fuzz_seconds" \
		-print_final_stats=1 -artifact_prefix="$top/build/fuzz/crash-$t-" \
		-max_len=${max_len[$t]} "$top/$work" >"$top/build/fuzz/fuzz_$t.log" 2>&1) &
	pids+=($!)
	names+=($t)
done
for i in "${!pids[@]}"; do
	if wait "${pids[$i]}"; then
		runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' \
			"build/fuzz/fuzz_${names[$i]}.log" | grep -o '[0-9]*$' || echo '?')
		echo "fuzz_${names[$i]}: ${fuzz_seconds} s, ${runs} runs, no crash"
	else
		echo "fuzz_${names[$i]}: FAILED (log: build/fuzz/fuzz_${names[$i]}.log)"
		tail -n 40 "build/fuzz/fuzz_${names[$i]}.log"
		fuzz_fail=1
	fi
done
[ "$fuzz_fail" -eq 0 ] || exit 1

step "summary"
grep -h 'noise vectors checked' build/release/Testing/Temporary/LastTest.log | head -n 1 || true
grep -h 'interop .*messages each way' build/release/Testing/Temporary/LastTest.log || true
n_rel=$(grep -o 'tests failed out of [0-9]*' build/release-ctest.log | grep -o '[0-9]*$')
n_asan=$(grep -o 'tests failed out of [0-9]*' build/asan-ctest.log | grep -o '[0-9]*$')
echo "release: ${n_rel} ctest tests; ASan/UBSan: ${n_asan} ctest tests; fuzzers: 7"
echo "tern: $((n_rel + n_asan + 7)) passed, 0 failed"
