"""The bound kernel: the arithmetic every op's rules are written in, knowing nothing of ops, nodes or graphs.

- `rounding`: unit roundoff, γ-factors for dot products, float32 rounding of constants.
- `interval`: `Interval` (a sound (lower, upper) pair) and the outward-rounded interval products.
- `enclosure`: `Enclosed`, a derived constant kept as its rounded value plus a rigorous error radius.
- `patches`: `Patches`, CROWN's convolution-shaped coefficients, and their unfold/transpose products.
- `backward`: CROWN's `Context` (the bounds, slopes and caches one bound computation shares) and helpers.
- `relax`: the lines that bound a function over an interval (tangents, chords), sound in floating point.
- `window`: pooling and convolution window sizes.

It sits below `srp_audit.ir` (the IR names its types; it imports nothing of the IR) and below `srp_audit.ops`.
"""
