"""kcm-hook: CPU pools for the containers of one Linux host."""

__version__ = "0.1.0"
