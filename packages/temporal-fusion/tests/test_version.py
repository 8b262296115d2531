import tomllib
from pathlib import Path

import temporal_fusion


def test_version_matches_pyproject():
    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert temporal_fusion.__version__ == meta["project"]["version"]
