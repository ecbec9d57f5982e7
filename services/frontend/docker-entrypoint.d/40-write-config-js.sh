#!/bin/sh
# Writes /config.js from API_BASE_URL at container start, so one image serves every deployment.
# nginx serves it from $CXR_RUNTIME_DIR (a writable tmpfs; the root filesystem is read-only).
set -eu

api_base_url="${API_BASE_URL:-/api}"
runtime_dir="${CXR_RUNTIME_DIR:-/tmp/cxr}"

# The value lands inside a JavaScript string: allow URL characters only, never quotes,
# backslashes, angle brackets or whitespace.
case "$api_base_url" in
    "" | *[!A-Za-z0-9/:._~%@+=-]*)
        echo "$0: API_BASE_URL must be a plain URL or path, got: '$api_base_url'" >&2
        exit 1
        ;;
esac

mkdir -p "$runtime_dir"
printf 'window.CXR_CONFIG = { apiBaseUrl: "%s" };\n' "$api_base_url" > "$runtime_dir/config.js.tmp"
mv "$runtime_dir/config.js.tmp" "$runtime_dir/config.js"
echo "$0: wrote $runtime_dir/config.js with apiBaseUrl $api_base_url"
