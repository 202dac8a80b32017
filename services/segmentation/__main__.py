"""`python -m services.segmentation`: serve prelabel.v1.Segmenter."""
from services.common.main import run_app
from services.segmentation.app import build_app

if __name__ == "__main__":
    run_app(build_app)
