"""prelabel server processes (detection, segmentation, keypoints, router) and the
library they share (`services.common`) plus the model-side code Triton runs
(`services.modelkit`)."""
