"""srp-audit: sound robustness certification and SingleProp fine-tuning for pre-trained networks."""

__version__ = "0.1.0"
