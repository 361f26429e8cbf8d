"""Multistage fusion mask head (Section 3.1, Figure 4 of the paper)."""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.config import ConfigDict
from mmengine.model import ModuleList
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.registry import MODELS
from mmdet.utils import InstanceList
from torch import Tensor, nn

from brefine.ops.boundary import (DEFAULT_BOUNDARY_RATIO, boundary_region, boundary_weighted_bce,
                                  label_size_width)
from brefine.ops.roi_sampling import roi_sample

from .residual_aware import ResidualAwareModule

MAX_STAGES = 4
# Stages narrower than this (8 channels in the residual-aware module's squeezed
# branches) stopped learning in the tiny runs: all-zero ReLUs, constant masks.
MIN_STAGE_WIDTH = 16


def fusion_output_size(num_stages: int, roi_feat_size: int = 14) -> int:
    """S = roi_feat_size · 2^(n−1): 14, 28, 56, 112 for 1-4 stages."""
    return roi_feat_size * 2 ** (num_stages - 1)


@MODELS.register_module()
class FusionMaskHead(FCNMaskHead):
    """Mask head that refines 14×14 RoI features to 14·2^(n−1) in n stages.

    Main line: the usual mask RoI features (B, C_in, 14, 14) from the FPN
    level that suits each RoI, through ``num_convs`` 3×3 convs (as Mask R-CNN),
    giving C_0 = ``conv_out_channels`` channels. Auxiliary line: for stage k
    (k = 0 … n−1), RoIAlign on P2 (the finest FPN level) at 14·2^k with
    2^(n−1−k) samples per bin side, then a 3×3 conv to the stage's width C_k.
    All stages share one sampling pass at the finest size, average-pooled to
    the coarser ones, which is that RoIAlign exactly
    (:mod:`brefine.ops.roi_sampling`). Stage k adds the auxiliary features to the
    main line, runs a residual-aware module that ends at C_{k+1} channels and,
    except after the last stage, upsamples ×2 bilinearly (the paper found
    transposed convs worse). A 1×1 conv gives (B, num_classes, S, S) logits.

    Widths. The paper keeps every stage at C_0 (``channel_ratio=1``,
    ``aux_channels=None``): the 3-stage head then costs 10-11× the time of
    Mask R-CNN's FCN head on CPU (``benchmarks/results/head.md``). ``channel_ratio=0.5`` halves the
    width at each ×2 upsampling, as RefineMask does, so every stage costs about
    the same; ``aux_channels=c`` first reduces P2 to c channels with a 1×1 conv,
    once per image, so the auxiliary RoIAligns and 3×3 convs read c channels
    instead of C_in. ``aux_kernel_size=1`` makes the auxiliary convs 1×1
    (a deviation from the paper's 3×3): they run on bilinear samples of P2,
    which at 56×56 put 3 to 14 samples on each P2 pixel for RoIs of 80 to
    16 px,
    so a 3×3 window spans under one P2 pixel there and adds mostly cost
    (in the tiny head the last stage's 3×3 aux conv is 7 of 23 M
    multiply-adds per RoI).

    Training targets are cropped at S×S whatever ``mask_size`` the train config
    says, and the loss is the boundary-weighted BCE (Eq. 2) with the band width
    following each object's size in image pixels (:mod:`brefine.ops.boundary`),
    weighted per instance by ``pos_scores`` when the sampling results carry them
    (Eq. 6, set by :class:`BRefineRoIHead`).

    Args:
        num_stages: n ∈ {1, 2, 3, 4}; output size 14, 28, 56, 112.
        boundary_lambda: λ of Eq. 2.
        boundary_ratio: band width = ratio × the object's box diagonal in
            image pixels.
        channel_ratio: C_k = C_0 · ratio^k (at least ``MIN_STAGE_WIDTH``).
        aux_channels: channels P2 is reduced to before the auxiliary line
            (None: no reduction).
        aux_kernel_size: kernel of the auxiliary convs (the paper: 3).
        use_residual_aware: False replaces each module by a 1×1 conv to the
            next width (identity at constant width; Table 3).
        aux_featmap_stride: stride of the feature map the auxiliary line reads
            (P2: 4).
        channels_last: run the head in channels-last memory format (NHWC).
            The result is the same up to float rounding; at the head's few
            channels and large maps, NCHW convs, bilinear upsampling and
            1×1 convs run 2-10× slower on CPU (oneDNN reorders every call),
            and NHWC is what cuDNN's fp16 kernels want on GPU
            (``benchmarks/results/head.md``). Only this head's own ops see
            NHWC: mmcv's RoIAlign reads its input as contiguous NCHW and
            returns wrong values for an NHWC one.
        inference_chunk_mib: on CPU without autograd, RoIs go through the head
            in chunks whose largest activation is at most this size. The result
            is the same; what changes is memory. Every stage makes a few
            (B, C_k, S_k, S_k) tensors: for 400 RoIs at 56×56 and 16 channels,
            80 MB each. That is above glibc's 32 MB mmap ceiling, so each one
            was mapped fresh from the kernel and page-faulted in, which cost
            more than the convs: tiny BRefine inference took 0.7 s a batch,
            against 0.45 s with mmap turned off. A chunk's tensors stay in the
            cache and are reused from the heap. Training keeps every activation
            for the backward pass, and CUDA's caching allocator reuses its
            memory, so neither is chunked.
        Others as :class:`mmdet.models.FCNMaskHead`.
    """

    def __init__(self,
                 num_stages: int = 3,
                 boundary_lambda: float = 1.0,
                 boundary_ratio: float = DEFAULT_BOUNDARY_RATIO,
                 channel_ratio: float = 1.0,
                 aux_channels: Optional[int] = None,
                 aux_kernel_size: int = 3,
                 use_residual_aware: bool = True,
                 aux_featmap_stride: int = 4,
                 channels_last: bool = True,
                 inference_chunk_mib: float = 8.0,
                 roi_feat_size: int = 14,
                 **kwargs) -> None:
        if not 1 <= num_stages <= MAX_STAGES:
            raise ValueError(f"num_stages must be in 1..{MAX_STAGES}, got {num_stages}")
        if inference_chunk_mib <= 0:
            raise ValueError(f"inference_chunk_mib must be positive, got {inference_chunk_mib}")
        if aux_kernel_size < 1 or aux_kernel_size % 2 == 0:
            raise ValueError(f"aux_kernel_size must be odd and positive, got {aux_kernel_size}")
        if not 0 < channel_ratio <= 1:
            raise ValueError(f"channel_ratio must be in (0, 1], got {channel_ratio}")
        kwargs.pop("upsample_cfg", None)
        kwargs.pop("loss_mask", None)
        super().__init__(roi_feat_size=roi_feat_size, upsample_cfg=dict(type=None), **kwargs)
        # FCNMaskHead builds a loss and a logits conv for its own width; ours
        # are the boundary BCE and a conv on the last stage's width.
        del self.loss_mask
        self.num_stages = num_stages
        self.boundary_lambda = boundary_lambda
        self.boundary_ratio = boundary_ratio
        self.output_size = fusion_output_size(num_stages, roi_feat_size)
        self.inference_chunk_mib = inference_chunk_mib
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        widths = [max(MIN_STAGE_WIDTH, 2 * round(self.conv_out_channels * channel_ratio ** k / 2))
                  for k in range(num_stages)]
        self.stage_channels = tuple(widths)
        # the largest activation of one RoI: stage k is C_k wide at S/2^(n-1-k)
        self._roi_elements = max(width * (self.output_size >> (num_stages - 1 - k)) ** 2
                                 for k, width in enumerate(widths))

        self.aux_reduce = None
        aux_in = self.in_channels
        if aux_channels is not None:
            self.aux_reduce = ConvModule(self.in_channels, aux_channels, 1,
                                         conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)
            aux_in = aux_channels
        self.aux_spatial_scale = 1 / aux_featmap_stride
        self.aux_convs = ModuleList(
            ConvModule(aux_in, width, aux_kernel_size, padding=aux_kernel_size // 2,
                       conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)
            for width in widths)
        next_widths = widths[1:] + widths[-1:]
        self.stage_modules = ModuleList(
            ResidualAwareModule(width, out) if use_residual_aware else _transition(width, out)
            for width, out in zip(widths, next_widths))
        out_channels = 1 if self.class_agnostic else self.num_classes
        self.conv_logits = nn.Conv2d(widths[-1], out_channels, 1)

    def init_weights(self) -> None:
        """As FCNMaskHead, but the logits conv starts near zero (std 0.001, as
        Detectron2's mask predictor): every mask starts at p ≈ 0.5, whatever
        the scale of the last stage's features."""
        super().init_weights()
        nn.init.normal_(self.conv_logits.weight, std=0.001)
        nn.init.zeros_(self.conv_logits.bias)

    def forward(self, x: Tensor, fine_feats: Optional[Tensor] = None,
                rois: Optional[Tensor] = None, labels: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            x: (B, C_in, 14, 14) mask RoI features of the main line.
            fine_feats: (N_img, C_in, H/4, W/4) the P2 feature map.
            rois: (B, 5) RoIs as (batch index, x1, y1, x2, y2) in image pixels.
            labels: optional (B,) class of each RoI: only that class's logits
                are computed (the loss and the prediction use no other), which
                spares a (B, num_classes, S, S) tensor at the largest size.

        Returns:
            (B, num_classes, S, S) mask logits, S = 14·2^(num_stages−1), or
            (B, 1, S, S) for class-agnostic heads and when ``labels`` are given.
        """
        if fine_feats is None or rois is None:
            raise ValueError("FusionMaskHead needs the P2 features and the RoIs; "
                             "use it inside BRefineRoIHead")
        fine_feats = fine_feats.contiguous(memory_format=self.memory_format)
        if self.aux_reduce is not None:
            fine_feats = self.aux_reduce(fine_feats)
        chunk = max(1, int(self.inference_chunk_mib * 2**20
                           // (self._roi_elements * x.element_size())))
        if torch.is_grad_enabled() or x.device.type != "cpu" or len(rois) <= chunk:
            return self._forward_rois(x, fine_feats, rois, labels)
        return torch.cat([
            self._forward_rois(x[i:i + chunk], fine_feats, rois[i:i + chunk],
                               None if labels is None else labels[i:i + chunk])
            for i in range(0, len(rois), chunk)])

    def _forward_rois(self, x: Tensor, fine_feats: Tensor, rois: Tensor,
                      labels: Optional[Tensor]) -> Tensor:
        """``forward`` on (reduced) P2 features, for one set of RoIs."""
        x = x.contiguous(memory_format=self.memory_format)
        for conv in self.convs:
            x = conv(x)
        # finest first: each coarser size pools the previous one by 2, which
        # equals pooling the finest by 2^j and reads a quarter of the data
        fine = [roi_sample(fine_feats, rois, self.output_size, self.aux_spatial_scale)
                .contiguous(memory_format=self.memory_format)]
        for _ in range(self.num_stages - 1):
            fine.append(F.avg_pool2d(fine[-1], 2))
        for k in range(self.num_stages):
            x = self.stage_modules[k](x + self.aux_convs[k](fine[-1 - k]))
            if k + 1 < self.num_stages:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if labels is None or self.class_agnostic:
            return self.conv_logits(x)
        weight = self.conv_logits.weight[labels, :, 0, 0]  # (B, C)
        logits = torch.einsum("bchw,bc->bhw", x, weight) + self.conv_logits.bias[labels, None, None]
        return logits[:, None]

    def get_targets(self, sampling_results: List[SamplingResult],
                    batch_gt_instances: InstanceList, rcnn_train_cfg: ConfigDict) -> Tensor:
        """(num_pos, S, S) targets at this head's output size."""
        cfg = ConfigDict(dict(rcnn_train_cfg, mask_size=self.output_size))
        return super().get_targets(sampling_results, batch_gt_instances, cfg)

    def loss_and_target(self, mask_preds: Tensor, sampling_results: List[SamplingResult],
                        batch_gt_instances: InstanceList, rcnn_train_cfg: ConfigDict) -> dict:
        """Boundary-weighted BCE of the positives' masks.

        Args:
            mask_preds: (num_pos, num_classes, S, S) logits.
            sampling_results: per image; their ``pos_scores`` (num_pos_i,), where
                present, weigh the instances (Eq. 6).
        """
        mask_targets = self.get_targets(sampling_results, batch_gt_instances, rcnn_train_cfg)
        if mask_preds.size(0) == 0:
            return dict(loss_mask=dict(loss_mask=mask_preds.sum()), mask_targets=mask_targets)
        if mask_preds.size(1) == 1:  # class-agnostic, or computed for the labels only
            logits = mask_preds[:, 0]
        else:
            labels = torch.cat([res.pos_gt_labels for res in sampling_results])
            logits = mask_preds[torch.arange(len(labels), device=labels.device), labels]
        gt_boxes = torch.cat([res.pos_gt_bboxes for res in sampling_results])
        widths = label_size_width(gt_boxes[:, 3] - gt_boxes[:, 1], gt_boxes[:, 2] - gt_boxes[:, 0],
                                  self.boundary_ratio)
        boundary = boundary_region(mask_targets, widths.to(mask_targets.device))
        weights = None
        if all(hasattr(res, "pos_scores") for res in sampling_results):
            weights = torch.cat([res.pos_scores for res in sampling_results])
        loss = boundary_weighted_bce(logits, mask_targets, boundary, self.boundary_lambda, weights)
        return dict(loss_mask=dict(loss_mask=loss), mask_targets=mask_targets)

    def _predict_by_feat_single(self, mask_preds: Tensor, bboxes: Tensor, labels: Tensor,
                                img_meta: dict, rcnn_test_cfg: ConfigDict, rescale: bool = False,
                                activate_map: bool = False) -> Tensor:
        """The parent's pasting; ``mask_preds`` may hold the labels' logits only."""
        if mask_preds.size(1) == 1 and not self.class_agnostic:
            labels = torch.zeros_like(labels)  # channel 0 is each RoI's own class
        return super()._predict_by_feat_single(mask_preds, bboxes, labels, img_meta,
                                               rcnn_test_cfg, rescale, activate_map)


def _transition(channels: int, out_channels: int) -> nn.Module:
    """Stand-in for the residual-aware module in the Table 3 ablation: a linear
    1×1 projection to the next width, as the module's own restore."""
    if channels == out_channels:
        return nn.Identity()
    return nn.Conv2d(channels, out_channels, 1)
