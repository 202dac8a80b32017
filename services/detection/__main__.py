"""`python -m services.detection`: serve prelabel.v1.Detector."""
from services.common.main import run_app
from services.detection.app import build_app

if __name__ == "__main__":
    run_app(build_app)
