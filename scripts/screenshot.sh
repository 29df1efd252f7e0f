#!/usr/bin/env bash
# Renders the HTML fleet report of a lab scan to a PNG for the README.
#
#   scripts/screenshot.sh [OUTPUT.png]      (default: docs/html-report.png)
#
# 1. runs `eems-lab demo`, which serves the demo organisation on loopback, scans it with
#    eems-scan and writes eems-report.html (among other reports) into a temporary directory;
# 2. screenshots that HTML with headless Chromium.
#
# Needs Chromium (Debian: apt-get install -y chromium); installs nothing by itself.
# Shrinks the PNG with pngquant or optipng when one of them is installed (optional).
# Environment: CHROMIUM (browser binary, default: chromium or chromium-browser on PATH),
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

# --- Chromium: check first, so a missing browser fails before any build or scan. ---
chromium=${CHROMIUM:-}
if [[ -z "$chromium" ]]; then
    for c in chromium chromium-browser; do
        if command -v "$c" >/dev/null 2>&1; then
            chromium=$(command -v "$c")
            break
        fi
    done
fi
if [[ -z "$chromium" ]] || ! command -v "$chromium" >/dev/null 2>&1; then
    echo "screenshot.sh: chromium not found. Install it first, e.g. on Debian/Ubuntu:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y chromium" >&2
    echo "(or point CHROMIUM at a Chromium/Chrome binary)" >&2
    exit 1
fi

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
# The flags keep Chromium off the network (background fetches, component updates, sync,
# QUIC) and give it a throw-away profile; the report itself loads nothing from anywhere.
mkdir -p "$(dirname "$out")"
rm -f "$out"
"$chromium" \
    --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" \
    --hide-scrollbars --window-size="$window_size" \
    --screenshot="$out" \
    "file://$report" 2> "$work/chromium.log" || {
    echo "screenshot.sh: chromium failed; its log:" >&2
    cat "$work/chromium.log" >&2
    exit 1
}
if [[ ! -s "$out" ]]; then
    echo "screenshot.sh: chromium wrote no $out; its log:" >&2
    cat "$work/chromium.log" >&2
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
