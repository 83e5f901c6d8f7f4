"""attnpod: scale-selective POD of transformer attention fields, reproduced.

Stages, in the order data flows: ``data`` → ``models`` → ``train`` → ``fields`` →
(``lag``, ``wavelet``) → ``pod`` → ``analysis`` (the maths) → ``pipeline`` (one
model, cached) → ``claims`` (verdicts); ``allocation`` (budgets split by scores)
→ ``heads`` (pruning), ``kvcache`` (cache budgets) → ``study`` (what a chapter
asks for, cached) → ``book`` (the chapters' named results) → ``figures``.
Beside them: ``config`` (profiles and the artifact store), ``shipped`` (models
and results trained elsewhere, verified), ``adapters`` (external models) and
``cli``.
"""

__version__ = "0.1.0"
