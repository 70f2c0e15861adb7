"""The world the code touches, handed in rather than reached for: clock and sleep,
randomness, the executor that runs concurrent work, durable file writes, metrics counters and
the fault hooks (no-op outside the test-bed). Imports nothing of mydrive but errors.
"""
