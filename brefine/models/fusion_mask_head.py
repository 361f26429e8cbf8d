"""Multistage fusion mask head (Section 3.1, Figure 4 of the paper)."""

from __future__ import annotations

from typing import List, Optional

import mmcv.ops
import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.config import ConfigDict
from mmengine.model import ModuleList
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.registry import MODELS
from mmdet.utils import InstanceList
from torch import Tensor

from brefine.ops.boundary import DEFAULT_BOUNDARY_RATIO, boundary_region, boundary_weighted_bce

from .residual_aware import ResidualAwareModule

MAX_STAGES = 4


@MODELS.register_module()
class FusionMaskHead(FCNMaskHead):
    """Mask head that refines 14×14 RoI features to 14·2^(n−1) in n stages.

    Main line: the usual mask RoI features (B, C_in, 14, 14) from the FPN
    level that suits each RoI, through ``num_convs`` 3×3 convs (as Mask R-CNN).
    Auxiliary line: for stage k (k = 0 … n−1), RoIAlign on P2 (the finest FPN
    level) at 14·2^k, then a 3×3 conv. Stage k adds the auxiliary features to
    the main line, runs a residual-aware module and, except after the last
    stage, upsamples ×2 bilinearly (the paper found transposed convs worse).
    A 1×1 conv gives (B, num_classes, S, S) logits, S = 14·2^(n−1).

    Training targets are cropped at S×S whatever ``mask_size`` the train config
    says, and the loss is the boundary-weighted BCE (Eq. 2), optionally with
    per-instance weights (Eq. 6).

    Args:
        num_stages: n ∈ {1, 2, 3, 4}; output size 14, 28, 56, 112.
        boundary_lambda: λ of Eq. 2.
        boundary_ratio: adaptive boundary width = ratio × object diagonal
            (see :mod:`brefine.ops.boundary`).
        use_residual_aware: False replaces each module by identity (Table 3).
        aux_roi_layer: RoIAlign settings of the auxiliary line.
        aux_featmap_stride: stride of the feature map the auxiliary line reads
            (P2: 4).
        Others as :class:`mmdet.models.FCNMaskHead`.
    """

    def __init__(self,
                 num_stages: int = 3,
                 boundary_lambda: float = 1.0,
                 boundary_ratio: float = DEFAULT_BOUNDARY_RATIO,
                 use_residual_aware: bool = True,
                 aux_roi_layer: Optional[dict] = None,
                 aux_featmap_stride: int = 4,
                 roi_feat_size: int = 14,
                 **kwargs) -> None:
        if not 1 <= num_stages <= MAX_STAGES:
            raise ValueError(f"num_stages must be in 1..{MAX_STAGES}, got {num_stages}")
        if boundary_lambda < 0:
            raise ValueError(f"boundary_lambda must be >= 0, got {boundary_lambda}")
        kwargs.pop("upsample_cfg", None)
        kwargs.pop("loss_mask", None)
        super().__init__(roi_feat_size=roi_feat_size, upsample_cfg=dict(type=None), **kwargs)
        # FCNMaskHead builds a loss from its config; ours is the boundary BCE.
        del self.loss_mask
        self.num_stages = num_stages
        self.boundary_lambda = boundary_lambda
        self.boundary_ratio = boundary_ratio
        self.output_size = roi_feat_size * 2 ** (num_stages - 1)

        aux_roi_layer = dict(aux_roi_layer or dict(type="RoIAlign", sampling_ratio=0,
                                                   aligned=True))
        layer_cls = getattr(mmcv.ops, aux_roi_layer.pop("type"))
        self.aux_roi_layers = ModuleList(
            layer_cls(output_size=roi_feat_size * 2 ** k, spatial_scale=1 / aux_featmap_stride,
                      **aux_roi_layer)
            for k in range(num_stages))
        self.aux_convs = ModuleList(
            ConvModule(self.in_channels, self.conv_out_channels, 3, padding=1,
                       conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)
            for _ in range(num_stages))
        self.stage_modules = ModuleList(
            ResidualAwareModule(self.conv_out_channels) if use_residual_aware else torch.nn.Identity()
            for _ in range(num_stages))

    def forward(self, x: Tensor, fine_feats: Optional[Tensor] = None,
                rois: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            x: (B, C_in, 14, 14) mask RoI features of the main line.
            fine_feats: (N_img, C_in, H/4, W/4) the P2 feature map.
            rois: (B, 5) RoIs as (batch index, x1, y1, x2, y2) in image pixels.

        Returns:
            (B, num_classes or 1, S, S) mask logits, S = 14·2^(num_stages−1).
        """
        if fine_feats is None or rois is None:
            raise ValueError("FusionMaskHead needs the P2 features and the RoIs; "
                             "use it inside BRefineRoIHead")
        for conv in self.convs:
            x = conv(x)
        for k in range(self.num_stages):
            aux = self.aux_convs[k](self.aux_roi_layers[k](fine_feats, rois))
            x = self.stage_modules[k](x + aux)
            if k + 1 < self.num_stages:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv_logits(x)

    def get_targets(self, sampling_results: List[SamplingResult],
                    batch_gt_instances: InstanceList, rcnn_train_cfg: ConfigDict) -> Tensor:
        """(num_pos, S, S) targets at this head's output size."""
        cfg = ConfigDict(dict(rcnn_train_cfg, mask_size=self.output_size))
        return super().get_targets(sampling_results, batch_gt_instances, cfg)

    def loss_and_target(self, mask_preds: Tensor, sampling_results: List[SamplingResult],
                        batch_gt_instances: InstanceList, rcnn_train_cfg: ConfigDict,
                        instance_weights: Optional[Tensor] = None) -> dict:
        """Boundary-weighted BCE of the positives' masks.

        Args:
            mask_preds: (num_pos, num_classes, S, S) logits.
            instance_weights: optional (num_pos,) weights, e.g. the detached
                classification scores of the positives (Eq. 6).
        """
        mask_targets = self.get_targets(sampling_results, batch_gt_instances, rcnn_train_cfg)
        if mask_preds.size(0) == 0:
            return dict(loss_mask=dict(loss_mask=mask_preds.sum()), mask_targets=mask_targets)
        if self.class_agnostic:
            logits = mask_preds[:, 0]
        else:
            labels = torch.cat([res.pos_gt_labels for res in sampling_results])
            logits = mask_preds[torch.arange(len(labels), device=labels.device), labels]
        boundary = boundary_region(mask_targets, ratio=self.boundary_ratio)
        loss = boundary_weighted_bce(logits, mask_targets, boundary, self.boundary_lambda,
                                     instance_weights)
        return dict(loss_mask=dict(loss_mask=loss), mask_targets=mask_targets)
