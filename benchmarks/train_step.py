"""Whole-model cost: BRefine beside Mask R-CNN, training step and inference.

Each model trains on the same batch of synthetic scenes (forward, backward,
SGD step) and predicts on it, each case in a fresh process (``common.py``):

* ``tiny``: the configs trained on the built-in data (128 px, batch 4);
* ``r50``: the R50-FPN COCO configs (random init) at 512 px, batch 2.

BRefine runs with the configs' fusion head and, for comparison, with the
paper's constant-width head (``channel_ratio=1``, ``aux_channels=None``) and
with 1×1 auxiliary convs (``aux_kernel_size=1``). Inference is timed once
for each of ``--detections`` per image, the same for every model (score
threshold 0, so the mask heads see the same number of RoIs): 100 as COCO
evaluation keeps, and 20, what the tiny configs keep for scenes of at most
4 objects. The mask head's share of inference grows with that number.
CPU rows always; CUDA rows (fp32 and AMP) when a GPU is present.

Two states per model. At random init ("init") the RPN's proposals hardly
overlap the objects, so few positives reach the mask head and the step
times the backbone, the RPN and the losses. "fitted" first trains the model
on the batch itself (``--fit-iters`` steps at the config's learning rate,
warm-up and gradient clipping), so its proposals cover the objects and the
mask heads train on as many positives as in real training (the table counts
them): that is the state a training run spends its time in.

Usage: ``python benchmarks/train_step.py [--repeats N] [--scales tiny r50]
[--fit-iters N] [--fit-scales tiny r50] [--detections N ...] [--rounds N]
[--fit-dir DIR] [--devices cpu cuda] [--results DIR]``; writes
benchmarks/results/train_step.md (``--results``: that folder instead).
Targets: a BRefine training iteration ≤ 1.3× Mask R-CNN's, inference ≥ 0.8×
its images per second.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import child_entry, devices, measure, run_case, run_rounds, write_table  # noqa: E402

SCALES = {
    "tiny": dict(size=128, batch=4, configs=("mask-rcnn_tiny_synthetic", "brefine_tiny_synthetic")),
    "r50": dict(size=512, batch=2, configs=("mask-rcnn_r50_fpn_1x_coco", "brefine_r50_fpn_1x_coco")),
}
BREFINE_HEADS = {  # row name → overrides of the BRefine config
    "BRefine": {},
    "BRefine, paper-width head": {"model.roi_head.mask_head.channel_ratio": 1.0,
                                  "model.roi_head.mask_head.aux_channels": None},
    "BRefine, 1×1 aux convs": {"model.roi_head.mask_head.aux_kernel_size": 1},
}
WARMUP_ITERS = 50  # linear warm-up of the fit, as the tiny schedule's


def build(config: str, overrides: dict, device: str):
    """(model, config) at random init; inference keeps every detection's score."""
    from brefine.configs import load_config
    from brefine.models.build import build_detector

    overrides = {**overrides, "model.backbone.init_cfg": None,
                 "model.test_cfg.rcnn.score_thr": 0.0}
    torch.manual_seed(0)
    cfg = load_config(config, overrides)
    return build_detector(cfg).to(device), cfg


def fit(model, cfg, batch: dict, iters: int) -> float:
    """Train on ``batch`` for ``iters`` steps with the config's SGD settings; the last loss."""
    optim = cfg.optim_wrapper.optimizer
    optimizer = torch.optim.SGD(model.parameters(), lr=optim.lr, momentum=optim.momentum,
                                weight_decay=optim.weight_decay)
    clip = cfg.optim_wrapper.get("clip_grad") or {}
    model.train()
    loss = torch.zeros(())
    for it in range(iters):
        for group in optimizer.param_groups:
            group["lr"] = optim.lr * min(1.0, 0.1 + 0.9 * it / WARMUP_ITERS)
        loss, _ = model.parse_losses(model(**model.data_preprocessor(batch, training=True),
                                           mode="loss"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), **clip)
        optimizer.step()
    return loss.item()


