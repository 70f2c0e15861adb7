"""Owner <-> peer: the Transport protocol the engine talks through, the signed request
envelopes (fetch, delete), the protobuf codec, the error <-> status mapping and the gRPC
client. ``wire/`` is generated from proto/ (proto/generate.py).
"""
