"""Reading a certificate (format version 1, docs/certificates.md) and validating every field.

The file is opened with `allow_pickle=False` and read whole; `manifest.json` is a uint8 array of UTF-8 JSON
(NaN and ±Infinity literals are refused: every number in the manifest must be finite). Each array a key names
must exist, be of a float (or, for nothing here, integer) dtype, have the shape its role needs and hold no NaN;
claimed bounds must also be finite. Anything else raises `CertificateError` naming the field. The tree is kept
as parsed JSON and validated by `tree.walk`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import CertificateError
from .network import Network

FORMAT, VERSION = "srp-audit certificate", 1


@dataclass
class Leaf:
    """One leaf's proof data, keyed by ReLU output tensor: claimed (lower, upper) bounds of the ReLU's input,
    lower slopes ((n,) or (S, n): a row per spec row the leaf proves) and β multipliers (likewise); `stops`: where the final passes end — None
    at the input, or a ReLU output whose interval the rows are minimised over (an IBP proof) — each row taking
    its best pass."""

    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    slopes: dict[str, np.ndarray] = field(default_factory=dict)
    beta: dict[str, np.ndarray] = field(default_factory=dict)
    stops: list[str | None] = field(default_factory=lambda: [None])
    islopes: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = field(default_factory=dict)
    """Per ReLU: (neurons (k,), {earlier ReLU: slopes (2, k, n')}) — the lower slopes each of those neurons' lower
    (row 0) and upper (row 1) bound was derived with; other neurons use CROWN's rule."""


@dataclass
class Claim:
    """A claim: `input_set` is the validated JSON object with its arrays filled in ("lower"/"upper" or "x");
    the spec rows h = C·y + d with `groups`; the tree (JSON) and the leaves."""

    id: str
    input_set: dict[str, Any]
    C: np.ndarray
    d: np.ndarray
    groups: list[list[int]]
    tree: Any
    leaves: list[Leaf]


@dataclass
class Manifest:
    """The parts of a certificate that need no model: the model's digest, the uncertified verdicts, the raw
    claims (parsed against the model by `parse_claims`) and the arrays."""

    sha256: str
    model_file: str
    raw_claims: list[Any]
    uncertified: list[tuple[str, str]]
    arrays: dict[str, np.ndarray]


def _refuse_constant(name: str) -> None:
    raise CertificateError(f"manifest.json contains {name}: every number must be finite")


def read_manifest(path: str) -> Manifest:
    """Open the archive, read every member, decode and check the manifest's top level."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CertificateError(f"no such certificate file: {path}") from None
    except Exception as e:  # zip, npy header or CRC errors of any kind
        raise CertificateError(f"not a readable certificate archive ({type(e).__name__}: {e})") from None
    odd = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))
    if odd:  # np.load returns a member that is not in .npy format as raw bytes
        raise CertificateError(f"not a certificate archive: member {odd[0]!r} is not a .npy array")
    raw = arrays.pop("manifest.json", None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise CertificateError("the certificate has no manifest.json member (a 1-D uint8 array)")
    try:
        m = json.loads(raw.tobytes().decode("utf-8"), parse_constant=_refuse_constant)
    except CertificateError:
        raise
    except (ValueError, RecursionError) as e:
        raise CertificateError(f"manifest.json is not valid UTF-8 JSON ({e})") from None
    _need(isinstance(m, dict), "manifest.json is not a JSON object")
    _need(m.get("format") == FORMAT and m.get("version") == VERSION and not isinstance(m.get("version"), bool),
          f"not a certificate of format {FORMAT!r} version {VERSION} (format {m.get('format')!r}, version {m.get('version')!r})")
    model = _obj(m, "model", "manifest")
    sha = _str(model, "sha256", "model")
    _need(len(sha) == 64 and all(ch in "0123456789abcdefABCDEF" for ch in sha), "model.sha256 is not a SHA-256 hex digest")
    claims = m.get("claims")
    _need(isinstance(claims, list), "manifest: 'claims' must be a list")
    unc = m.get("uncertified", [])
    _need(isinstance(unc, list), "manifest: 'uncertified' must be a list")
    uncertified = [(_str(u, "id", "uncertified"), _str(u, "reason", "uncertified")) for u in (_dict(u, "uncertified entry") for u in unc)]
    return Manifest(sha.lower(), str(model.get("file", "")), claims, uncertified, arrays)


# ------------------------------------------------------------------------------------------------ validation


def _need(ok: bool, msg: str) -> None:
    if not ok:
        raise CertificateError(msg)


def _dict(v: Any, where: str) -> dict:
    _need(isinstance(v, dict), f"{where} must be a JSON object")
    return v


def _obj(d: dict, key: str, where: str) -> dict:
    return _dict(d.get(key), f"{where}.{key}")


def _str(d: dict, key: str, where: str) -> str:
    v: Any = d.get(key)  # JSON, checked below
    _need(isinstance(v, str), f"{where}.{key} must be a string")
    return v


def integer(v: Any, where: str, lo: int = 0, hi: int | None = None) -> int:
    """A JSON integer (not a bool) in [lo, hi)."""
    _need(isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v < hi),
          f"{where} must be an integer in [{lo}, {hi if hi is not None else '∞'})")
    return v


def number(v: Any, where: str) -> float:
    """A finite JSON number (not a bool), as float64."""
    _need(isinstance(v, (int, float)) and not isinstance(v, bool), f"{where} must be a number")
    try:
        f = float(v)
    except OverflowError:
        raise CertificateError(f"{where} is too large") from None
    _need(bool(np.isfinite(f)), f"{where} must be finite")
    return f


def array(arrays: dict[str, np.ndarray], key: Any, shapes: list[tuple[int, ...]], where: str, finite: bool = True) -> np.ndarray:
    """The float array a manifest key names, as float64, with one of the allowed shapes (-1: any positive
    length) and no NaN (nor ±inf if `finite`)."""
    _need(isinstance(key, str), f"{where} must be an array key (a string)")
    _need(key in arrays, f"{where}: no array {key!r} in the certificate")
    a = arrays[key]
    _need(a.dtype.kind == "f" and a.dtype.itemsize <= 8, f"{where}: array {key!r} has dtype {a.dtype}, not float64")
    fits = any(len(a.shape) == len(t) and all(x == y or (y == -1 and x > 0) for x, y in zip(a.shape, t)) for t in shapes)
    _need(fits, f"{where}: array {key!r} has shape {a.shape}, expected {' or '.join(map(str, shapes))} (-1: any)")
    a = a.astype(np.float64)
    _need(not np.isnan(a).any(), f"{where}: array {key!r} contains NaN")
    _need(not finite or bool(np.isfinite(a).all()), f"{where}: array {key!r} is not finite")
    return a


def indices(arrays: dict[str, np.ndarray], key: Any, n: int, where: str) -> np.ndarray:
    """An integer array of distinct indices in [0, n), as int64."""
    _need(isinstance(key, str) and key in arrays, f"{where}: no array {key!r} in the certificate")
    a = arrays[key]
    _need(a.dtype.kind in "iu" and a.ndim == 1, f"{where}: array {key!r} must be 1-D integers")
    a = a.astype(np.int64)
    _need(bool(np.all((a >= 0) & (a < n))) and np.unique(a).size == a.size, f"{where}: indices must be distinct, in [0, {n})")
    return a


def _input_set(s: dict, arrays: dict, net: Network, K: int, where: str) -> dict:
    n = net.sizes[net.input]
    kind = s.get("type")
    if kind == "box":
        out: dict[str, Any] = {"type": "box", "lower": array(arrays, s.get("lower"), [(n,)], f"{where}.lower"),
                               "upper": array(arrays, s.get("upper"), [(n,)], f"{where}.upper")}
        _need(bool(np.all(out["lower"] <= out["upper"])), f"{where}: lower > upper (an empty box)")
        return out
    _need(kind == "robustness", f"{where}.type must be 'box' or 'robustness'")
    norm = s.get("norm")
    _need(norm in ("inf", "2", "1"), f"{where}.norm {norm!r}: must be 'inf', '2' or '1'")
    dom: Any = s.get("domain")  # JSON, checked below
    _need(isinstance(dom, list) and len(dom) == 2, f"{where}.domain must be [lo, hi]")
    lo, hi = number(dom[0], f"{where}.domain[0]"), number(dom[1], f"{where}.domain[1]")
    x = array(arrays, s.get("x"), [(n,)], f"{where}.x")
    eps = number(s.get("eps"), f"{where}.eps")
    _need(eps >= 0 and lo <= hi, f"{where}: eps < 0 or an empty domain")
    _need(bool(np.all(np.maximum(x - eps, lo) <= np.minimum(x + eps, hi))), f"{where}: the ball ∩ domain is empty")
    _need(integer(s.get("classes"), f"{where}.classes") == K, f"{where}.classes is not the model's {K} outputs")
    return {"type": "robustness", "sample": integer(s.get("sample"), f"{where}.sample"), "x": x, "eps": eps, "norm": norm,
            "domain": (lo, hi), "label": integer(s.get("label"), f"{where}.label", 0, K)}


def _per_relu(d: Any, net: Network, where: str) -> dict:
    d = {} if d is None else _dict(d, where)
    for name in d:
        _need(name in net.relus, f"{where}: {name!r} is not the output tensor of a ReLU of the model")
    return d


def _leaf(v: Any, arrays: dict, net: Network, S: int, where: str) -> Leaf:
    v = _dict(v, where)
    leaf = Leaf()
    for name, b in _per_relu(v.get("bounds"), net, f"{where}.bounds").items():
        n = net.sizes[name]
        b = _dict(b, f"{where}.bounds[{name!r}]")
        leaf.bounds[name] = (array(arrays, b.get("lower"), [(n,)], f"{where}.bounds[{name!r}].lower"),
                             array(arrays, b.get("upper"), [(n,)], f"{where}.bounds[{name!r}].upper"))
    for part in ("slopes", "beta"):
        for name, key in _per_relu(v.get(part), net, f"{where}.{part}").items():
            n = net.sizes[name]
            getattr(leaf, part)[name] = array(arrays, key, [(n,), (-1, n)], f"{where}.{part}[{name!r}]", finite=False)
    for name, e in _per_relu(v.get("islopes"), net, f"{where}.islopes").items():
        e, at = _dict(e, f"{where}.islopes[{name!r}]"), f"{where}.islopes[{name!r}]"
        idx = indices(arrays, e.get("neurons"), net.sizes[name], f"{at}.neurons")
        leaf.islopes[name] = (idx, {r: array(arrays, key, [(2, idx.size, net.sizes[r])], f"{at}.slopes[{r!r}]")
                                    for r, key in _per_relu(e.get("slopes"), net, f"{at}.slopes").items()})
    stops = v.get("stops", [None])
    _need(isinstance(stops, list) and 1 <= len(stops) <= 4, f"{where}.stops must be a list of 1 to 4 entries")
    _need(all(s is None or (isinstance(s, str) and s in net.relus) for s in stops), f"{where}.stops must name ReLU outputs (or null: the input)")
    leaf.stops = list(dict.fromkeys(stops))
    return leaf


def parse_claims(man: Manifest, net: Network) -> list[Claim]:
    """Validate every claim against the model: keys, dtypes, shapes, ReLU names, finiteness."""
    K = net.sizes[net.output]
    claims = []
    for ci, c in enumerate(man.raw_claims):
        where = f"claims[{ci}]"
        c = _dict(c, where)
        cid = _str(c, "id", where)
        spec = _obj(c, "spec", where)
        C = array(man.arrays, spec.get("C"), [(-1, K)], f"{where}.spec.C")
        S = C.shape[0]
        d = array(man.arrays, spec.get("d"), [(S,)], f"{where}.spec.d")
        groups: Any = spec.get("groups")  # JSON, checked below
        _need(isinstance(groups, list) and len(groups) > 0, f"{where}.spec.groups must be a non-empty list")
        gs = []
        for gi, g in enumerate(groups):
            _need(isinstance(g, list) and len(g) > 0, f"{where}.spec.groups[{gi}] must be a non-empty list")
            gs.append([integer(r, f"{where}.spec.groups[{gi}]", 0, S) for r in g])
        leaves: Any = c.get("leaves")  # JSON, checked below
        _need(isinstance(leaves, list) and len(leaves) > 0, f"{where}.leaves must be a non-empty list")
        claims.append(Claim(cid, _input_set(_obj(c, "set", where), man.arrays, net, K, f"{where}.set"), C, d, gs,
                            c.get("tree"), [_leaf(v, man.arrays, net, S, f"{where}.leaves[{i}]") for i, v in enumerate(leaves)]))
    return claims

