# 1200 iterations of 4 images, validation every 400: about 10 minutes of the tiny
# Mask R-CNN on 2 CPU cores (segm AP 0.37 on the built-in data v4, README). Both
# tiny models train at lr 0.02: Mask R-CNN falls to segm AP 0.06 at 0.003, and
# BRefine does better at 0.02 too (0.53 against 0.42 at 0.003; benchmarks/results/
# accuracy.md).
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1200, val_interval=400)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=1200, milestones=[900, 1100], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
