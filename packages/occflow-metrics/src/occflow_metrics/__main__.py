"""``python -m occflow_metrics --gt DIR --pred DIR [--variant semantic|geo] [--json OUT]``."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
