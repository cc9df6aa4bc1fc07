"""The srp-audit command line (installed as the `srp_audit_cli` package)."""
