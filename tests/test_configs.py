"""Config loading, top-level hyperparameters and override validation."""

import pytest

from brefine.configs import ConfigError, list_configs, load_config, parse_overrides


def test_every_shipped_config_loads_and_declares_the_hyperparameters():
    names = list_configs()
    assert {"brefine_r50_fpn_1x_coco", "mask-rcnn_r50_fpn_1x_coco",
            "brefine_tiny_synthetic", "mask-rcnn_tiny_synthetic"} <= set(names)
    for name in names:
        cfg = load_config(name)
        for key in ("num_stages", "boundary_lambda", "rpn_weight"):
            assert key in cfg, (name, key)


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
def test_num_stages_reaches_the_head_and_the_target_size(stages):
    from brefine.models.build import build_detector

    cfg = load_config("brefine_tiny_synthetic", {"num_stages": stages})
    assert cfg.model.roi_head.mask_head.num_stages == stages
    head = build_detector(cfg, init_weights=False).roi_head.mask_head
    assert head.output_size == 14 * 2 ** (stages - 1)


def test_lambda_and_rpn_weight_reach_the_model():
    cfg = load_config("brefine_tiny_synthetic", {"boundary_lambda": 2.5, "rpn_weight": 0.1})
    assert cfg.model.roi_head.mask_head.boundary_lambda == 2.5
    assert cfg.model.rpn_head.rpn_weight == 0.1


def test_brefine_uses_rank_and_sort_everywhere():
    cfg = load_config("brefine_r50_fpn_1x_coco")
    assert cfg.model.rpn_head.type == "RankBasedRPNHead"
    assert cfg.model.roi_head.bbox_head.type == "RankBasedBBoxHead"
    assert cfg.model.roi_head.mask_head.type == "FusionMaskHead"
    assert cfg.model.train_cfg.rpn.sampler.type == "PseudoSampler"
    assert cfg.model.roi_head.bbox_head.num_classes == 80


@pytest.mark.parametrize("overrides,match", [
    ({"num_stages": 5}, "num_stages"),
    ({"num_stages": 0}, "num_stages"),
    ({"num_stages": 2.0}, "num_stages"),
    ({"boundary_lambda": -1.0}, "boundary_lambda"),
    ({"boundary_lambda": float("inf")}, "boundary_lambda"),
    ({"boundary_lambda": float("nan")}, "boundary_lambda"),
    ({"boundary_lambda": "big"}, "boundary_lambda"),
    ({"rpn_weight": 0.0}, "rpn_weight"),
    ({"rpn_weight": 1e999}, "rpn_weight"),
    ({"model.roi_head.no_such_key": 1}, "model.roi_head.no_such_key"),
    ({"optim_wrapper.optimizer.lrr": 1}, "optim_wrapper.optimizer.lrr"),
])
def test_bad_overrides_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("brefine_tiny_synthetic", overrides)


def test_baseline_refuses_brefine_keys():
    with pytest.raises(ConfigError, match="num_stages"):
        load_config("mask-rcnn_tiny_synthetic", {"num_stages": 2})


def test_unknown_config_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="brefine_tiny_synthetic"):
        load_config("no_such_config")


def test_schedule_overrides_keep_the_shape_of_the_schedule():
    from brefine.configs import schedule_overrides

    cfg = load_config("mask-rcnn_tiny_synthetic")
    assert cfg.train_cfg.max_iters == 1200 and cfg.train_cfg.val_interval == 400
    out = schedule_overrides(cfg, 600)
    assert out == {"train_cfg.max_iters": 600, "train_cfg.val_interval": 200,
                   "param_scheduler.1.end": 600, "param_scheduler.1.milestones": [450, 550]}
    stretched = load_config("mask-rcnn_tiny_synthetic", out)
    assert stretched.param_scheduler[0].end == cfg.param_scheduler[0].end  # warm-up kept
    with pytest.raises(ConfigError, match="epochs"):
        schedule_overrides(load_config("brefine_r50_fpn_1x_coco"), 100)


def test_warmup_overrides_find_the_warmups_by_their_shape():
    from brefine.configs import warmup_overrides

    tiny = load_config("brefine_tiny_synthetic")
    assert warmup_overrides(tiny, 10) == {"param_scheduler.0.end": 10}
    shortened = load_config("brefine_tiny_synthetic", warmup_overrides(tiny, 10))
    assert shortened.param_scheduler[0].end == 10
    assert shortened.param_scheduler[1].end == tiny.param_scheduler[1].end  # the decay stays
    # an epoch-based schedule: its warm-up counts iterations, its decay epochs
    assert warmup_overrides(load_config("brefine_r50_fpn_1x_coco"), 100) == \
        {"param_scheduler.0.end": 100}
    with pytest.raises(ConfigError, match="warm-up"):
        warmup_overrides(tiny, 0)


