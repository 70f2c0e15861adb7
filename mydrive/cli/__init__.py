"""The ``mydrive`` command line: parse, call the client or the node, print."""
