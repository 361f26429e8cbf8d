# Mask R-CNN R50-FPN, exactly MMDetection's; BRefine's keys are declared as
# None so that every config carries them (setting them on a baseline is an
# error that names the key, see brefine.configs.apply_hyperparameters).
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

# Boundary AP, evaluated beside COCO AP in every dataset config; the COCO
# dataset and hook that map categories to classes by name
custom_imports = dict(imports=['brefine.evaluation', 'brefine.data.categories'],
                      allow_failed_imports=False)

num_stages = None
boundary_lambda = None
rpn_weight = None
