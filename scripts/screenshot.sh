#!/usr/bin/env bash
# Renders the HTML fleet report of a lab scan to a PNG for the README.
#
#   scripts/screenshot.sh [OUTPUT.png]      (default: docs/html-report.png)
#
# 1. runs `eems-lab demo`, which serves the demo organisation on loopback, scans it with
#    eems-scan and writes eems-report.html (among other reports) into a temporary directory;
# 2. screenshots that HTML in headless Chromium, with the browser test's own set-up
#    (crates/eems-scan/tests/browser/check_pages.py: the same flags, driver and profile).
#
# Needs what the browser test needs, as .ci/run installs it: Chromium and chromedriver
# (Debian: apt-get install -y chromium chromium-driver) and a Python with selenium
# (.venv/bin/python, or EEMS_PYTHON). Installs nothing by itself.
# Shrinks the PNG with pngquant or optipng when one of them is installed (optional).
# Environment: CHROMIUM, CHROMEDRIVER (default: chromium, chromedriver on PATH),
# WINDOW_SIZE (default 1400,1000: header, summary tiles and most of the matrix).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-docs/html-report.png}
window_size=${WINDOW_SIZE:-1400,1000}

# Resolve the output path against the caller's directory before we cd anywhere.
case "$out" in
    /*) ;;
    *) out="$PWD/$out" ;;
esac

# --- The browser set-up: check first, so a missing piece fails before any build or scan. ---
python=${EEMS_PYTHON:-$repo/.venv/bin/python}
check_pages="$repo/crates/eems-scan/tests/browser/check_pages.py"
if ! "$python" -c 'import selenium' >/dev/null 2>&1; then
    echo "screenshot.sh: no Python with selenium at $python. Create it as .ci/run does:" >&2
    echo "    python3 -m venv .venv && .venv/bin/pip install selenium==4.51.0" >&2
    echo "(or point EEMS_PYTHON at one)" >&2
    exit 1
fi
for tool in "${CHROMIUM:-chromium}" "${CHROMEDRIVER:-chromedriver}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "screenshot.sh: $tool not found. Install it first, e.g. on Debian/Ubuntu:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y chromium chromium-driver" >&2
        echo "(or point CHROMIUM / CHROMEDRIVER at them)" >&2
        exit 1
    fi
done

# --- eems-lab: the release build if there is one, else the debug build (built if missing). ---
cd "$repo"
lab=""
for p in target/release/eems-lab target/debug/eems-lab; do
    if [[ -x "$p" ]]; then
        lab="$repo/$p"
        break
    fi
done
if [[ -z "$lab" ]]; then
    echo "screenshot.sh: no eems-lab binary in target/; building the debug one" >&2
    cargo build --ignore-rust-version --bins
    lab="$repo/target/debug/eems-lab"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- The demo scan. It exits 0 even though some demo servers are broken on purpose. ---
"$lab" demo --out "$work/demo"
report="$work/demo/eems-report.html"
if [[ ! -s "$report" ]]; then
    echo "screenshot.sh: the demo wrote no $report" >&2
    exit 1
fi

# --- The screenshot. ---
mkdir -p "$(dirname "$out")"
rm -f "$out"
"$python" "$check_pages" screenshot "$report" "$out" --size "$window_size"
if [[ ! -s "$out" ]]; then
    echo "screenshot.sh: no $out was written" >&2
    exit 1
fi

# --- Optional shrinking, only with tools that are already installed. ---
# pngquant (lossy palette, visually identical for this flat page: ~230 KB -> ~85 KB at
# 1400x1000) if present, else optipng (lossless); without either the PNG stays as is.
if command -v pngquant >/dev/null 2>&1; then
    # Exit 99 means the quality floor could not be met: keep the original then.
    pngquant --quality=80-95 --strip --force --output "$work/small.png" -- "$out" \
        && mv "$work/small.png" "$out" \
        || echo "screenshot.sh: pngquant left the PNG as it was" >&2
elif command -v optipng >/dev/null 2>&1; then
    optipng -quiet -o2 -- "$out" || echo "screenshot.sh: optipng left the PNG as it was" >&2
fi

echo "screenshot.sh: wrote $out ($(wc -c < "$out") bytes)"
