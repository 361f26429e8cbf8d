# Table 8: 8 epochs (of the 8x repeated train set), step at 7, lr 0.01 @ 8 images.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

train_cfg = dict(max_epochs=8)
optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=8, by_epoch=True, milestones=[7], gamma=0.1),
]
auto_scale_lr = dict(enable=True, base_batch_size=8)
