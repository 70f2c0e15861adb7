"""Pure data and byte layouts, no I/O: chunk plan, placement, digests, the chunk header,
the file record, remote paths. One module owns each format; docs/ has a page per format.
"""
