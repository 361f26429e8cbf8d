"""Shared fixtures, and the order tests start in."""

import pytest


def pytest_collection_modifyitems(config, items):
    """End-to-end tests first: `make test` runs two tests at once (pytest-xdist), and
    starting the long ones early keeps one worker from ending with them alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A COCO-format copy of the built-in dataset, 8 train, 4 val and 4 test images; read-only."""
    from brefine.data.synthetic import write_synthetic_dataset

    return str(write_synthetic_dataset(tmp_path_factory.mktemp("synth"), images=8,
                                       val_images=4, test_images=4))
