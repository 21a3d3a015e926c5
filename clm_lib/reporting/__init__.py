"""What clm's screens show, computed from clm's database and MLflow. Views only render these objects."""

from clm_lib.reporting.overview import Overview, build_overview

__all__ = ["Overview", "build_overview"]
