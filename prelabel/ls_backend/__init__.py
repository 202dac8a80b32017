"""Label Studio ML backend (`prelabel ls-backend`): Label Studio's ML backend protocol in
front of the prelabel router. See server.py for the protocol, project.py for how a
project's labeling config maps to the suite's tasks, smart.py for interactive
pre-annotation (smart tools answered by SegmentClick), fetch.py for image fetching."""
