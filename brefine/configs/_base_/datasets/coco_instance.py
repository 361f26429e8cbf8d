# COCO 2017 instances. data_root: $COCO_ROOT, or `--data-root` / `--set
# data_root=...` on the command line (brefine.configs.apply_data_root).
# CocoDataset that maps the json's categories to the classes by name, not by
# the json's order; the hook gives the COCO metrics the same mapping
# (brefine.data.categories, imported by the model bases' custom_imports)
dataset_type = 'CocoByNameDataset'
custom_hooks = [dict(type='MetricCategoriesHook')]
# MLflow experiment of runs on this dataset
dataset_name = 'coco'
data_root = '{{$COCO_ROOT:data/coco/}}'
train_ann_file = 'annotations/instances_train2017.json'
val_ann_file = 'annotations/instances_val2017.json'
train_img_prefix = 'train2017/'
val_img_prefix = 'val2017/'
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=train_ann_file,
        data_prefix=dict(img=train_img_prefix),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=val_ann_file,
        data_prefix=dict(img=val_img_prefix),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='FasterCocoMetric', ann_file=data_root + val_ann_file, metric=['bbox', 'segm'],
         format_only=False, backend_args=backend_args),
    # Boundary IoU's width for COCO: 2% of the image diagonal
    dict(type='BoundaryAPMetric', ann_file=data_root + val_ann_file, dilation_ratio=0.02,
         backend_args=backend_args),
]
test_evaluator = val_evaluator
