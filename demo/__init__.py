"""``scripts/run-demo``: Rampart's main job on a local cluster, narrated (``demo/tour.py``)."""
