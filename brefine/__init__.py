"""BRefine: multistage fusion mask head and BRank & Sort loss for Mask R-CNN,
trained with Ray Train, searched with Ray Tune, tracked with MLflow."""

__version__ = "0.1.0"
