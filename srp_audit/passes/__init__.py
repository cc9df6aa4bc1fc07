"""Graph passes: each rewrites a `Graph` into an equivalent one in terms of the ops, exact in the stored numbers.

- `simplify`: drop identities, merge and fold constant affine maps, prune dead nodes.
- `fuse`: read x·x, x·sigmoid(x) and the like as the one op they are (Power, Silu, GELU, Mish).

Passes sit above `srp_audit.ops` (they build ops) and below the loaders and bound drivers that run them.
"""
