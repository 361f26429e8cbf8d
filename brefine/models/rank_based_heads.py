"""RPN and RoI box heads trained with BRank & Sort (Eq. 5, tasks k = 1 and 2).

Classification: Rank & Sort loss on sigmoid logits with continuous labels,
the IoU of each positive's *predicted* box with its ground truth (so the score
learns to rank by localisation quality). Regression: GIoU on decoded boxes,
averaged over positives with their classification scores as weights (Eq. 6)
and scaled to the value of the Rank & Sort loss (λ_k = L_RS / L_k).
"""

from __future__ import annotations

from typing import List, Optional

import torch
from mmdet.models.dense_heads import RPNHead
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.models.utils import images_to_levels
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_overlaps, cat_boxes, get_box_tensor
from mmdet.utils import InstanceList, OptInstanceList
from mmengine.config import ConfigDict
from torch import Tensor, nn

from brefine.ops.balancing import score_weighted_mean, value_balanced
from brefine.ops.rank_sort import rank_sort_loss

# A positive whose predicted box misses its object entirely still is a
# positive; a zero label would silently turn it into a negative.
MIN_POSITIVE_IOU = 1e-6


@MODELS.register_module()
class RankSortLoss(nn.Module):
    """Rank & Sort loss as an MMDetection classification loss.

    Sigmoid scores with no background column: a box head using it predicts
    ``num_classes`` logits and reports a zero background score at test time.

    Args:
        delta: half-width δ of the smoothed step.
        use_sigmoid: must be True; read by anchor heads to size their output.
    """

    custom_cls_channels = True
    custom_activation = True
    custom_accuracy = False

    def __init__(self, delta: float = 0.5, use_sigmoid: bool = True) -> None:
        super().__init__()
        if not use_sigmoid:
            raise ValueError("RankSortLoss works on sigmoid logits; use_sigmoid must be True")
        self.delta = delta
        self.use_sigmoid = use_sigmoid

    def forward(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """logits, labels of the same shape → (ranking loss, sorting loss)."""
        return rank_sort_loss(logits, labels, self.delta)

    def get_cls_channels(self, num_classes: int) -> int:
        return num_classes

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """(n, C) logits → (n, C + 1) scores, the last (background) column 0."""
        scores = cls_score.sigmoid()
        return torch.cat([scores, scores.new_zeros(scores.size(0), 1)], dim=1)


def rank_sort_task_loss(cls_logits: Tensor, ignored: Tensor, pos_index: Tensor,
                        pos_scores: Tensor, pred_boxes: Tensor, target_boxes: Tensor,
                        loss_cls: RankSortLoss, loss_bbox: nn.Module) -> dict:
    """One task of Eq. 5: L_RS + λ_k · L_k.

    Args:
        cls_logits: (M,) all classification logits of the task, flattened.
        ignored: (M,) bool, entries that take no part.
        pos_index: (P,) positions of the positives in ``cls_logits``.
        pos_scores: (P,) the positives' classification scores w_i of Eq. 6.
        pred_boxes: (P, 4) decoded predicted boxes of the positives.
        target_boxes: (P, 4) their ground-truth boxes.
        loss_bbox: a GIoU loss with ``reduction='none'``.

    Returns:
        dict with the ``rank``, ``sort`` and ``bbox`` (λ_k · L_k) losses,
        ``lam`` (λ_k) and ``raw_bbox`` (L_k before balancing, detached).
    """
    iou = bbox_overlaps(pred_boxes.detach(), target_boxes, is_aligned=True)
    labels = torch.zeros_like(cls_logits)
    labels[ignored] = -1
    labels[pos_index] = iou.clamp_min(MIN_POSITIVE_IOU).to(labels.dtype)
    ranking, sorting = loss_cls(cls_logits, labels)

    giou = score_weighted_mean(loss_bbox(pred_boxes, target_boxes).reshape(-1), pos_scores)
    bbox, lam = value_balanced(giou, ranking + sorting)
    return dict(rank=ranking, sort=sorting, bbox=bbox, lam=lam, raw_bbox=giou.detach())


@MODELS.register_module()
class RankBasedRPNHead(RPNHead):
    """RPN with BRank & Sort, task k = 1.

    Rank & Sort over the objectness of every anchor of the batch (there is no
    RPN sampler: the ranking loss handles the imbalance), GIoU on decoded
    boxes, and the whole RPN loss scaled by ``rpn_weight`` (w of the paper).
    The weight goes on the whole loss: on L_GIoU alone, as Eq. 5 reads, the
    value balancing λ_1 = L_RS1 / (w·L_GIoU) would cancel it exactly.
    """

    def __init__(self, rpn_weight: float = 0.2,
                 loss_cls: dict = dict(type="RankSortLoss", use_sigmoid=True),
                 loss_bbox: dict = dict(type="GIoULoss", reduction="none"),
                 reg_decoded_bbox: bool = True, **kwargs) -> None:
        if rpn_weight <= 0:
            raise ValueError(f"rpn_weight must be > 0, got {rpn_weight}")
        if not reg_decoded_bbox:
            raise ValueError("RankBasedRPNHead regresses decoded boxes; reg_decoded_bbox must be True")
        super().__init__(loss_cls=loss_cls, loss_bbox=loss_bbox,
                         reg_decoded_bbox=reg_decoded_bbox, **kwargs)
        self.rpn_weight = rpn_weight

    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses over all anchors of all levels and images at once."""
        num_imgs = len(batch_img_metas)
        featmap_sizes = [featmap.size()[-2:] for featmap in cls_scores]
        anchor_list, valid_flag_list = self.get_anchors(
            featmap_sizes, batch_img_metas, device=cls_scores[0].device)
        labels_list, label_weights_list, bbox_targets_list, _, _ = self.get_targets(
            anchor_list, valid_flag_list, batch_gt_instances, batch_img_metas,
            batch_gt_instances_ignore=batch_gt_instances_ignore)
        num_level_anchors = [anchors.size(0) for anchors in anchor_list[0]]
        level_anchors = images_to_levels([cat_boxes(a) for a in anchor_list], num_level_anchors)

        def flat(per_level: List[Tensor], width: int = 0) -> Tensor:
            shape = (num_imgs, -1, width) if width else (num_imgs, -1)
            return torch.cat([t.reshape(shape) for t in per_level], dim=1).flatten(0, 1)

        logits = flat([s.permute(0, 2, 3, 1) for s in cls_scores]).reshape(-1)
        deltas = flat([b.permute(0, 2, 3, 1) for b in bbox_preds], self.bbox_coder.encode_size)
        anchors = flat([get_box_tensor(a) for a in level_anchors], 4)
        labels = flat(labels_list)
        targets = flat(bbox_targets_list, 4)
        ignored = flat(label_weights_list) == 0

        pos_index = torch.nonzero((labels == 0) & ~ignored, as_tuple=True)[0]
        pred_boxes = get_box_tensor(self.bbox_coder.decode(anchors[pos_index], deltas[pos_index]))
        out = rank_sort_task_loss(logits, ignored, pos_index,
                                  logits[pos_index].detach().sigmoid(), pred_boxes,
                                  targets[pos_index], self.loss_cls, self.loss_bbox)
        w = self.rpn_weight
        return dict(loss_rpn_rank=w * out["rank"], loss_rpn_sort=w * out["sort"],
                    loss_rpn_bbox=w * out["bbox"], rpn_lambda=out["lam"],
                    rpn_raw_bbox=out["raw_bbox"])


@MODELS.register_module()
class RankBasedBBoxHead(Shared2FCBBoxHead):
    """Shared-2FC box head with BRank & Sort, task k = 2.

    Sigmoid classification over ``num_classes`` (no background class), IoU
    labels from the decoded box of each positive's ground-truth class,
    score-weighted GIoU balanced to the Rank & Sort value. Its
    ``loss_and_target`` also returns the positives' scores and that value,
    which :class:`BRefineRoIHead` hands to the mask task (k = 3).
    """

    def __init__(self, loss_cls: dict = dict(type="RankSortLoss"),
                 loss_bbox: dict = dict(type="GIoULoss", reduction="none"),
                 reg_decoded_bbox: bool = True, **kwargs) -> None:
        if not reg_decoded_bbox:
            raise ValueError("RankBasedBBoxHead regresses decoded boxes; reg_decoded_bbox must be True")
        super().__init__(loss_cls=loss_cls, loss_bbox=loss_bbox,
                         reg_decoded_bbox=reg_decoded_bbox, **kwargs)
        if not isinstance(self.loss_cls, RankSortLoss):
            raise ValueError("RankBasedBBoxHead needs loss_cls=dict(type='RankSortLoss')")

    def loss_and_target(self, cls_score: Tensor, bbox_pred: Tensor, rois: Tensor,
                        sampling_results: List[SamplingResult], rcnn_train_cfg: ConfigDict,
                        concat: bool = True, reduction_override: Optional[str] = None) -> dict:
        """
        Args:
            cls_score: (n, num_classes) logits of the sampled RoIs.
            bbox_pred: (n, 4·num_classes) or (n, 4) deltas.
            rois: (n, 5) the RoIs.

        Returns:
            dict with ``loss_bbox`` (the loss dict) and ``bbox_targets``, as
            the parent's.
        """
        targets = self.get_targets(sampling_results, rcnn_train_cfg, concat=True)
        labels, label_weights, bbox_targets, _ = targets
        num_rois, num_classes = cls_score.shape
        pos_rows = torch.nonzero((labels >= 0) & (labels < num_classes), as_tuple=True)[0]
        pos_labels = labels[pos_rows]
        deltas = bbox_pred.view(num_rois, -1, self.bbox_coder.encode_size)
        deltas = deltas[pos_rows, 0 if self.reg_class_agnostic else pos_labels]
        pred_boxes = get_box_tensor(self.bbox_coder.decode(rois[pos_rows, 1:], deltas))
        ignored = (label_weights == 0)[:, None].expand(num_rois, num_classes).reshape(-1)
        # Eq. 6 weighs by the detection score, the best class's (published RS head)
        pos_scores = cls_score.detach()[pos_rows].sigmoid().max(dim=1).values
        out = rank_sort_task_loss(cls_score.reshape(-1), ignored, pos_rows * num_classes + pos_labels,
                                  pos_scores, pred_boxes, get_box_tensor(bbox_targets)[pos_rows],
                                  self.loss_cls, self.loss_bbox)
        losses = dict(loss_rank=out["rank"], loss_sort=out["sort"], loss_bbox=out["bbox"],
                      bbox_lambda=out["lam"], raw_bbox=out["raw_bbox"])
        return dict(loss_bbox=losses, bbox_targets=targets)
