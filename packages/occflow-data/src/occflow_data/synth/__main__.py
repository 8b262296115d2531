"""Entry point: ``python -m occflow_data.synth --layout nuscenes --out DIR ...``."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
