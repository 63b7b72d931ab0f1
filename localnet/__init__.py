"""localnet: a real, small SN27 (NI Compute) subnet on this machine.

Real bittensor axons serving the Allocate synapse, real OpenSSH boxes, a metagraph
snapshot and a validator database: the collection's embedded default for demos and tests.
Run ``python -m localnet --help`` from the collection root.
"""
