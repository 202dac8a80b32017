"""Label Studio ML backend (`prelabel ls-backend`): Label Studio's ML backend protocol in
front of the prelabel router. See server.py for the protocol, project.py for how a
project's labeling config maps to the suite's tasks, fetch.py for image fetching."""
