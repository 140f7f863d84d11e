#!/usr/bin/env bash
# Installs what is missing, then runs the demo in network namespaces.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
./scripts/install.sh
exec .venv/bin/xdsr demo "$@"
