#!/usr/bin/env bash
# Prints `[[plugins]]` declarations for the built-in plugins in plugins/dist, each pinned
# to the sha256 of the file just built (from plugins/dist/SHA256SUMS). Used by run.sh to
# write var/clearflow.toml; an administrator pins the hashes of the files they deploy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for name in grade-report assess-fault-tolerance render-document file-to-records impact-period; do
    sum=$(awk -v f="$name.wasm" '$2 == f || $2 == "*"f { print $1 }' plugins/dist/SHA256SUMS)
    [[ -n $sum ]] || { echo "plugin-config.sh: $name.wasm is not in plugins/dist/SHA256SUMS" >&2; exit 1; }
    printf '\n[[plugins]]\nname = "%s"\npath = "plugins/dist/%s.wasm"\nsha256 = "%s"\n' "$name" "$name" "$sum"
done
