"""What clm's screens show, computed from clm's database and MLflow. Views only render these objects."""

from clm_lib.reporting.drift import DriftPage, build_drift
from clm_lib.reporting.overview import Overview, build_overview
from clm_lib.reporting.serving import ServingPage, build_serving

__all__ = ["DriftPage", "Overview", "ServingPage", "build_drift", "build_overview", "build_serving"]
