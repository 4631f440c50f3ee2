"""moe-scaling: fit scaling laws of Mixture-of-Experts language models.

This package never imports torch; only ``runner`` does.
"""

__version__ = "0.1.0"
