"""The checker's two outcomes other than "checks": bad input, and a claim that does not check."""

from __future__ import annotations


class CertificateError(Exception):
    """Bad input: an unreadable or malformed certificate, a certificate of another model (SHA-256 mismatch), a
    missing key, a wrong shape, a NaN, an unreadable data or spec file. `srp-audit check` exits with 2."""


class UnsupportedModel(CertificateError):
    """The model uses an operator or a shape outside certificate format version 1 (named in the message)."""


class Rejected(Exception):
    """A claim does not check: the message names the first failing step (claim, leaf, tensor, neuron, numbers)."""
