"""The network's member registries, shared by accounts, consent and governance."""
