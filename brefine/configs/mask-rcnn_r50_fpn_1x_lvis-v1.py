# Mask R-CNN R50-FPN baseline, 1x on LVIS v1 (Table 7): 1203 classes,
# MMDetection's LVIS test settings (up to 300 detections, low score cut).
_base_ = [
    './_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/lvis_v1_instance.py',
    './_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

