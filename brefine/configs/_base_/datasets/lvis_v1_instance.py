# LVIS v1 instances (MMDetection's base: class-balanced repeat-factor
# sampling), AP with APr/APc/APf on faster-coco-eval (brefine.evaluation.lvis_ap:
# the lvis package's numbers). data_root: $LVIS_ROOT or --data-root.
_base_ = 'mmdet::_base_/datasets/lvis_v1_instance.py'

# MLflow experiment of runs on this dataset
dataset_name = 'lvis_v1'
data_root = '{{$LVIS_ROOT:data/lvis_v1/}}'
train_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(type='FasterLVISMetric', ann_file=data_root + 'annotations/lvis_v1_val.json')
test_evaluator = val_evaluator
# what the dataset decides of any model trained on it (brefine.configs.load_config
# merges these before the command line's overrides)
dataset_model_settings = {
    'model.roi_head.bbox_head.num_classes': 1203,
    'model.roi_head.mask_head.num_classes': 1203,
    # MMDetection's LVIS test settings: up to 300 detections, low score cut
    'model.test_cfg.rcnn.score_thr': 0.0001,
    'model.test_cfg.rcnn.max_per_img': 300,
}
