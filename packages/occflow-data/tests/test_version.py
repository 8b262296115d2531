import tomllib
from pathlib import Path

import occflow_data


def test_version_matches_pyproject():
    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert occflow_data.__version__ == meta["project"]["version"]
