"""Callbacks: Poutyne's API and its predefined set, built on the record bus."""

from epochal.callbacks.base import Callback, CallbackBusAdapter, CallbackList

__all__ = ["Callback", "CallbackBusAdapter", "CallbackList"]
