"""The budget experiments (beyond the paper): does the attention-field analysis tell a layer how much of a
budget it needs?

- :mod:`.budgets`: the frame they share: splitting a budget across layers, the rules' names, random and
  permuted splits, evaluating each distinct split once, and the result every experiment stores;
- :mod:`.cache_rules`: what both cache simulators share: sinks, H2O's split, PyramidKV's schedule, the
  scored half of a window;
- :mod:`.pruning` (heads kept per layer), :mod:`.kvcache` (the character models' KV cache) and
  :mod:`.llmcache` (a real model's), each with ``run``, ``settings``, its primary comparison
  (``PRIMARY``) and ``verdicts``; the caches also ``decode_check`` and ``cost_table``.
"""
