"""Adapters: implementations of epochal's ports (storage, logging, progress, data).

They import ``epochal.core``, ``epochal.ports`` and ``epochal.bus``; never the shell.
"""
