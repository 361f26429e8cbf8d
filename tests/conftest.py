"""Shared fixtures."""

import pytest


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A COCO-format copy of the built-in dataset, 8 train, 4 val and 4 test images; read-only."""
    from brefine.data.synthetic import write_synthetic_dataset

    return str(write_synthetic_dataset(tmp_path_factory.mktemp("synth"), images=8,
                                       val_images=4, test_images=4))