def test_hyperparameter_table_owns_validation_and_search_ranges():
    from brefine.configs import HYPERPARAMETERS

    assert list(HYPERPARAMETERS) == ["num_stages", "boundary_lambda", "rpn_weight"]
    lam = HYPERPARAMETERS["boundary_lambda"]
    assert lam.validate(0) == 0.0 and isinstance(lam.validate(2), float)
    assert lam.check_search((0.5, 2.0)) == (0.5, 2.0)
    with pytest.raises(ConfigError, match="--lambda-range"):
        lam.check_search((0.0, 2.0))  # log-uniform needs low > 0
    with pytest.raises(ConfigError, match="--lambda-range"):
        lam.check_search((2.0, 1.0))
    with pytest.raises(ConfigError, match="num_stages"):
        HYPERPARAMETERS["num_stages"].check_search((1, 5))
    assert HYPERPARAMETERS["num_stages"].architectural


def test_parse_overrides():
    assert parse_overrides(["a.b=1", "c=[1, 2]", "d=text", "e=0.5"]) == \
        {"a.b": 1, "c": [1, 2], "d": "text", "e": 0.5}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])


@pytest.mark.parametrize("name", ["brefine_r50_fpn_1x_coco", "brefine_r50_fpn_1x_lvis-v1",
                                  "mask-rcnn_r50_fpn_8e_cityscapes", "brefine_tiny_synthetic"])
def test_data_root_moves_datasets_and_evaluators(name, tmp_path):
    cfg = load_config(name, data_root=str(tmp_path / "root"))
    new = str(tmp_path / "root") + "/"
    assert cfg.data_root == new
    evaluators = cfg.val_evaluator if isinstance(cfg.val_evaluator, list) else [cfg.val_evaluator]
    for ev in evaluators:
        for key in ("ann_file", "seg_prefix"):
            if key in ev:
                assert ev[key].startswith(new), (key, ev[key])
    roots = []

    def collect(node):
        if isinstance(node, dict):
            roots.extend(v for k, v in node.items() if k == "data_root")
            for v in node.values():
                collect(v)

    collect(cfg.train_dataloader)
    collect(cfg.val_dataloader)
    assert roots and all(r == new for r in roots), roots


def test_dataset_class_counts():
    assert load_config("brefine_r50_fpn_1x_lvis-v1").model.roi_head.mask_head.num_classes == 1203
    assert load_config("brefine_r50_fpn_8e_cityscapes").model.roi_head.bbox_head.num_classes == 8


@pytest.mark.parametrize("name,ratio", [("brefine_r50_fpn_1x_coco", 0.02),
                                        ("brefine_tiny_synthetic", 0.02),
                                        ("brefine_r50_fpn_8e_cityscapes", 0.005)])
def test_boundary_ap_is_evaluated_beside_coco_ap(name, ratio):
    cfg = load_config(name)
    evaluators = {ev["type"]: ev for ev in cfg.val_evaluator}
    assert "FasterCocoMetric" in evaluators
    assert evaluators["BoundaryAPMetric"]["dilation_ratio"] == ratio
    assert "brefine.evaluation" in cfg.custom_imports["imports"]


@pytest.mark.parametrize("name, lr, batch", [
    ("brefine_r50_fpn_1x_coco", 0.012, 16), ("brefine_r50_fpn_1x_lvis-v1", 0.012, 16),
    ("brefine_r50_fpn_8e_cityscapes", 0.006, 8), ("mask-rcnn_r50_fpn_1x_coco", 0.02, 16),
    ("mask-rcnn_r50_fpn_8e_cityscapes", 0.01, 8)])
def test_learning_rates_follow_the_published_recipes(name, lr, batch):
    cfg = load_config(name)
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=batch)


@pytest.mark.parametrize("key, value", [("optim_wrapper.optimizer.lr", "abc"),
                                        ("train_cfg.max_iters", [1, 2]),
                                        ("rpn_weight", True)])
def test_a_number_is_overridden_by_a_number_only(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("brefine_tiny_synthetic", {key: value})
    # a number, or None (unset), is taken
    assert load_config("brefine_tiny_synthetic",
                       {"optim_wrapper.optimizer.lr": 0.01}).optim_wrapper.optimizer.lr == 0.01
    assert load_config("brefine_tiny_synthetic", {"model.roi_head.mask_head.aux_channels": None}
                       ).model.roi_head.mask_head.aux_channels is None


@pytest.mark.parametrize("text, what", [("x = (\n", "SyntaxError"), ("x = undefined_name\n",
                                                                     "NameError")])
def test_an_unreadable_config_is_one_error_naming_the_file(tmp_path, text, what):
    path = tmp_path / "broken.py"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"broken.py.*{what}"):
        load_config(path)