def run(case: dict) -> dict:
    """One child process: fit and save the weights (``case["fit_to"]``), or time
    the model, from the weights at ``case["weights"]`` when given."""
    from brefine.data.toy import toy_batch

    device, scale = case["device"], SCALES[case["scale"]]
    model, cfg = build(case["config"], case["overrides"], device)
    batch = toy_batch(scale["batch"], size=scale["size"], seed=1)
    if case.get("fit_to"):
        loss = fit(model, cfg, batch, case["fit_iters"])
        torch.save(model.state_dict(), case["fit_to"])
        return dict(fit_loss=loss)
    if case.get("weights"):
        model.load_state_dict(torch.load(case["weights"], map_location=device))
    mask_rois = {True: [], False: []}  # training → RoIs per call of the mask head
    model.roi_head.mask_head.register_forward_pre_hook(
        lambda module, args: mask_rois[module.training].append(args[0].shape[0]))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    autocast = torch.autocast("cuda", dtype=torch.float16) if case["amp"] else \
        contextlib.nullcontext()
    scaler = torch.amp.GradScaler("cuda", enabled=case["amp"])

    def train_step():
        model.train()
        data = model.data_preprocessor(batch, training=True)
        with autocast:
            losses = model(**data, mode="loss")
        loss, _ = model.parse_losses(losses)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def predict():
        model.eval()
        with torch.no_grad(), autocast:
            model(**model.data_preprocessor(batch, training=False), mode="predict")

    train = measure(train_step, device, repeats=case["repeats"])
    images_per_s, detections_per_image = {}, {}
    for detections in case["detections"]:
        model.roi_head.test_cfg.max_per_img = detections
        mask_rois[False].clear()
        images_per_s[detections] = scale["batch"] / measure(predict, device,
                                                            repeats=case["repeats"])["seconds"]
        # one mask head call per prediction (warm-up and repeats)
        detections_per_image[detections] = sum(mask_rois[False]) / (
            (case["repeats"] + 1) * scale["batch"])
    return dict(train_s=train["seconds"], train_mib=train["peak_mib"],
                images_per_s=images_per_s, detections_per_image=detections_per_image,
                mask_rois=statistics.median(mask_rois[True]))


def fitted_weights(case: dict, fit_dir: Path) -> tuple[dict, dict]:
    """(case to time, fit record): a fitted case is fitted in a process of its
    own first, so that the timed processes' peak memory is their own. The
    weights are kept in ``fit_dir`` under the case's fit settings and reused."""
    if not case["fit_iters"]:
        return case, {}
    fit = {k: case[k] for k in ("device", "amp", "scale", "config", "overrides", "fit_iters")}
    key = hashlib.sha1(json.dumps(fit, sort_keys=True).encode()).hexdigest()[:16]
    weights, record = fit_dir / f"{key}.pth", fit_dir / f"{key}.json"
    if not (weights.exists() and record.exists()):
        result = run_case(__file__, {**case, "fit_to": str(weights)})
        record.write_text(json.dumps(result))
    return {**case, "weights": str(weights)}, json.loads(record.read_text())


