"""`python -m services.keypoints`: serve prelabel.v1.KeypointDetector."""
from services.common.main import run_app
from services.keypoints.app import build_app

if __name__ == "__main__":
    run_app(build_app)
