"""RoI head of BRefine: P2 and RoIs to the fusion mask head, BR&S coupling."""

from __future__ import annotations

from typing import List, Optional, Tuple

from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.models.utils import unpack_gt_instances
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi
from mmdet.utils import ConfigType, InstanceList
from torch import Tensor

from brefine.ops.balancing import value_balanced


@MODELS.register_module()
class BRefineRoIHead(StandardRoIHead):
    """StandardRoIHead whose mask head also sees P2 and the RoIs.

    With a rank-based box head (k = 2) the mask task (k = 3 of Eq. 5) is
    wired here: the mask loss weighs each positive by its detached
    classification score (Eq. 6) and is scaled to the box head's Rank & Sort
    value, λ_3 = L_RS2 / L_3. With a plain box head the mask loss is the
    unweighted boundary BCE.
    """

    def init_mask_head(self, mask_roi_extractor: ConfigType, mask_head: ConfigType) -> None:
        if mask_roi_extractor is None:
            raise ValueError("BRefineRoIHead needs a mask_roi_extractor: the fusion mask head "
                             "reads P2 at the mask RoIs, which a shared box extractor lacks")
        super().init_mask_head(mask_roi_extractor, mask_head)

    def _mask_forward(self, x: Tuple[Tensor], rois: Tensor = None,
                      pos_inds: Optional[Tensor] = None,
                      bbox_feats: Optional[Tensor] = None) -> dict:
        """x: FPN levels, x[0] = P2 (N_img, C, H/4, W/4); rois: (B, 5)."""
        mask_feats = self.mask_roi_extractor(x[:self.mask_roi_extractor.num_inputs], rois)
        mask_preds = self.mask_head(mask_feats, x[0], rois)
        return dict(mask_preds=mask_preds, mask_feats=mask_feats)

    def loss(self, x: Tuple[Tensor], rpn_results_list: InstanceList,
             batch_data_samples: List[DetDataSample]) -> dict:
        batch_gt_instances, batch_gt_instances_ignore, _ = unpack_gt_instances(batch_data_samples)
        sampling_results = []
        for i, rpn_results in enumerate(rpn_results_list):
            rpn_results.priors = rpn_results.pop("bboxes")
            assign_result = self.bbox_assigner.assign(
                rpn_results, batch_gt_instances[i], batch_gt_instances_ignore[i])
            sampling_results.append(self.bbox_sampler.sample(
                assign_result, rpn_results, batch_gt_instances[i],
                feats=[lvl_feat[i][None] for lvl_feat in x]))

        rois = bbox2roi([res.priors for res in sampling_results])
        bbox_results = self._bbox_forward(x, rois)
        bbox_out = self.bbox_head.loss_and_target(
            cls_score=bbox_results["cls_score"], bbox_pred=bbox_results["bbox_pred"], rois=rois,
            sampling_results=sampling_results, rcnn_train_cfg=self.train_cfg)
        losses = dict(bbox_out["loss_bbox"])
        if self.with_mask:
            losses.update(self.mask_loss(x, sampling_results, batch_gt_instances,
                                         bbox_out.get("pos_scores"), bbox_out.get("rank_sort_value")))
        return losses

    def mask_loss(self, x: Tuple[Tensor], sampling_results: List[SamplingResult],
                  batch_gt_instances: InstanceList, pos_scores: Optional[Tensor] = None,
                  rank_sort_value: Optional[Tensor] = None) -> dict:
        """Mask loss of the positives; balanced to ``rank_sort_value`` if given."""
        pos_rois = bbox2roi([res.pos_priors for res in sampling_results])
        mask_preds = self._mask_forward(x, pos_rois)["mask_preds"]
        losses = self.mask_head.loss_and_target(
            mask_preds=mask_preds, sampling_results=sampling_results,
            batch_gt_instances=batch_gt_instances, rcnn_train_cfg=self.train_cfg,
            instance_weights=pos_scores)["loss_mask"]
        if rank_sort_value is not None:
            losses["loss_mask"], losses["mask_lambda"] = value_balanced(
                losses["loss_mask"], rank_sort_value)
        return losses
