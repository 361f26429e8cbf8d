# Cityscapes instances in COCO format (MMDetection's conversion:
# tools/dataset_converters/cityscapes.py), evaluated with COCO AP and the
# official Cityscapes AP. data_root: $CITYSCAPES_ROOT or --data-root.
_base_ = 'mmdet::_base_/datasets/cityscapes_instance.py'

# MLflow experiment of runs on this dataset
dataset_name = 'cityscapes'
data_root = '{{$CITYSCAPES_ROOT:data/cityscapes/}}'
train_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='FasterCocoMetric',
         ann_file=data_root + 'annotations/instancesonly_filtered_gtFine_val.json',
         metric=['bbox', 'segm']),
    dict(type='CityScapesMetric', seg_prefix=data_root + 'gtFine/val',
         outfile_prefix='./work_dirs/cityscapes_metric/instance'),
    # Boundary IoU's width for Cityscapes' large images: 0.5% of the diagonal
    dict(type='BoundaryAPMetric',
         ann_file=data_root + 'annotations/instancesonly_filtered_gtFine_val.json',
         dilation_ratio=0.005),
]
test_evaluator = val_evaluator
# what the dataset decides of any model trained on it (brefine.configs.load_config
# merges these before the command line's overrides). MMDetection starts
# Cityscapes from a COCO-trained model; nothing is downloaded here: pass
# --set load_from=PATH for a local checkpoint.
dataset_model_settings = {
    'model.roi_head.bbox_head.num_classes': 8,
    'model.roi_head.mask_head.num_classes': 8,
    'model.backbone.init_cfg': None,
}
