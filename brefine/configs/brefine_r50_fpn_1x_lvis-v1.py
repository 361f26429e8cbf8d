# BRefine R50-FPN (3 stages + BRank & Sort), 1x on LVIS v1 (Table 7): 1203 classes,
# MMDetection's LVIS test settings (up to 300 detections, low score cut).
_base_ = [
    './_base_/models/brefine_r50_fpn.py',
    './_base_/datasets/lvis_v1_instance.py',
    './_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

# lr 0.012 per 16 images, as the published Rank & Sort Mask R-CNN trains: the
# paper's "0.0075 on 3 GPUs" does not say how many images each GPU held, so
# its per-image rate is unknown. auto_scale_lr scales it to the actual batch.
optim_wrapper = dict(optimizer=dict(lr=0.012))
