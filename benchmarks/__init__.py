"""zigllama's benchmarks, each against its named peer in the same run.

Installed as ``zigllama.benchmarks`` so that ``zigllama bench`` runs them from a
wheel too; in a source checkout run ``python benchmarks/run_all.py``.
"""
