# The built-in synthetic dataset (brefine.data.synthetic): COCO format,
# 128 px images, 5 shape classes, train/val/test. `brefine data synth --out DIR`
# writes it; the demo and the search generate it into the cache when missing.
# Training validates on val; test is for the numbers reported (`brefine eval
# --split test`). Other families (`--family`) name other classes: fit a config
# to one with brefine.data.families.Family.config_overrides().
_base_ = './coco_instance.py'

# MLflow experiment of runs on this dataset
dataset_name = 'synthetic'
data_root = '{{$BREFINE_SYNTH_ROOT:data/synthetic/}}'
train_ann_file = 'annotations/train.json'
val_ann_file = 'annotations/val.json'
test_ann_file = 'annotations/test.json'
train_img_prefix = 'images/'
val_img_prefix = 'images/'
metainfo = dict(classes=('blob', 'star', 'crescent', 'ring', 'cross'))
image_size = (128, 128)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    batch_sampler=None,
    dataset=dict(
        data_root=data_root, ann_file=train_ann_file, metainfo=metainfo,
        data_prefix=dict(img=train_img_prefix),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root, ann_file=val_ann_file, metainfo=metainfo,
        data_prefix=dict(img=val_img_prefix), pipeline=test_pipeline))
test_dataloader = dict(val_dataloader,
                       dataset=dict(val_dataloader['dataset'], ann_file=test_ann_file))
val_evaluator = [
    dict(type='FasterCocoMetric', ann_file=data_root + val_ann_file, metric=['bbox', 'segm']),
    dict(type='BoundaryAPMetric', ann_file=data_root + val_ann_file, dilation_ratio=0.02),
]
test_evaluator = [dict(metric, ann_file=data_root + test_ann_file) for metric in val_evaluator]
# what the dataset decides of any model trained on it (brefine.configs.load_config
# merges these before the command line's overrides)
dataset_model_settings = {
    'model.roi_head.bbox_head.num_classes': len(metainfo['classes']),
    'model.roi_head.mask_head.num_classes': len(metainfo['classes']),
}
