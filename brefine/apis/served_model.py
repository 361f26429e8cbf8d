"""The MLflow pyfunc model of a registered brefine model ("models from code").

MLflow runs this file to load a registered version (``mlflow.pyfunc.load_model``,
``mlflow models serve``); the version's artifacts give the config, the
weights and the class names (:mod:`brefine.tracking.model_format`). Nothing
is unpickled but the weights, with ``torch.load(weights_only=True)``.

A request is a DataFrame column ``image`` of base64 PNG/JPEG bytes, at most
:data:`MAX_IMAGE_BYTES` and :data:`MAX_IMAGE_SIDE` px a side each; the
answer is one row per instance. A bad request (no images, text that is not
base64, bytes that are not an image, an image too large) raises an
``MlflowException`` with ``INVALID_PARAMETER_VALUE``, which the scoring
server answers with 400 and the message.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any, Optional

import mlflow
import pandas as pd

from brefine.apis.inference import Detector, ImageError, Instance, batches
from brefine.tracking.model_format import (DEFAULT_SCORE_THR, INPUT_COLUMN, OUTPUT_COLUMNS,
                                           SCORE_PARAM)

MAX_IMAGE_SIDE = 4096
MAX_IMAGE_BYTES = 20 * 2**20
BATCH_SIZE = 4


def decode_request(detector: Detector, model_input: pd.DataFrame) -> list:
    """The images of a request (a DataFrame with column ``image``), decoded.

    Returns:
        One (H, W, 3) uint8 array per row, as :meth:`Detector.decode` gives.

    Raises:
        ImageError: no images, or a row that is not base64 of an image within the limits.
    """
    if INPUT_COLUMN not in getattr(model_input, "columns", ()):
        raise ImageError(f"the request needs a column {INPUT_COLUMN!r} of base64-encoded "
                         "PNG/JPEG images")
    values = list(model_input[INPUT_COLUMN])
    if not values:
        raise ImageError("the request holds no images")
    images = []
    for row, value in enumerate(values):
        name = f"image {row}"
        # base64 of n bytes is 4 * ceil(n / 3) characters: refused before decoding
        if isinstance(value, str) and len(value) > 4 * (MAX_IMAGE_BYTES // 3 + 1):
            raise ImageError(f"{name} is over {MAX_IMAGE_BYTES // 2**20} MiB; images may be at "
                             f"most {MAX_IMAGE_BYTES // 2**20} MiB")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError) as err:
            raise ImageError(f"{name} is not base64 ({err})") from None
        images.append(detector.decode(data, name, max_side=MAX_IMAGE_SIDE))
    return images


def instance_row(image_index: int, instance: Instance) -> dict:
    """The answer's row of one instance (columns :data:`OUTPUT_COLUMNS`)."""
    return dict(image_index=image_index, category=instance.category, score=instance.score,
                box=list(instance.box), mask=instance.mask)


class ServedModel(mlflow.pyfunc.PythonModel):
    """A registered model's detector behind MLflow's pyfunc interface."""

    def load_context(self, context: Any) -> None:
        """Load the detector from the version's artifacts, on a GPU when there is one.

        Raises:
            CheckpointError: the weights do not load into the config's model.
        """
        import torch

        self.detector = Detector(
            context.artifacts["config"], context.artifacts["weights"],
            "cuda" if torch.cuda.is_available() else "cpu",
            classes=json.loads(Path(context.artifacts["classes"]).read_text()))

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: Optional[dict] = None) -> pd.DataFrame:
        """Instances scoring at least ``params["score_thr"]`` in each image of ``model_input``.

        Returns:
            A DataFrame, one row per instance, columns :data:`OUTPUT_COLUMNS`.

        Raises:
            MlflowException: INVALID_PARAMETER_VALUE, a bad request (the message says why).
        """
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        score_thr = float((params or {}).get(SCORE_PARAM, DEFAULT_SCORE_THR))
        try:
            images = decode_request(self.detector, model_input)
        except ImageError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        rows = []
        for start, batch in batches(images, BATCH_SIZE):
            for k, instances in enumerate(self.detector.detect(batch, score_thr)):
                rows += [instance_row(start + k, i) for i in instances]
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


mlflow.models.set_model(ServedModel())
