# Tiny Mask R-CNN baseline, same backbone, data and schedule as
# brefine_tiny_synthetic.py, for side-by-side comparison.
_base_ = [
    './_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/datasets/synthetic_instance.py',
    './_base_/schedules/schedule_tiny.py',
    './_base_/default_runtime_tiny.py',
]

width = 32

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        depth=18, base_channels=16, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=128),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(num_convs=2, in_channels=width, conv_out_channels=width)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=512, max_per_img=256)),
    # scenes hold at most 4 objects: 20 detections an image are plenty
    test_cfg=dict(rpn=dict(nms_pre=512, max_per_img=256), rcnn=dict(max_per_img=20)))
