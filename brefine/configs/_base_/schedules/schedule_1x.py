# The 1x schedule of the paper (12 epochs, steps at 8 and 11), MMDetection's
# lr 0.02 per 16 images, scaled to the actual batch by auto_scale_lr.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

auto_scale_lr = dict(enable=True, base_batch_size=16)
