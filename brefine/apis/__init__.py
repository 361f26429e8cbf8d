"""Plain functions a notebook calls, apart from the command line.

    from brefine.apis import evaluate, predict
    metrics, per_class = evaluate("brefine_tiny_synthetic", "checkpoint.pth", "out/")
"""

from .evaluate import evaluate
from .predict import collect_images, predict
from .smoke import smoke
from .toy_train import toy_train

__all__ = ["collect_images", "evaluate", "predict", "smoke", "toy_train"]
