"""RoI head of BRefine: P2 and RoIs to the fusion mask head, BR&S coupling."""

from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import torch
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi
from mmdet.utils import ConfigType, InstanceList
from torch import Tensor

from brefine.ops.balancing import value_balanced

from .fusion_mask_head import FusionMaskHead
from .rank_based_heads import RankBasedBBoxHead

# what a SamplingResult holds per positive, in the order of its positives
POSITIVE_FIELDS = ("pos_inds", "pos_priors", "pos_is_gt", "pos_assigned_gt_inds",
                   "pos_gt_labels", "pos_gt_bboxes", "pos_scores")


def cap_positives(sampling_results: List[SamplingResult], max_total: Optional[int]
                  ) -> List[SamplingResult]:
    """At most ``max_total`` positives over the batch, drawn uniformly at random.

    The published Rank & Sort Mask R-CNN trains its mask head on at most 200
    positives per batch: with every proposal kept (no sampler quota), a
    crowded batch would otherwise send thousands of RoIs through a 56×56 head.
    Returns shallow copies; the inputs are left as they are.
    """
    counts = [len(res.pos_inds) for res in sampling_results]
    total = sum(counts)
    if max_total is None or total <= max_total:
        return sampling_results
    device = sampling_results[0].pos_inds.device
    keep = torch.zeros(total, dtype=torch.bool, device=device)
    keep[torch.randperm(total, device=device)[:max_total]] = True
    capped = []
    for res, picked in zip(sampling_results, keep.split(counts)):
        res = copy.copy(res)
        for name in POSITIVE_FIELDS:
            if hasattr(res, name):
                setattr(res, name, getattr(res, name)[picked])
        capped.append(res)
    return capped


@MODELS.register_module()
class BRefineRoIHead(StandardRoIHead):
    """StandardRoIHead whose mask head also sees P2 and the RoIs.

    With a rank-based box head (k = 2) the mask task (k = 3 of Eq. 5) is
    coupled to it here: each positive carries its detached classification
    score (the maximum over classes, as the published Rank & Sort RoI head
    does) into the mask loss (Eq. 6), and the mask loss is scaled to the box
    head's Rank & Sort value, λ_3 = L_RS2 / L_3. With a plain box head the mask
    loss is the unweighted boundary BCE.

    ``train_cfg.rcnn.max_mask_rois`` (optional) caps the positives the mask
    head trains on per batch (:func:`cap_positives`).
    """

    def init_mask_head(self, mask_roi_extractor: ConfigType, mask_head: ConfigType) -> None:
        if mask_roi_extractor is None and mask_head.get("type") == "FusionMaskHead":
            raise ValueError("BRefineRoIHead needs a mask_roi_extractor: the fusion mask head "
                             "reads P2 at the mask RoIs, which a shared box extractor lacks")
        super().init_mask_head(mask_roi_extractor, mask_head)

    @property
    def rank_based(self) -> bool:
        return isinstance(self.bbox_head, RankBasedBBoxHead)

    def fusion_forward(self, x: Tuple[Tensor], rois: Tensor,
                       labels: Optional[Tensor] = None) -> dict:
        """The fusion head on ``rois`` (B, 5), given P2 = x[0] (N_img, C, H/4, W/4).

        With ``labels`` (B,) the head computes those classes' logits only.
        """
        mask_feats = self.mask_roi_extractor(x[:self.mask_roi_extractor.num_inputs], rois)
        mask_preds = self.mask_head(mask_feats, x[0], rois, labels)
        return dict(mask_preds=mask_preds, mask_feats=mask_feats)

    def _mask_forward(self, x: Tuple[Tensor], rois: Tensor = None,
                      pos_inds: Optional[Tensor] = None,
                      bbox_feats: Optional[Tensor] = None) -> dict:
        """All classes' logits; any other mask head (Mask R-CNN's FCN head, for
        Rank & Sort Mask R-CNN) runs as in the parent."""
        if not isinstance(self.mask_head, FusionMaskHead):
            return super()._mask_forward(x, rois, pos_inds, bbox_feats)
        return self.fusion_forward(x, rois)

    def bbox_loss(self, x: Tuple[Tensor], sampling_results: List[SamplingResult]) -> dict:
        """The parent's box loss; with BR&S each result also gets ``pos_scores``."""
        bbox_results = super().bbox_loss(x, sampling_results)
        if self.rank_based:
            # a result's priors are its positives, then its negatives
            scores = bbox_results["cls_score"].detach().sigmoid().max(dim=1).values
            per_image = scores.split([len(res.priors) for res in sampling_results])
            for res, image_scores in zip(sampling_results, per_image):
                res.pos_scores = image_scores[:len(res.pos_inds)]
        return bbox_results

    def mask_loss(self, x: Tuple[Tensor], sampling_results: List[SamplingResult],
                  bbox_feats: Tensor, batch_gt_instances: InstanceList) -> dict:
        """The mask loss on at most ``max_mask_rois`` positives."""
        capped = cap_positives(sampling_results, self.train_cfg.get("max_mask_rois"))
        if not isinstance(self.mask_head, FusionMaskHead):
            return super().mask_loss(x, capped, bbox_feats, batch_gt_instances)
        labels = torch.cat([res.pos_gt_labels for res in capped])
        mask_results = self.fusion_forward(x, bbox2roi([res.pos_priors for res in capped]),
                                           labels)
        mask_results.update(loss_mask=self.mask_head.loss_and_target(
            mask_preds=mask_results["mask_preds"], sampling_results=capped,
            batch_gt_instances=batch_gt_instances, rcnn_train_cfg=self.train_cfg)["loss_mask"])
        return mask_results

    def predict_mask(self, x: Tuple[Tensor], batch_img_metas: List[dict],
                     results_list: InstanceList, rescale: bool = False) -> InstanceList:
        """The parent's prediction, with the fusion head computing each
        detection's own class only."""
        if not isinstance(self.mask_head, FusionMaskHead) or not sum(map(len, results_list)):
            return super().predict_mask(x, batch_img_metas, results_list, rescale)
        rois = bbox2roi([res.bboxes for res in results_list])
        labels = torch.cat([res.labels for res in results_list])
        mask_preds = self.fusion_forward(x, rois, labels)["mask_preds"]
        return self.mask_head.predict_by_feat(
            mask_preds=mask_preds.split([len(res) for res in results_list], 0),
            results_list=results_list, batch_img_metas=batch_img_metas,
            rcnn_test_cfg=self.test_cfg, rescale=rescale)

    def loss(self, x: Tuple[Tensor], rpn_results_list: InstanceList,
             batch_data_samples: List[DetDataSample]) -> dict:
        """The parent's losses; with BR&S the mask loss is balanced to L_RS2 (Eq. 5, k = 3)."""
        losses = super().loss(x, rpn_results_list, batch_data_samples)
        if self.rank_based and self.with_mask:
            losses["raw_mask"] = losses["loss_mask"].detach()
            losses["loss_mask"], losses["mask_lambda"] = value_balanced(
                losses["loss_mask"], losses["loss_rank"] + losses["loss_sort"])
        return losses
