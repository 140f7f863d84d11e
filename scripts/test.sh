#!/usr/bin/env bash
# Installs what is missing, then runs the whole test suite (as root: the
# tests load XDP programs and build network namespaces). Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
./scripts/install.sh
.venv/bin/ruff check src tests
exec .venv/bin/pytest "$@"
