"""The fleet level: thousands of peers, a million chunks, a year of churn (``sim fleet``).

The engine level (sim.world) runs every byte through the product's code; at fleet scale only
where the replicas are matters, so chunks are counted, not stored. What decides where they
go is still the product's: every file is placed by ``mydrive.formats.placement.place_chunks``
(capacity-weighted rendezvous, never the owner, never one peer with every chunk), and a
repair policy (``sim.fleet.repair``) decides when and where a lost replica is made again.
Durability, availability and events per second come out per (R, peers, churn rate).
"""
