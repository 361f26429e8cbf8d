# Baseline: Mask R-CNN R50-FPN 1x on COCO 2017 (Table 1, first row).
_base_ = [
    './_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
