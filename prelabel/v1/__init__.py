"""Generated code for the prelabel.v1 API (see protos/prelabel/v1). Do not edit:
run `make protos`."""
