"""A peer's side of the protocol: the chunk store on disk, the receiver (verify and commit
segments), the sender (serve chunks to their owner), the deleter, and the gRPC servicers that
only translate between the wire and these.
"""
