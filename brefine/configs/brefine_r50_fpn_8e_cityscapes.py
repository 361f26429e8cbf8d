# BRefine R50-FPN (3 stages + BRank & Sort), 8 epochs on Cityscapes (Table 8): 8 classes.
_base_ = [
    './_base_/models/brefine_r50_fpn.py',
    './_base_/datasets/cityscapes_instance.py',
    './_base_/schedules/schedule_cityscapes_8e.py',
    'mmdet::_base_/default_runtime.py',
]

