"""PGDVS rendering core: ``Renderer(scene, config, device).render(t, c2w, K, hw) -> RenderOutput``.

Modules (each one job, torch only, CPU and CUDA):
- ``renderer``  facade: scene cached on the device, static + dynamic layers + composite
- ``config``    every hyperparameter; ``CONFIGS["paper"]`` = the original's values, ``"default"``, ``"fast"``
- ``frames``    scene tensors, target validation, temporal pair and nearest-source-view selection
- ``static``    static layer: ``StaticRenderer`` protocol + registry, masked IBR (default), fused cloud (``geo``)
- ``dynamic``   dynamic layer: flow-matched two-frame cloud, kNN cleaning, softmax splatting / points
- ``composite`` hard (original) and soft composites
- ``points``    PyTorch3D-style point rasteriser (+ reference twin)
- ``splat``     softmax splatting (+ reference twin)
- ``knn``       kNN squared distances and statistical outlier removal (+ reference twin)
- ``cli``       ``python -m pgdvs render``

Nothing heavy is imported here, so ``python -m pgdvs --help`` stays fast.
"""
