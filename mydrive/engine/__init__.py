"""The owner's side: upload (encrypt, chunk, place, send, resend), download (fetch with
failover, verify, decrypt, assemble), transfer accounting, the deletion collector, and
durability: audits (check), the repair policy, crash-safe repair and the background pass.
"""
