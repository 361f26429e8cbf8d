# The 1x schedule of the paper (12 epochs, steps at 8 and 11). The paper used
# lr 0.0075 for 3 GPUs x 2 images; with auto_scale_lr that is the 0.02 @ 16
# images below, scaled to the actual batch.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

auto_scale_lr = dict(enable=True, base_batch_size=16)
