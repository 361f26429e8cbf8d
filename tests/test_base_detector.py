"""The embedded search's base detector: trained once, cached, without a mask head."""

import pytest
import torch

from tune.warm_start import base_detector

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


def test_the_key_follows_the_base_files_not_only_the_config_file(tiny_data, tmp_path):
    """A schedule's lr lives in a ``_base_`` file: changing it is another base."""
    from tune.warm_start import _key

    config = tmp_path / "tiny.py"
    config.write_text("_base_ = ['./schedule.py']\nmodel = dict(type='MaskRCNN')\n")
    keys = []
    for lr in (0.02, 0.003):
        (tmp_path / "schedule.py").write_text(
            f"optim_wrapper = dict(optimizer=dict(type='SGD', lr={lr}))\n")
        keys.append(_key(config, {}, tiny_data, 2))
    assert keys[0] != keys[1]
    assert _key(config, {}, tiny_data, 2) == keys[1]
