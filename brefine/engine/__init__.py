"""What runs inside a Ray Train worker: the training loop, its hooks, DDP.

:func:`brefine.engine.worker.train_loop_per_worker` is the plain function a
``TorchTrainer`` runs on every worker; scaling, storage and failure handling
are the driver's configs (:mod:`brefine.driver`).
"""
