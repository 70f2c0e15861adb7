"""The owner's side: upload (encrypt, chunk, place, send, resend), download (fetch with
failover, verify, decrypt, assemble), transfer accounting and the deletion collector.
"""