def time_cases(cases: list[dict], rounds: int, fit_dir: Path) -> list[dict]:
    """Per case: the fastest training step and inference over ``rounds``
    interleaved fresh processes, the largest peak memory, the median RoIs."""
    prepared = [fitted_weights(case, fit_dir) for case in cases]
    timed = run_rounds(__file__, [case for case, _ in prepared], rounds)
    # JSON turned the per-detection-count keys into strings
    return [dict(fit, train_s=min(r["train_s"] for r in runs),
                 train_mib=max(r["train_mib"] for r in runs),
                 images_per_s={int(n): max(r["images_per_s"][n] for r in runs)
                               for n in runs[0]["images_per_s"]},
                 detections_per_image={int(n): statistics.median(
                     r["detections_per_image"][n] for r in runs)
                     for n in runs[0]["detections_per_image"]},
                 mask_rois=statistics.median(r["mask_rois"] for r in runs))
            for (_, fit), runs in zip(prepared, timed)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scales", nargs="+", choices=list(SCALES), default=list(SCALES))
    parser.add_argument("--fit-iters", type=int, default=200,
                        help="training steps on the batch before the fitted state is timed")
    parser.add_argument("--fit-scales", nargs="*", choices=list(SCALES), default=["tiny"],
                        help="scales timed in the fitted state too (r50 on CPU: hours)")
    parser.add_argument("--detections", type=int, nargs="+", default=[100, 20],
                        help="detections kept per image at inference, for every model; "
                             "inference is timed for each")
    parser.add_argument("--rounds", type=int, default=3,
                        help="fresh processes per case, the cases interleaved")
    parser.add_argument("--fit-dir", type=Path, default=None,
                        help="keep the fitted weights here and reuse them (default: a "
                             "temporary folder; clear it after changing a model)")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=devices(),
                        help="devices to time (default: cpu, and cuda when present)")
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR,
                        help="folder of the table (default: benchmarks/results)")
    args = parser.parse_args()
    if "cuda" in args.devices and not torch.cuda.is_available():
        parser.error("--devices cuda: no CUDA device")
    common.RESULTS_DIR = args.results
    temporary = tempfile.TemporaryDirectory()
    fit_dir = args.fit_dir or Path(temporary.name)
    fit_dir.mkdir(parents=True, exist_ok=True)
    states = [(scale, fit_iters) for scale in args.scales
              for fit_iters in ((0, args.fit_iters) if args.fit_iters and scale in args.fit_scales
                                else (0,))]
    rows = []
    for device in args.devices:
        for amp in ([False, True] if device == "cuda" else [False]):
            for scale, fit_iters in states:
                baseline, brefine = SCALES[scale]["configs"]
                cases = [("Mask R-CNN", baseline, {}),
                         *((name, brefine, heads) for name, heads in BREFINE_HEADS.items())]
                results = time_cases(
                    [dict(device=device, amp=amp, scale=scale, config=config,
                          overrides=overrides, repeats=args.repeats, fit_iters=fit_iters,
                          detections=args.detections) for _, config, overrides in cases],
                    args.rounds, fit_dir)
                base = results[0]
                for (name, config, _), res in zip(cases, results):
                    row = {
                        "device": device, "precision": "AMP fp16" if amp else "fp32",
                        "scale": f"{scale} ({SCALES[scale]['size']} px × {SCALES[scale]['batch']})",
                        "state": f"fitted ({fit_iters} its, loss {res['fit_loss']:.2f})"
                                 if fit_iters else "init",
                        "model": name, "config": config,
                        "mask RoIs/iter": f"{res['mask_rois']:.0f}",
                        "train s/iter": f"{res['train_s']:.3f}",
                        "× Mask R-CNN": f"{res['train_s'] / base['train_s']:.2f}",
                        "train peak": f"{res['train_mib']:.0f} MiB",
                    }
                    for n in args.detections:
                        row[f"img/s, {n} det"] = (f"{res['images_per_s'][n]:.2f} "
                                                  f"({res['detections_per_image'][n]:.0f}/img)")
                        row[f"× Mask R-CNN, {n} det"] = \
                            f"{res['images_per_s'][n] / base['images_per_s'][n]:.2f}"
                    rows.append(row)
    write_table("train_step", "Whole model: training iteration and inference, BRefine vs Mask R-CNN",
                ["device", "precision", "scale", "state", "model", "config", "mask RoIs/iter",
                 "train s/iter", "× Mask R-CNN", "train peak",
                 *(f"{what}, {n} det" for n in args.detections
                   for what in ("img/s", "× Mask R-CNN"))], rows,
                "Inference keeps the same number of detections per image for every model "
                "(score threshold 0; `img/s, N det` at N kept, with the mean actually kept "
                "per image in brackets). Same batch, same process layout (one fresh process "
                f"per case and round, {args.rounds} rounds interleaved); times are the "
                f"fastest of {args.rounds} × {args.repeats} repeats, peak memory the largest.")


if __name__ == "__main__":
    if not child_entry(run):
        main()
