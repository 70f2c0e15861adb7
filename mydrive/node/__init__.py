"""A peer on disk and as processes: the peer directory, its PKI files, nginx, running one
service (``serve``), the local N-peer cluster and the client built for a peer directory.
"""
