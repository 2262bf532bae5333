#!/usr/bin/env bash
# Installs the Debian packages listed in scripts/packages.txt that are missing.
# Usage: scripts/deps.sh [--update]   (--update runs apt-get update first)
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r pkg cmd; do
  [[ -z "${pkg}" || "${pkg}" == \#* ]] && continue
  if ! command -v "${cmd:-$pkg}" >/dev/null 2>&1; then
    missing+=("${pkg}")
  fi
done < scripts/packages.txt

if [[ "${1:-}" == "--update" || ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    if [[ ${#missing[@]} -gt 0 ]]; then
      echo "deps: missing packages ${missing[*]} and not root; install them by hand" >&2
      exit 1
    fi
    exit 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "deps: installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
