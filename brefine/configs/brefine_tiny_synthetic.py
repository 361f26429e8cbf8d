# Tiny BRefine (full: fusion head + BRank & Sort) for CPU tests, the demo and
# the embedded search: ResNet-18 at a quarter of the width, random init,
# 128 px images of the built-in synthetic dataset. Not for reporting numbers.
_base_ = [
    './_base_/models/brefine_r50_fpn.py',
    './_base_/datasets/synthetic_instance.py',
    './_base_/schedules/schedule_tiny.py',
    './_base_/default_runtime_tiny.py',
]

width = 32  # FPN / head channels

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
        # at a quarter of the width per stage, a 32-channel head would narrow to
        # 8, too thin to learn: halve it (32, 16, 16), P2 reduced to 16
        mask_head=dict(num_convs=2, in_channels=width, conv_out_channels=width,
                       channel_ratio=0.5, aux_channels=16)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=512, max_per_img=256)),
    test_cfg=dict(
        rpn=dict(nms_pre=512, max_per_img=256),
        # a few hundred iterations do not calibrate RS scores up to 0.40;
        # scenes hold at most 4 objects, 20 detections an image are plenty
        rcnn=dict(score_thr=0.05, max_per_img=20)))
