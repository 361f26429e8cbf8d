"""What a registered model is: an MLflow pyfunc model, logged from code.

Its files (MLflow artifacts of the model): ``config.py`` (the resolved
config the run trained with), ``weights.pth`` (state_dict and the
checkpoint's meta, no optimizer) and ``classes.json`` (class names, by
label). The code MLflow runs to load it is ``brefine/apis/served_model.py``
("models from code": MLflow executes the file, it unpickles nothing; the
weights load with ``torch.load(weights_only=True)``).

Input: a DataFrame column ``image`` of base64-encoded PNG/JPEG bytes, one
image a row. Output: one row per instance, with the columns of
:data:`OUTPUT_COLUMNS`. Parameter ``score_thr`` (default 0.3).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

CONFIG_FILE = "config.py"
WEIGHTS_FILE = "weights.pth"
CLASSES_FILE = "classes.json"
# the model's artifacts by the keys the served model reads them with
ARTIFACT_FILES = {"config": CONFIG_FILE, "weights": WEIGHTS_FILE, "classes": CLASSES_FILE}

INPUT_COLUMN = "image"
# image_index: the row of the request; box: x1, y1, x2, y2 in pixels;
# mask: COCO RLE {"size": [height, width], "counts": str}
OUTPUT_COLUMNS = ("image_index", "category", "score", "box", "mask")
SCORE_PARAM = "score_thr"
DEFAULT_SCORE_THR = 0.3

# brefine.apis, which holds it, is a layer above this one: named by path,
# never imported (MLflow copies the file into the model and runs it there)
SERVED_MODEL_CODE = Path(__file__).resolve().parents[1] / "apis" / "served_model.py"


def class_names(cfg: Any, meta: Mapping) -> list[str]:
    """A model's class names, by label: its config's ``metainfo``, else the
    checkpoint meta's ``dataset_meta`` (MMEngine writes it), else none."""
    return list(cfg.get("metainfo", {}).get("classes") or
                meta.get("dataset_meta", {}).get("classes") or ())


def write_model_files(folder: Path, state: Mapping, cfg: Any) -> dict[str, Path]:
    """Write the model's files for checkpoint ``state`` and config ``cfg`` into ``folder``.

    Returns:
        Their paths by artifact key (:data:`ARTIFACT_FILES`).
    """
    import torch

    meta = state.get("meta", {})
    paths = {key: folder / name for key, name in ARTIFACT_FILES.items()}
    torch.save({"state_dict": state["state_dict"], "meta": meta}, paths["weights"])
    cfg.dump(str(paths["config"]))
    paths["classes"].write_text(json.dumps(class_names(cfg, meta)))
    return paths


def signature() -> Any:
    """The MLflow ModelSignature of :mod:`this format <brefine.tracking.model_format>`."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import (Array, ColSpec, Object, ParamSchema, ParamSpec, Property,
                                     Schema)

    rle = Object([Property("size", Array("long")), Property("counts", "string")])
    outputs = Schema([ColSpec("long", "image_index"), ColSpec("string", "category"),
                      ColSpec("double", "score"), ColSpec(Array("double"), "box"),
                      ColSpec(rle, "mask")])
    return ModelSignature(inputs=Schema([ColSpec("string", INPUT_COLUMN)]), outputs=outputs,
                          params=ParamSchema([ParamSpec(SCORE_PARAM, "double",
                                                        DEFAULT_SCORE_THR)]))


def encode_images(images: Sequence[bytes]) -> Any:
    """The model's input for encoded images (PNG/JPEG bytes): a DataFrame of base64 text."""
    import pandas as pd

    return pd.DataFrame({INPUT_COLUMN: [base64.b64encode(data).decode() for data in images]})


def input_example() -> Any:
    """A one-row input: a 64 px image of the built-in synthetic data, as PNG."""
    import numpy as np
    from PIL import Image

    from brefine.data.shapes import render_scene

    buffer = io.BytesIO()
    Image.fromarray(render_scene(np.random.default_rng(0), size=64).image).save(buffer, "PNG")
    return encode_images([buffer.getvalue()])


def pip_requirements() -> list[str]:
    """What the model needs: brefine as installed here (its source when installed from
    one, per PEP 610), then brefine's own dependencies, as its metadata pins them."""
    from importlib.metadata import distribution

    dist = distribution("brefine")
    direct = dist.read_text("direct_url.json")
    brefine = f"brefine @ {json.loads(direct)['url']}" if direct else f"brefine=={dist.version}"
    return [brefine] + [r for r in dist.requires or () if "extra ==" not in r]


def log_pyfunc_model(run_id: str, name: str, files: Mapping[str, Path], step: int = 0) -> Any:
    """Log ``files`` as run ``run_id``'s pyfunc model ``name``.

    MLflow's fluent API (its tracking URI) must point at the run's store.
    ``step``: the run's metrics at this step are copied onto the logged model.
    MLflow loads the model once and predicts the input example before it
    uploads anything, and warns when that fails.

    Returns:
        MLflow's ModelInfo (``model_uri`` is ``models:/<model id>``).

    Raises:
        MlflowException: MLflow refuses the model or cannot store it.
    """
    import mlflow
    from mlflow.models import Model

    if not SERVED_MODEL_CODE.is_file():
        raise FileNotFoundError(f"the served model's code {SERVED_MODEL_CODE} is missing")
    # Model.log, not mlflow.pyfunc.log_model: the latter logs to the *active*
    # run, and starting one would end it FINISHED, which lifecycle.py decides
    return Model.log(artifact_path=None, name=name, flavor=mlflow.pyfunc, run_id=run_id,
                     python_model=str(SERVED_MODEL_CODE),
                     artifacts={key: str(path) for key, path in files.items()},
                     signature=signature(), input_example=input_example(),
                     pip_requirements=pip_requirements(), step=step)
