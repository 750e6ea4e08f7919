"""FPN and UPerNet decoders for segzoo (a plugin: registered through entry points only).

Nothing is imported here, so that segzoo can list this plugin's names cheaply.
"""

__version__ = "0.1.0"
