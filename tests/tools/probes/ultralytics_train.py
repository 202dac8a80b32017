"""Train a tiny YOLO detector for one epoch on a dataset annotate wrote, plots on; print
what the run left behind.

    python ultralytics_train.py DATA_YAML PROJECT_DIR   (run with the ultralytics tool venv)

From the model's yaml (random init, nothing downloaded), on the CPU, 64-pixel inputs: the
point is that training and its result plots run to the end with the tool venv's packages.
"""
import json
import sys
from pathlib import Path

from ultralytics import YOLO

data_yaml, project = sys.argv[1], Path(sys.argv[2])
model = YOLO("yolov8n.yaml")
model.train(data=data_yaml, epochs=1, imgsz=64, batch=2, workers=0, device="cpu", project=str(project),
            name="run", exist_ok=True, plots=True, amp=False, verbose=False)
run = project / "run"
print(json.dumps({"files": sorted(p.name for p in run.iterdir()),
                  "results_csv_rows": len((run / "results.csv").read_text().splitlines())}))
