#!/usr/bin/env bash
# The dashboard's size and first-screen time, in headless Chromium: runs the
# end-to-end browser test (tests/ui, `dashboard_end_to_end`) RUNS times and
# summarizes what it measured with the Navigation Timing API each time
# (target/ui-screenshots/performance.json):
#
#   - firstScreenMs: from the start of navigation to the dashboard's
#     `wagate:first-screen` mark (the sign-in form drawn; signed in, the
#     session list drawn with its data);
#   - transferredBytes: what the page made the browser load from /ui
#     (the page and its files, gzip-compressed): for `signIn` the first
#     visit, from an empty cache; for `sessions` a later visit, whose files
#     are revalidated (304) from the cache.
#
# Targets (issue 22): the first screen in < 1 s on the fake adapter; the
# dashboard adds <= 300 KiB compressed.
#
#   bench/ui.sh             # 5 runs
#   RUNS=10 bench/ui.sh
#
# Needs chromium and chromedriver (apt-get install chromium chromium-driver).
# The gateway runs inside the test binary (a debug build, as `cargo test`
# makes it): its figures are an upper bound for a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo test -q -p wagate-contract-tests --test ui --no-run
for i in $(seq 1 "$RUNS"); do
    WAGATE_REQUIRE_BROWSER=1 cargo test -q -p wagate-contract-tests --test ui dashboard_end_to_end >/dev/null 2>&1 \
        || { echo "run $i failed: cargo test -p wagate-contract-tests --test ui" >&2; exit 1; }
    cp "${CARGO_TARGET_DIR:-target}/ui-screenshots/performance.json" "$out/run-$i.json"
done
python3 - "$out" "$RUNS" <<'PY'
import json, statistics, sys, pathlib
out, runs = pathlib.Path(sys.argv[1]), int(sys.argv[2])
data = [json.loads((out / f"run-{i}.json").read_text())["screens"] for i in range(1, runs + 1)]
print(f"commit {__import__('subprocess').run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}, {runs} runs")
print(f"{'screen':<10} {'first screen ms (median / max)':>32} {'transferred bytes':>18} {'decoded bytes':>14}")
for screen in data[0]:
    ms = [d[screen]["firstScreenMs"] for d in data]
    tb = max(d[screen]["transferredBytes"] for d in data)
    db = max(d[screen]["decodedBytes"] for d in data)
    print(f"{screen:<10} {statistics.median(ms):>20.0f} / {max(ms):<9.0f} {tb:>18} {db:>14}")
PY
