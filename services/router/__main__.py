"""`python -m services.router`: serve prelabel.v1.PreLabeler."""
from services.common.main import run_app
from services.router.app import build_app

if __name__ == "__main__":
    run_app(build_app)
