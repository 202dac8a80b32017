"""Model families: decoders of exported model layouts (an Ultralytics YOLO or RT-DETR ONNX
export, ...) into plain detections, apart from any serving code."""
