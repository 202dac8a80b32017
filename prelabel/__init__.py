"""prelabel: client SDK, CLI and the generated prelabel.v1 gRPC API."""
