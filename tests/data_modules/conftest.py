"""Fixtures shared by the data-module tests."""

import pytest


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(bytes(range(32, 127)) * 200)  # 19,000 bytes
    return path
