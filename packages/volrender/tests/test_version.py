import tomllib
from pathlib import Path

import volrender


def test_version_matches_pyproject():
    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert volrender.__version__ == meta["project"]["version"]
