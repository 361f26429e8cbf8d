"""The embedded search's base detector: trained once, cached, without a mask head."""

import pytest
import torch

from brefine.engine.base_detector import base_detector

pytestmark = pytest.mark.slow


def test_trained_once_then_cached_without_the_mask_head(tiny_data, tmp_path):
    lines = []
    weights = base_detector("brefine_tiny_synthetic", {}, tiny_data, 2, log=lines.append,
                            cache=tmp_path)
    assert any("training brefine_tiny_synthetic once, 2 iterations" in line for line in lines)
    assert any("2/2 iterations" in line for line in lines)
    state = torch.load(weights, weights_only=True)["state_dict"]
    assert any(k.startswith("roi_head.bbox_head.") for k in state)
    assert not any(k.startswith("roi_head.mask_") for k in state)  # each trial builds its own

    lines.clear()
    assert base_detector("brefine_tiny_synthetic", {}, tiny_data, 2, log=lines.append,
                         cache=tmp_path) == weights
    assert lines == [f"base detector: {weights} (cached)"]
    # another schedule is another detector
    other = base_detector("brefine_tiny_synthetic", {}, tiny_data, 1, log=lines.append,
                          cache=tmp_path)
    assert other != weights and other.is_file()
    assert not list(tmp_path.rglob("*.partial"))
