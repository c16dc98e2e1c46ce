"""ACDC (Conmy et al. 2023): ``circuits.acdc(model, clean, corrupted, threshold=...)``.

Layout: ``loop.py`` the one SPEC 4 loop (order, tie, dead-node and zero-effect rules, clean-up) and the
``Decider`` protocol every engine implements; ``reference.py`` one patched forward pass per tested edge;
``mlp/`` the exact fast engine for MLP chains (``engine`` the decider, ``compiled`` ACDC's loop compiled,
``speculative`` speculate and verify, ``state`` / ``ties`` / ``guess`` their parts); ``attention/`` the one for
TransformerLens bridges (``engine`` the decider, ``node`` one node's speculate and verify, ``delta`` / ``scorer``
/ ``fold`` / ``blocks`` the delta path, ``stacked`` stacked bridge forwards, ``speculate`` the guesses);
``options.py`` the engines' options and the named paths; ``discover.py`` the public function.
"""

from circuits.acdc.discover import ENGINES, acdc
from circuits.acdc.loop import check_threshold
from circuits.acdc.options import AttentionOptions, MLPOptions, Options

__all__ = ["ENGINES", "acdc", "check_threshold", "Options", "MLPOptions", "AttentionOptions"]
