# Mask R-CNN R50-FPN baseline, 8 epochs on Cityscapes (Table 8): 8 classes.
# MMDetection starts Cityscapes from a COCO-trained model; nothing is
# downloaded here: pass --set load_from=PATH for a local checkpoint.
_base_ = [
    './_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/cityscapes_instance.py',
    './_base_/schedules/schedule_cityscapes_8e.py',
    'mmdet::_base_/default_runtime.py',
]

model = dict(
    backbone=dict(init_cfg=None),
    roi_head=dict(bbox_head=dict(num_classes=8), mask_head=dict(num_classes=8)))
