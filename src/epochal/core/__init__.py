"""The functional core: records, step and epoch functions, metrics, monitors, resume planning.

Imports torch, attrs and the standard library only. No I/O, no printing, no logging, no clock
except an injected one, no global state.
"""
