"""keyproxy: a signing reverse proxy that keeps exchange API keys away from trading bots."""
__version__ = "0.1.0"
