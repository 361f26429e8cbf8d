# Mask R-CNN R50-FPN baseline, 8 epochs on Cityscapes (Table 8): 8 classes.
_base_ = [
    './_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/cityscapes_instance.py',
    './_base_/schedules/schedule_cityscapes_8e.py',
    'mmdet::_base_/default_runtime.py',
]

