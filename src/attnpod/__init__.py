"""attnpod: scale-selective POD of transformer attention fields, reproduced.

Stages, in the order data flows (each imports only those before it; tests/test_layout.py):
``errors``, ``config`` (profiles), ``store`` (the artifact store) → ``data`` → ``models`` →
``train`` → ``shipped`` (models and results trained elsewhere, verified) → ``fields`` →
(``lag``, ``wavelet``) → ``pod`` → ``analysis`` (the maths) → ``pipeline`` (one model, cached)
→ ``adapters`` (external models) → ``pretrained`` (the real models) → ``estimators``
(intervals) → ``readings`` → ``claims`` (verdicts) → ``planted`` → ``bench`` (known answers)
→ ``experiments`` (``budgets``, ``cache_rules`` → ``pruning``, ``kvcache``, ``llmcache``) →
``study`` (what a chapter asks for, cached) → ``figures`` → ``book`` (the chapters' named
results) → ``cli``.
"""

__version__ = "0.1.0"
