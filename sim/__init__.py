"""A deterministic simulator of the real engine (``python -m sim``, docs/simulator.md).

The product's upload, download, receiver, sender, deletion and placement code runs here
unchanged, N peers in one process, over a simulated network and simulated disks, on a
virtual clock, with every random choice drawn from one seed: the same seed on the same commit
gives the same event trace, and any failure replays from its seed. ``sim.fleet`` adds a
model of a large fleet over a year of churn, placed by the product's placement code.

Test-bed, not product: the mydrive wheel does not carry it, and the product never imports it.
"""
