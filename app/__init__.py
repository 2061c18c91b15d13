"""trackmon: a desktop live-tracking monitor and recorder for flespi HTTP streams."""

__version__ = "0.1.0"
