#!/usr/bin/env bash
# Install each workspace package alone (only its declared dependencies) and run its tests.
# An import of an undeclared sibling fails here. Restores the full environment at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'uv sync --locked --quiet' EXIT
for pkg in packages/*/; do
    name=$(basename "$pkg")
    echo "=== $name alone ==="
    uv sync --locked --quiet --package "$name"
    uv run --no-sync --package "$name" pytest -q "$pkg/tests"
done
