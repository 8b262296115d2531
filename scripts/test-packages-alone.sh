#!/usr/bin/env bash
# Install each workspace package alone (only its declared dependencies) and check it.
#   bash scripts/test-packages-alone.sh          run each package's default tests alone
#   bash scripts/test-packages-alone.sh --quick  import every module and collect the tests (CI)
# An import of an undeclared sibling fails either way (lazy imports inside functions are caught
# by tests/test_architecture.py, which scans every import statement). Restores the full
# environment at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
trap 'uv sync --locked --quiet' EXIT
for pkg in packages/*/; do
    name=$(basename "$pkg")
    module=${name//-/_}
    echo "=== $name alone ==="
    uv sync --locked --quiet --package "$name"
    if [ "$quick" = 1 ]; then
        uv run --no-sync --package "$name" python - "$module" <<'PY'
import importlib, pkgutil, sys
root = importlib.import_module(sys.argv[1])
names = [m.name for m in pkgutil.walk_packages(root.__path__, root.__name__ + ".")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(f"imported {len(names) + 1} modules of {sys.argv[1]}")
PY
        uv run --no-sync --package "$name" pytest -q --collect-only "$pkg/tests" | tail -n 1
    else
        uv run --no-sync --package "$name" pytest -q "$pkg/tests"
    fi
done
