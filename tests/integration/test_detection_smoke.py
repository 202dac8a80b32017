from prelabel.v1 import common_pb2, detection_pb2
from tests.photos import photo_bytes


async def test_detect_finds_face_in_astronaut(detector):
    reply = await detector.Detect(detection_pb2.DetectRequest(
        image=common_pb2.Image(data=photo_bytes("astronaut.png"), image_id="a"), model="face_detector"), timeout=60)
    print(reply)
    assert reply.detections
