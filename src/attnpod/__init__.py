"""attnpod: scale-selective POD of transformer attention fields, reproduced.

Stages, in the order data flows: data → models → train → fields → (lag, wavelet)
→ pod → analysis → figures. ``config`` holds the profiles and the artifact store.
"""

__version__ = "0.1.0"
