"""Screens pushed over the main one: node details, confirmations."""
